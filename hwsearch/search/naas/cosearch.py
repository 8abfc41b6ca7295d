"""NAAS: co-search of sub-network, quantization policy and accelerator, as a library and on Ray Tune.

The outer loop evolves accelerators (`hwsearch.search.naas.evolution`); for each one, the inner
loop searches the OFA sub-network and per-group bit-widths with the supernet's predicted accuracy
and the accelerator model's costs (`hwsearch.search.naas.problem`); the top-k triples of the union
front are then refined by the AMC/HAQ agent on their accelerator, fine-tuned and measured
(`hwsearch.search.naas.refine`), and the final front uses the measured accuracy.

On the engine: searcher ``naas`` (`NaasSearcher`, a Ray Tune `Searcher` whose state is the
evolution's JSON) proposes one trial per accelerator, then one per triple to refine; evaluator
``naas`` (`NaasEvaluator`) runs a proposal. Run-wide assets (trained supernet, accuracy predictor,
measured bit-width penalty, normalisation) are prepared once by the searcher factory in the driver
and kept in ``<run>/naas/``; trials read them from there. Accelerator trials report their
representative triple with ``measured = 0`` and keep their whole front in ``front.json``; refinement
trials report measured accuracy with ``measured = 1`` (the flagship config constrains
``measured >= 1``, so only measured triples enter the run's Pareto front and ``export --trial best``).

As a library, `run_naas` runs the same evolution sequentially in-process with the same state file,
which is what the benchmarks use.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hwsearch.errors import RunError
from hwsearch.hwmodel import Accelerator
from hwsearch.search.naas.evolution import FINISHED, WAIT, NaasEvolution, OuterSettings
from hwsearch.search.naas.problem import (
    CoSearchProblem,
    InnerResult,
    InnerSettings,
    Triple,
    front_of,
    inner_search,
)
from hwsearch.search.naas.settings import (
    ASSETS,
    BASELINE_PRESETS,
    Assets,
    NaasSettings,
    reference_for,
    retarget,
)
from hwsearch.spaces.accelerator import AcceleratorSpace


# ---- library ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NaasRun:
    """What `run_naas` returns: every trial's result, the union front and the evaluations spent."""

    evolution: NaasEvolution
    evaluations: int
    seconds: float

    @property
    def triples(self) -> list[Triple]:
        """Every triple any accelerator trial kept."""
        return self.evolution.triples()

    @property
    def front(self) -> list[Triple]:
        """Non-dominated triples on (accuracy, latency, energy)."""
        return front_of(self.triples)


def evaluate_accelerator(problem: CoSearchProblem, accel_space: AcceleratorSpace, choice: Mapping[str, Any],
                         inner: InnerSettings, seed: int,
                         seeds: Sequence[Mapping[str, Any]] = ()) -> tuple[InnerResult, Accelerator]:
    """One accelerator trial: the inner search on the accelerator ``choice`` describes."""
    accel = accel_space.to_accelerator(choice)
    return inner_search(problem, accel, inner, np.random.default_rng(seed), seeds), accel


def run_naas(problem: CoSearchProblem, settings: NaasSettings, seed: int = 0, state_path: str | Path | None = None,
             on_trial: Callable[[str, InnerResult], None] | None = None) -> NaasRun:
    """The outer evolution and inner searches, sequentially in this process (no refinement).

    With ``state_path``, the state is written after every trial and a run found there continues."""
    space = settings.space()
    evo = NaasEvolution(space, OuterSettings(**{**settings.outer().__dict__, "top_k": 0}), seed, problem.reference)
    if state_path is not None and Path(state_path).is_file():
        evo.restore(state_path)
    start = time.perf_counter()
    evaluations = sum(int(r.get("evaluations", 0)) for r in evo.results.values())
    k = len(evo.proposals)
    while True:
        tid = f"t{k:05d}"
        proposal = evo.ask(tid)
        if proposal == FINISHED:
            break
        if proposal == WAIT:  # cannot happen sequentially: every proposal is answered before the next
            raise RunError("NAAS evolution is waiting on a trial that never finished")
        k += 1
        result, _ = evaluate_accelerator(problem, space, proposal["accel"], settings.inner(), proposal["seed"],
                                         proposal.get("seeds", ()))
        evaluations += result.evaluations
        evo.tell(tid, result.hypervolume, [t.to_dict() for t in result.front], {"evaluations": result.evaluations})
        if state_path is not None:
            evo.save(state_path)
        if on_trial is not None:
            on_trial(tid, result)
    return NaasRun(evo, evaluations, time.perf_counter() - start)


__all__ = ["ASSETS", "Assets", "BASELINE_PRESETS", "NaasRun", "NaasSettings", "evaluate_accelerator",
           "reference_for", "retarget", "run_naas"]
