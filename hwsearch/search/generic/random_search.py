"""Random search as a Ray Tune searcher whose stream of proposals is a pure function of its seed.

The k-th proposal is drawn from ``numpy.random.default_rng([seed, k])``, so after ``--resume`` the
searcher picks up at the next k and never re-proposes a choice it already proposed (duplicates are
skipped while fresh choices remain). Its state is two numbers and a list of proposals, saved as JSON.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from ray.tune.search import Searcher

from hwsearch.io import atomic_write_text
from hwsearch.search.engine.searchers import SearchContext
from hwsearch.search.generic.settings import RandomSettings


class RandomSearcher(Searcher):
    """Uniform sampling of option indices per gene, seeded, without repeats."""

    def __init__(self, genes: list[tuple[str, int]], seed: int, metric: str, mode: str, max_redraws: int = 1000):
        super().__init__(metric=metric, mode=mode)
        self.genes = list(genes)
        self.seed = int(seed)
        self.max_redraws = int(max_redraws)
        self.next_draw = 0
        self.proposed: dict[str, list[int]] = {}

    def draw(self, k: int) -> list[int]:
        """The k-th draw of the stream (option index per gene)."""
        rng = np.random.default_rng([self.seed, k])
        return [int(rng.integers(n)) for _, n in self.genes]

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """Propose the next unseen choice of the stream."""
        if trial_id in self.proposed:  # Tune may ask again for a trial it restored
            return self._params(self.proposed[trial_id])
        seen = {tuple(v) for v in self.proposed.values()}
        for _ in range(self.max_redraws + 1):
            idx = self.draw(self.next_draw)
            self.next_draw += 1
            if tuple(idx) not in seen:
                break
        self.proposed[trial_id] = idx
        return self._params(idx)

    def _params(self, idx: list[int]) -> dict[str, Any]:
        return {"choice": {name: i for (name, _), i in zip(self.genes, idx, strict=True)}}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Random search learns nothing from results."""

    def save(self, checkpoint_path: str) -> None:
        """Write the state as JSON (no pickle)."""
        atomic_write_text(checkpoint_path, json.dumps({
            "kind": "random", "seed": self.seed, "next_draw": self.next_draw, "proposed": self.proposed,
            "genes": self.genes,
        }))

    def restore(self, checkpoint_path: str) -> None:
        """Read the state written by `save`."""
        with open(checkpoint_path) as f:
            state = json.load(f)
        self.seed = int(state["seed"])
        self.next_draw = int(state["next_draw"])
        self.proposed = {k: list(v) for k, v in state["proposed"].items()}
        self.genes = [(str(n), int(c)) for n, c in state["genes"]]


def random_searcher(ctx: SearchContext) -> RandomSearcher:
    """Build the random searcher over the space's genes."""
    genes = [(d.name, len(d.options)) for d in ctx.space.dims]
    return RandomSearcher(genes, ctx.seed, ctx.metrics[0], ctx.modes[0], ctx.settings.max_redraws)


__all__ = ["RandomSearcher", "RandomSettings"]
