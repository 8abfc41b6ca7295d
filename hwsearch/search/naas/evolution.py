"""NAAS's outer loop: a population-based evolution over accelerators, as an ask/tell object with JSON state.

Generation 0 is the hand-designed presets (their nearest designs in the space) topped up with random
feasible designs; every later generation is bred from the best designs evaluated so far (elitist, as
NAAS keeps the top candidates): two parents' NAAS vectors are mixed gene by gene, Gaussian noise is
added, and the vector is decoded (`AcceleratorSpace.from_vector`); children that break the area or
power limit, or repeat a design, are redrawn. Generations are synchronous: generation g+1 is asked
for only once every design of generation g has its fitness, so the result does not depend on how
many trials run at once: a proposal of generation g reads only the results of generations before g
(its parents and the warm-start front), and results are read in proposal order, never in the order
trials happened to finish.

The k-th proposal draws from ``numpy.random.default_rng([seed, k])``: the state is a few counters
and the evaluated designs, so saving it (JSON, atomically) and loading it continues the same run.
After the last generation the object proposes the refinement of the top-k triples of the union of
every design's front (topped up from the next non-dominated layers when the front is smaller), one
proposal per triple, then reports that it is finished.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwsearch.errors import RunError
from hwsearch.hwmodel import Accelerator
from hwsearch.io import atomic_write_text
from hwsearch.search.naas.problem import Reference, Triple, front_of
from hwsearch.search.pareto import rank_select
from hwsearch.spaces.accelerator import AcceleratorSpace

STATE_VERSION = 1
WAIT = "wait"
FINISHED = "finished"


@dataclass(frozen=True)
class OuterSettings:
    """Population size, generations, parents kept, mutation width, crossover rate, preset seeds."""

    population: int = 8
    generations: int = 3
    parents: int = 4
    sigma: float = 0.15
    crossover: float = 0.5
    seed_presets: tuple[str, ...] = ("eyeriss", "nvdla-small", "edge-systolic", "bitfusion")
    top_k: int = 3
    warm_start: int = 8

    @property
    def trials(self) -> int:
        """Accelerator trials of the whole evolution."""
        return self.population * self.generations


class NaasEvolution:
    """Ask for the next accelerator (or refinement), tell its fitness and front; save and load as JSON."""

    def __init__(self, space: AcceleratorSpace, settings: OuterSettings, seed: int = 0,
                 reference: Reference | None = None) -> None:
        self.space, self.settings, self.seed = space, settings, int(seed)
        self.reference = reference
        self.draws = 0
        self.generation = 0
        self.proposals: dict[str, dict[str, Any]] = {}   # trial id -> proposal
        self.results: dict[str, dict[str, Any]] = {}     # trial id -> {"fitness", "front", "failed"}

    # ---- asking -------------------------------------------------------------------------------------
    def ask(self, trial_id: str) -> dict[str, Any] | str:
        """The proposal for ``trial_id``: ``{"accel": choice, "seed": s}``, ``{"refine": triple}``,
        `WAIT` (a generation is still running) or `FINISHED`."""
        if trial_id in self.proposals:  # Tune may ask again for a trial it restored
            return self.proposals[trial_id]
        s = self.settings
        while self.generation < s.generations:
            gen = self._of_generation(self.generation)
            if len(gen) < s.population:
                return self._propose(trial_id, self._new_design(len(gen)))
            if not all(t in self.results for t in gen):
                return WAIT
            self.generation += 1
        accel_ids = [t for t, p in self.proposals.items() if "accel" in p]
        if not all(t in self.results for t in accel_ids):
            return WAIT
        refines = [t for t, p in self.proposals.items() if "refine" in p]
        picks = self.top_triples()
        if len(refines) < len(picks):
            return self._propose(trial_id, {"refine": picks[len(refines)].to_dict(), "rank": len(refines),
                                            "seed": self._seed_for(len(self.proposals))})
        if not all(t in self.results for t in refines):
            return WAIT
        return FINISHED

    def _of_generation(self, g: int) -> list[str]:
        return [t for t, p in self.proposals.items() if p.get("generation") == g]

    def _seed_for(self, k: int) -> int:
        return int(np.random.default_rng([self.seed, 7, k]).integers(2**31))

    def _propose(self, trial_id: str, proposal: dict[str, Any]) -> dict[str, Any]:
        self.proposals[trial_id] = proposal
        return proposal

    def _seen(self) -> set[tuple]:
        return {tuple(p["accel"][d.name] for d in self.space.dims) for p in self.proposals.values() if "accel" in p}

    def _new_design(self, slot: int) -> dict[str, Any]:
        k = self.draws
        self.draws += 1
        rng = np.random.default_rng([self.seed, k])
        seen = self._seen()
        choice = None
        if self.generation == 0:
            presets = list(self.settings.seed_presets)
            if slot < len(presets):
                c = self.space.nearest(Accelerator.preset(presets[slot]))
                if self.space.feasible(c) and tuple(c[d.name] for d in self.space.dims) not in seen:
                    choice = c
        else:
            choice = self._child(rng, seen)
        if choice is None:
            for _ in range(200):
                c = self.space.sample_feasible(rng)
                if tuple(c[d.name] for d in self.space.dims) not in seen:
                    choice = c
                    break
            else:
                choice = self.space.sample_feasible(rng)
        return {"accel": choice, "generation": self.generation, "seed": int(rng.integers(2**31)),
                "seeds": self.elite_choices(self.settings.warm_start, before=self.generation)}

    def complete(self) -> bool:
        """Whether every accelerator and every refinement has been proposed and answered (no side effects)."""
        s = self.settings
        accel = [t for t, p in self.proposals.items() if "accel" in p]
        if len(accel) < s.population * s.generations or any(t not in self.results for t in accel):
            return False
        refines = [t for t, p in self.proposals.items() if "refine" in p]
        return len(refines) >= len(self.top_triples()) and all(t in self.results for t in refines)

    def elite_choices(self, k: int, before: int | None = None) -> list[dict[str, Any]]:
        """Up to ``k`` (sub-network, bits) choices spread over the union front of generations before
        ``before`` (None: all so far); the inner search of the next accelerator starts from them."""
        front = front_of(self.triples(before))
        if k <= 0 or not front:
            return []
        pts = np.array([[-t.accuracy, t.latency_ms, t.energy_mj] for t in front])
        return [dict(front[i].choice) for i in rank_select(pts, k)]

    def _child(self, rng: np.random.Generator, seen: set[tuple]) -> dict[str, Any] | None:
        ranked = self.ranked_designs(before=self.generation)
        parents = ranked[: max(1, self.settings.parents)]
        if not parents:
            return None
        slices = list(self.space.gene_slices().values())
        for _ in range(100):
            a = self.space.to_vector(parents[rng.integers(len(parents))])
            b = self.space.to_vector(parents[rng.integers(len(parents))])
            x = a.copy()
            if rng.random() < self.settings.crossover:
                for sl in slices:
                    if rng.random() < 0.5:
                        x[sl] = b[sl]
            x = x + rng.normal(0.0, self.settings.sigma, size=x.shape)
            c = self.space.from_vector(x)
            if self.space.feasible(c) and tuple(c[d.name] for d in self.space.dims) not in seen:
                return c
        return None

    def pending(self) -> list[str]:
        """Trial ids proposed but not yet answered, in proposal order."""
        return [t for t in self.proposals if t not in self.results]

    def reassign(self, old: str, new: str) -> dict[str, Any]:
        """Hand the unanswered proposal of trial ``old`` to trial ``new``, keeping its place in proposal order.

        After a crash, a proposal the searcher made but the engine never recorded has no trial that will
        run it; the next trial takes it over, so the run stays the one an uninterrupted run would be."""
        if old not in self.proposals or old in self.results:
            raise RunError(f"NAAS cannot reassign trial {old!r}: it is not an unanswered proposal")
        self.proposals = {(new if t == old else t): p for t, p in self.proposals.items()}
        return self.proposals[new]

    # ---- telling ------------------------------------------------------------------------------------
    def tell(self, trial_id: str, fitness: float | None, front: Sequence[Mapping[str, Any]] = (),
             extra: Mapping[str, Any] | None = None) -> None:
        """Record a finished trial: its fitness (None: failed) and its front of triples (dicts)."""
        if trial_id not in self.proposals:
            raise RunError(f"NAAS was told about trial {trial_id!r}, which it never proposed")
        self.results[trial_id] = {"fitness": None if fitness is None else float(fitness),
                                  "front": [dict(t) for t in front], **dict(extra or {})}

    def _answered(self, before: int | None) -> list[tuple[str, dict[str, Any]]]:
        """(trial id, result) of answered accelerator trials of generations before ``before``, in proposal order."""
        return [(t, self.results[t]) for t, p in self.proposals.items()
                if "accel" in p and t in self.results and (before is None or p["generation"] < before)]

    def ranked_designs(self, before: int | None = None) -> list[dict[str, Any]]:
        """Evaluated accelerator choices of generations before ``before`` (None: all), best fitness
        first, ties in proposal order (failed ones left out)."""
        done = [(r["fitness"], i, t) for i, (t, r) in enumerate(self._answered(before)) if r.get("fitness") is not None]
        done.sort(key=lambda x: (-x[0], x[1]))
        return [self.proposals[t]["accel"] for _, _, t in done]

    def triples(self, before: int | None = None) -> list[Triple]:
        """Every triple on the front of some accelerator trial of generations before ``before`` (None: all)."""
        return [Triple.from_dict(d) for _, r in self._answered(before) for d in r.get("front", [])]

    def front(self) -> list[Triple]:
        """The union front over accuracy, latency, energy and area (predicted accuracy)."""
        return front_of(self.triples(), with_area=True)

    def top_triples(self) -> list[Triple]:
        """The ``top_k`` triples to refine: spread along the (accuracy, latency, energy) front by
        greatest hypervolume contribution, the most accurate first; where the front holds fewer, the
        next non-dominated layers fill in (NSGA-II ranking)."""
        picks = self._front_picks()
        if len(picks) < self.settings.top_k:
            # One triple can dominate all others (many reach the predictor's clipped ceiling), yet the
            # prediction is a few points off: measuring runners-up is what the refinement budget is for.
            rest: list[Triple] = []
            for t in self.triples():
                if t not in picks and t not in rest:
                    rest.append(t)
            pts = np.array([[-t.accuracy, t.latency_ms, t.energy_mj] for t in rest]).reshape(-1, 3)
            picks += [rest[i] for i in rank_select(pts, self.settings.top_k - len(picks))]
        return picks

    def _front_picks(self) -> list[Triple]:
        front = front_of(self.triples())
        k = min(self.settings.top_k, len(front))
        if k == 0:
            return []
        front.sort(key=lambda t: (-t.accuracy, t.edp))
        picks = [front[0]]
        ref = self.reference
        while len(picks) < k and ref is not None:
            base = ref.hypervolume(*_cols(picks))
            gains = [(ref.hypervolume(*_cols(picks + [t])) - base, -i) for i, t in enumerate(front) if t not in picks]
            if not gains or max(gains)[0] <= 0:
                break
            picks.append(front[-max(gains)[1]])
        for t in front:
            if len(picks) >= k:
                break
            if t not in picks:
                picks.append(t)
        return picks

    # ---- state --------------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """JSON-able state."""
        return {"version": STATE_VERSION, "kind": "naas", "seed": self.seed, "draws": self.draws,
                "generation": self.generation, "proposals": self.proposals, "results": self.results}

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Continue from a state written by `state`."""
        if state.get("kind") != "naas" or state.get("version") != STATE_VERSION:
            raise RunError(f"not a NAAS searcher state of version {STATE_VERSION} (got {state.get('kind')!r}, "
                           f"version {state.get('version')!r})")
        self.seed, self.draws = int(state["seed"]), int(state["draws"])
        self.generation = int(state["generation"])
        self.proposals = {str(k): dict(v) for k, v in state["proposals"].items()}
        self.results = {str(k): dict(v) for k, v in state["results"].items()}

    def save(self, path: str | Path) -> None:
        """Write the state atomically."""
        atomic_write_text(path, json.dumps(self.state()))

    def restore(self, path: str | Path) -> None:
        """Read a state written by `save`."""
        try:
            state = json.loads(Path(path).read_text())
        except (OSError, ValueError) as e:
            raise RunError(f"cannot read NAAS searcher state {path}: {e}") from None
        self.load_state(state)


def _cols(ts: Sequence[Triple]) -> tuple[list[float], list[float], list[float]]:
    return [t.accuracy for t in ts], [t.latency_ms for t in ts], [t.energy_mj for t in ts]


__all__ = ["FINISHED", "NaasEvolution", "OuterSettings", "WAIT"]
