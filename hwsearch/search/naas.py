"""NAAS: co-search of sub-network, quantization policy and accelerator, as a library and on Ray Tune.

The outer loop evolves accelerators (`hwsearch.search.naas_evolution`); for each one, the inner
loop searches the OFA sub-network and per-group bit-widths with the supernet's predicted accuracy
and the accelerator model's costs (`hwsearch.search.naas_inner`); the top-k triples of the union
front are then refined by the AMC/HAQ agent on their accelerator, fine-tuned and measured
(`hwsearch.search.naas_refine`), and the final front uses the measured accuracy.

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

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from hwsearch.errors import RunError
from hwsearch.hwmodel import Accelerator, hardware_metrics
from hwsearch.search.naas_evolution import FINISHED, WAIT, NaasEvolution, OuterSettings
from hwsearch.search.naas_inner import (
    CoSearchProblem,
    InnerResult,
    InnerSettings,
    QuantizedSpace,
    Reference,
    Triple,
    front_of,
    inner_search,
)
from hwsearch.spaces.accelerator import AcceleratorSpace, accelerator_space

ASSETS = "naas"
BASELINE_PRESETS = ("eyeriss", "nvdla-small", "edge-systolic", "bitfusion")


class NaasSettings(BaseModel):
    """``searcher.settings`` of ``naas``: outer evolution, inner search, refinement, assets."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    population: int = Field(8, ge=2, description="accelerators per generation")
    generations: int = Field(3, ge=1, description="generations, the preset-seeded first one included")
    parents: int = Field(4, ge=1, description="best designs kept as parents (elitist)")
    sigma: float = Field(0.15, gt=0, description="std of the Gaussian step on the NAAS vector")
    crossover: float = Field(0.5, ge=0, le=1, description="probability of mixing two parents gene by gene")
    seed_presets: tuple[str, ...] = Field(BASELINE_PRESETS, description="presets seeding generation 0")
    inner_population: int = Field(32, ge=4, description="inner (sub-network, bits) population")
    inner_generations: int = Field(6, ge=0, description="inner generations after the random first one")
    inner_front: int = Field(24, ge=1, description="triples a trial keeps from its front")
    warm_start: int = Field(8, ge=0, description="front triples found so far that start each inner search")
    bits: tuple[int, ...] = Field((4, 6, 8), description="bit-width options of each layer group")
    accelerator: dict[str, Any] = Field(default_factory=dict,
                                        description="accelerator space: genes, clock_hz, tech, max_area_mm2, max_power_w")
    acc_floor: float = Field(0.8, ge=0, lt=1, description="accuracy at the hypervolume's reference point")
    top_k: int = Field(3, ge=0, description="triples refined and measured after the evolution")
    agent_episodes: int = Field(8, ge=0, description="AMC/HAQ agent episodes per refined triple")
    finetune_epochs: int = Field(1, ge=0, description="fine-tuning epochs per refined triple")
    supernet_schedule: str = Field("fast", description="progressive-shrinking schedule (fast, default, tiny)")
    predictor_samples: int = Field(160, ge=16, description="measured sub-networks the accuracy predictor is fitted on")
    penalty_reference: str = Field("mbv3-like", description="reference sub-network of the bits sensitivity analysis")

    def outer(self) -> OuterSettings:
        """The evolution's settings."""
        return OuterSettings(self.population, self.generations, self.parents, self.sigma, self.crossover,
                             tuple(self.seed_presets), self.top_k, self.warm_start)

    def inner(self) -> InnerSettings:
        """The inner search's settings."""
        return InnerSettings(self.inner_population, self.inner_generations, front=self.inner_front)

    def space(self) -> AcceleratorSpace:
        """The accelerator space."""
        return accelerator_space(self.accelerator)

    @property
    def trials(self) -> int:
        """Trials of a whole run: accelerators, then refinements."""
        return self.population * self.generations + self.top_k


def reference_for(problem_space: QuantizedSpace, accel_space: AcceleratorSpace, acc_floor: float,
                  presets: tuple[str, ...] = BASELINE_PRESETS) -> Reference:
    """The fixed hypervolume box: the largest sub-network at the highest bits on the costliest preset
    (re-targeted to the space's technology and clock) sets the latency and energy scales."""
    ref = problem_space.reference("largest")
    net = problem_space.to_netspec(ref)
    lat, en = [], []
    for p in presets:
        hw = hardware_metrics(net, retarget(Accelerator.preset(p), accel_space))
        lat.append(hw["latency_ms"])
        en.append(hw["energy_mj"])
    return Reference(acc_floor, max(lat), max(en))


def retarget(accel: Accelerator, space: AcceleratorSpace) -> Accelerator:
    """A preset on the search's technology tables and clock, so that comparisons are like for like."""
    return accel.with_(tech=space.tech, clock_hz=space.clock_hz)


# ---- run-wide assets ------------------------------------------------------------------------------
@dataclass
class Assets:
    """What every trial of a run shares: the co-search problem and, for refinement, the supernet."""

    folder: Path
    settings: NaasSettings
    problem: CoSearchProblem
    supernet: Any = None
    data: Any = None
    info: dict[str, Any] = field(default_factory=dict)


def prepare_assets(folder: str | Path, space_name: str, space_options: Mapping[str, Any], data_source: str,
                   data_seed: int, settings: NaasSettings, seed: int = 0,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train (or load from cache) the supernet, fit the accuracy predictor, measure the bits penalty and
    the normalisation; write them under ``folder`` and return the summary written to ``assets.json``."""
    from hwsearch.search.naas_assets import build_assets

    return build_assets(Path(folder), space_name, space_options, data_source, data_seed, settings, seed, progress)


@lru_cache(maxsize=2)
def load_assets(folder: str, data_source: str, data_seed: int, space_options: str) -> Assets:
    """The assets of a run, loaded once per worker process."""
    from hwsearch.search.naas_assets import open_assets

    return open_assets(Path(folder), data_source, data_seed, json.loads(space_options))


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


__all__ = ["ASSETS", "Assets", "BASELINE_PRESETS", "NaasRun", "NaasSettings", "evaluate_accelerator", "load_assets",
           "prepare_assets", "reference_for", "retarget", "run_naas"]
