"""The ``evolution`` searcher of the engine: `hwsearch.search.ofa.evolution.Evolution` as a Ray Tune Searcher.

Each suggestion is one choice of the evolution (as option indices, like the other built-in
searchers); each finished trial tells the evolution its primary objective (negated for ``min``).
Config constraints on ``macs`` and ``peak_activation_bytes`` (``<=`` / ``<``) are checked on the
NetSpec before a choice is proposed, as OFA does with its latency tables; other constraints are left
to the engine, which marks breaking trials infeasible. The state is JSON, written atomically, so
``--resume`` continues the same population without repeating or losing a trial.
"""

from __future__ import annotations

import json
from typing import Any

from ray.tune.search import Searcher

from hwsearch.io import atomic_write_text
from hwsearch.search.engine.searchers import SearchContext
from hwsearch.search.ofa.evolution import Constraints, Evolution, EvolutionSettings, Feasibility
from hwsearch.spaces.base import SearchSpace


class EvolutionSearcher(Searcher):
    """Ray Tune searcher proposing the choices of an ask/tell `Evolution`."""

    def __init__(self, space: SearchSpace, settings: EvolutionSettings, metric: str, mode: str, seed: int = 0,
                 constraints: Constraints = Constraints()):
        super().__init__(metric=metric, mode=mode)
        self.space = space
        self.evolution = Evolution(space, settings, Feasibility(space, constraints), seed)
        self.proposed: dict[str, dict[str, Any]] = {}

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """The next choice of the evolution, as ``{"choice": {gene: option index}}``."""
        if trial_id not in self.proposed:
            self.proposed[trial_id] = self.evolution.ask()
        return self._params(self.proposed[trial_id])

    def _params(self, choice: dict[str, Any]) -> dict[str, Any]:
        idx = self.space.encode(choice)
        return {"choice": {d.name: int(i) for d, i in zip(self.space.dims, idx, strict=True)}}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Tell the evolution the trial's primary objective (a failed trial scores worst)."""
        choice = self.proposed.get(trial_id)
        if choice is None:
            return
        value = float("-inf")
        if result and not error and self.metric in result:
            value = float(result[self.metric]) * (1.0 if self.mode == "max" else -1.0)
        self.evolution.tell(choice, value)

    def save(self, checkpoint_path: str) -> None:
        """Write the evolution's state and the trial proposals as JSON."""
        atomic_write_text(checkpoint_path, json.dumps({"evolution": self.evolution.state_dict(),
                                                       "proposed": self.proposed}))

    def restore(self, checkpoint_path: str) -> None:
        """Read the state written by `save`."""
        with open(checkpoint_path) as f:
            state = json.load(f)
        self.evolution.load_state_dict(state["evolution"])
        self.proposed = {k: dict(v) for k, v in state["proposed"].items()}


def constraints_from_config(ctx: SearchContext) -> Constraints:
    """The NetSpec limits among the config's constraints (MACs, peak activation bytes)."""
    limits: dict[str, float] = {}
    for c in ctx.config.constraints:
        if c.op in ("<=", "<") and c.metric in ("macs", "peak_activation_bytes"):
            limits[c.metric] = min(limits.get(c.metric, float("inf")), c.bound)
    return Constraints(max_macs=limits.get("macs"), max_peak_activation_bytes=limits.get("peak_activation_bytes"))


def evolution_searcher(ctx: SearchContext) -> EvolutionSearcher:
    """Build the evolution searcher over the space, with the config's NetSpec constraints."""
    return EvolutionSearcher(ctx.space, ctx.settings, ctx.metrics[0], ctx.modes[0], ctx.seed,
                             constraints_from_config(ctx))


__all__ = ["EvolutionSearcher", "constraints_from_config", "evolution_searcher"]
