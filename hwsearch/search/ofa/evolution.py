"""Once-for-All's evolutionary search for a sub-network under hardware constraints.

`Evolution` is an ask/tell population search (Cai et al., ICLR 2020, with OFA's settings: population
100, parent ratio 0.25, mutation ratio 0.5, mutation probability 0.1): the first generation is random
feasible choices; each next one keeps the best ``parent_ratio`` of everything scored so far as parents,
mutates parents for ``mutation_ratio`` of the population and crosses two parents for the rest, and
only feasible children are proposed. Constraints (`Constraints`) are checked on the choice's NetSpec:
latency from any object with ``predict(netspec)`` (a `LatencyTable`), MACs and peak activation memory.
Its whole state (scored choices, pending proposals, generation, random generator) is JSON, so a search
resumes exactly where it stopped.

Two ways to use it: `evolve` runs the loop against a vectorised score function (the accuracy
predictor: the cheap inner loop OFA runs), and the ``evolution`` searcher of the engine proposes one
trial at a time (each trial extracts and measures a sub-network). `random_sampling` is the baseline at
the same number of score queries.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hwsearch.errors import ConfigError
from hwsearch.ir import NetSpec
from hwsearch.spaces.base import Choice, SearchSpace


class CostModel(Protocol):
    """Anything that prices a whole network in seconds, e.g. `hwsearch.estimators.LatencyTable`."""

    def predict(self, netspec: NetSpec) -> float: ...


class EvolutionSettings(BaseModel):
    """OFA's evolutionary-search settings (the defaults are the paper's)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    population: int = Field(100, ge=2, description="candidates per generation")
    generations: int = Field(500, ge=1, description="generations of `evolve` (the engine's budget caps trials)")
    parent_ratio: float = Field(0.25, gt=0, le=1, description="share of the population kept as parents")
    mutation_ratio: float = Field(0.5, ge=0, le=1, description="share of children made by mutation (rest: crossover)")
    mutate_prob: float = Field(0.1, gt=0, le=1, description="probability of resampling each gene in a mutation")
    max_tries: int = Field(500, ge=1, description="draws spent finding a feasible child before a random feasible one")


@dataclass(frozen=True)
class Constraints:
    """Hardware limits on a sub-network; ``None`` means no limit."""

    max_latency_s: float | None = None
    max_macs: float | None = None
    max_peak_activation_bytes: float | None = None
    batch: int = 1

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {"max_latency_s": self.max_latency_s, "max_macs": self.max_macs,
                "max_peak_activation_bytes": self.max_peak_activation_bytes, "batch": self.batch}


class Feasibility:
    """Checks `Constraints` on choices of a space, caching each choice's costs."""

    def __init__(self, space: SearchSpace, constraints: Constraints = Constraints(),
                 latency: CostModel | None = None) -> None:
        if constraints.max_latency_s is not None and latency is None:
            raise ConfigError("a latency constraint needs a latency model (an object with predict(netspec), "
                              "e.g. a LatencyTable)")
        self.space, self.constraints, self.latency = space, constraints, latency
        self._costs: dict[tuple, dict[str, float]] = {}

    def costs(self, choice: Mapping[str, Any]) -> dict[str, float]:
        """MACs, peak activation bytes and (with a latency model) latency of ``choice``."""
        key = tuple(choice[d.name] for d in self.space.dims)
        out = self._costs.get(key)
        if out is None:
            net = self.space.to_netspec(choice, batch=self.constraints.batch)
            out = {"macs": float(net.macs), "peak_activation_bytes": float(net.peak_activation_bytes)}
            if self.latency is not None:
                out["latency_s"] = float(self.latency.predict(net))
            self._costs[key] = out
        return out

    def __call__(self, choice: Mapping[str, Any]) -> bool:
        c, k = self.costs(choice), self.constraints
        return ((k.max_macs is None or c["macs"] <= k.max_macs)
                and (k.max_peak_activation_bytes is None or c["peak_activation_bytes"] <= k.max_peak_activation_bytes)
                and (k.max_latency_s is None or c["latency_s"] <= k.max_latency_s))


def _key(space: SearchSpace, choice: Mapping[str, Any]) -> str:
    return json.dumps([choice[d.name] for d in space.dims])


class Evolution:
    """Ask/tell evolutionary search over ``space`` maximising a score, proposing only feasible choices."""

    def __init__(self, space: SearchSpace, settings: EvolutionSettings = EvolutionSettings(),
                 feasible: Callable[[Mapping[str, Any]], bool] | None = None, seed: int = 0) -> None:
        self.space, self.settings = space, settings
        self.feasible = feasible or (lambda c: True)
        self.rng = np.random.default_rng(seed)
        self.scored: dict[str, tuple[Choice, float]] = {}
        self.pending: list[Choice] = []
        self.generation = 0

    # ---- proposals ---------------------------------------------------------------------------
    def _random_feasible(self) -> Choice:
        for _ in range(self.settings.max_tries * 10):
            c = self.space.sample(self.rng)
            if self.feasible(c):
                return c
        raise ConfigError(f"no feasible choice of space {self.space.name!r} found in "
                          f"{self.settings.max_tries * 10} random draws; loosen the constraints")

    def parents(self) -> list[tuple[Choice, float]]:
        """The best ``parent_ratio`` of everything scored so far, best first."""
        ranked = sorted(self.scored.values(), key=lambda cs: -cs[1])
        n = max(1, int(round(self.settings.parent_ratio * self.settings.population)))
        return ranked[:n]

    def _child(self, parents: list[Choice], mutate: bool) -> Choice:
        for _ in range(self.settings.max_tries):
            if mutate or len(parents) < 2:
                p = parents[self.rng.integers(len(parents))]
                c = self.space.mutate(p, self.rng, self.settings.mutate_prob)
            else:
                i, j = self.rng.choice(len(parents), size=2, replace=False)
                c = self.space.crossover(parents[i], parents[j], self.rng)
            if self.feasible(c):
                return c
        return self._random_feasible()

    def next_generation(self) -> list[Choice]:
        """Candidates of the next generation (random at first, then children of the parents)."""
        n = self.settings.population
        if not self.scored:
            out = [self._random_feasible() for _ in range(n)]
        else:
            parents = [c for c, _ in self.parents()]
            n_children = n - len(parents)
            n_mut = int(round(self.settings.mutation_ratio * n_children))
            out = [self._child(parents, True) for _ in range(n_mut)]
            out += [self._child(parents, False) for _ in range(n_children - n_mut)]
        self.generation += 1
        return out

    def ask(self) -> Choice:
        """The next choice to score."""
        if not self.pending:
            self.pending = self.next_generation()
        return self.pending.pop(0)

    def tell(self, choice: Mapping[str, Any], score: float) -> None:
        """Record the score of ``choice`` (higher is better; NaN counts as the worst)."""
        s = float(score)
        self.scored[_key(self.space, choice)] = (dict(choice), s if np.isfinite(s) else -np.inf)

    def best(self) -> tuple[Choice, float]:
        """The best scored choice and its score."""
        if not self.scored:
            raise ConfigError("no choice has been scored yet")
        return max(self.scored.values(), key=lambda cs: cs[1])

    # ---- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume, as JSON-able data."""
        return {"kind": "evolution", "space": self.space.name, "settings": self.settings.model_dump(),
                "generation": self.generation, "pending": self.pending,
                "scored": [[c, s] for c, s in self.scored.values()],
                "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from `state_dict` output."""
        if state.get("kind") != "evolution" or state.get("space") != self.space.name:
            raise ConfigError(f"saved searcher state is for {state.get('kind')!r} on space {state.get('space')!r}, "
                              f"not evolution on {self.space.name!r}")
        self.generation = int(state["generation"])
        self.pending = [dict(c) for c in state["pending"]]
        self.scored = {}
        for c, s in state["scored"]:
            self.scored[_key(self.space, c)] = (dict(c), float(s))
        self.rng.bit_generator.state = state["rng"]


@dataclass(frozen=True)
class SearchResult:
    """What a predictor-driven search found, and the best score after each query."""

    best_choice: Choice
    best_score: float
    queries: int
    history: tuple[float, ...] = field(default=(), repr=False)
    best_costs: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {"best_choice": self.best_choice, "best_score": self.best_score, "queries": self.queries,
                "best_costs": self.best_costs}


ScoreFn = Callable[[Sequence[Mapping[str, Any]]], np.ndarray]


def _running_best(scores: list[float]) -> tuple[float, ...]:
    return tuple(np.maximum.accumulate(np.asarray(scores, dtype=float))) if scores else ()


def evolve(space: SearchSpace, score: ScoreFn, settings: EvolutionSettings = EvolutionSettings(),
           feasible: Feasibility | None = None, seed: int = 0, budget: int | None = None) -> SearchResult:
    """OFA's evolution against a vectorised ``score`` (e.g. `AccuracyPredictor.predict`), one call per generation.

    ``budget`` caps the number of scored choices (queries); without it, ``settings.generations`` generations.
    """
    evo = Evolution(space, settings, feasible, seed)
    scores: list[float] = []
    limit = budget if budget is not None else settings.population * settings.generations
    while len(scores) < limit:
        batch = evo.next_generation()[:limit - len(scores)]
        values = np.asarray(score(batch), dtype=float)
        for c, v in zip(batch, values, strict=True):
            evo.tell(c, v)
        scores.extend(values.tolist())
    choice, best = evo.best()
    return SearchResult(choice, best, len(scores), _running_best(scores),
                        feasible.costs(choice) if feasible is not None else {})


def random_sampling(space: SearchSpace, score: ScoreFn, budget: int, feasible: Feasibility | None = None,
                    seed: int = 0, batch: int = 100) -> SearchResult:
    """The baseline: ``budget`` random feasible choices, scored in batches; the best wins."""
    rng = np.random.default_rng(seed)
    check = feasible or (lambda c: True)
    best_c: Choice | None = None
    best, scores = -np.inf, []
    while len(scores) < budget:
        cands: list[Choice] = []
        tries = 0
        while len(cands) < min(batch, budget - len(scores)):
            c = space.sample(rng)
            tries += 1
            if check(c):
                cands.append(c)
            elif tries > 1000 * batch:
                raise ConfigError(f"random search found too few feasible choices of {space.name!r}; loosen the constraints")
        values = np.asarray(score(cands), dtype=float)
        i = int(np.argmax(values))
        if values[i] > best:
            best, best_c = float(values[i]), cands[i]
        scores.extend(values.tolist())
    assert best_c is not None
    return SearchResult(best_c, best, len(scores), _running_best(scores),
                        feasible.costs(best_c) if feasible is not None else {})


# The name before `random_sampling`, which clashed with the ``random`` searcher's module
# (`hwsearch.search.generic.random_search`); kept for one release.
random_search = random_sampling


__all__ = ["Constraints", "CostModel", "Evolution", "EvolutionSettings", "Feasibility", "SearchResult", "evolve",
           "random_sampling", "random_search"]
