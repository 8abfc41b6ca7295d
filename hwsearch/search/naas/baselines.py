"""Baselines NAAS is compared with, each spending the same number of (network, bits, accelerator)
evaluations on the same `CoSearchProblem`:

- ``random``: independent random accelerators (within the area/power limits), sub-networks and bits;
- ``nsga2``: Optuna's NSGA-II over the joint option-index encoding (accelerator genes + network genes +
  bits genes), limits as Optuna constraints;
- ``presets``: the network searched alone (the same inner search) on each hand-designed preset,
  re-targeted to the search's technology and clock, the budget split evenly (NAAS's comparison with
  Eyeriss- and NVDLA-like designs).

Each returns every evaluated `Triple`, so fronts and hypervolumes are computed the same way for all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from hwsearch.hwmodel import Accelerator
from hwsearch.registry import Registry
from hwsearch.search.naas.problem import CoSearchProblem, InnerSettings, Triple, inner_search
from hwsearch.search.naas.settings import retarget
from hwsearch.spaces.accelerator import AcceleratorSpace

Baseline = Callable[[CoSearchProblem, AcceleratorSpace, int, int], list[Triple]]
# Baselines ``fn(problem, accel_space, evaluations, seed) -> triples`` by name; ``@register(name)`` adds one.
BASELINES: Registry[Baseline] = Registry("co-search baseline")
register = BASELINES.register


def run_baseline(name: str, problem: CoSearchProblem, accel_space: AcceleratorSpace, evaluations: int,
                 seed: int = 0) -> list[Triple]:
    """Every triple baseline ``name`` evaluated within ``evaluations``."""
    return BASELINES.get(name)(problem, accel_space, evaluations, seed)


@register("random")
def random_joint(problem: CoSearchProblem, accel_space: AcceleratorSpace, evaluations: int, seed: int) -> list[Triple]:
    """Independent uniform samples of the joint space."""
    rng = np.random.default_rng([seed, 1])
    out: list[Triple] = []
    for _ in range(evaluations):
        accel = accel_space.to_accelerator(accel_space.sample_feasible(rng))
        choice = problem.space.sample(rng)
        out += problem.triples(accel, [choice], problem.evaluate(accel, [choice]))
    return out


@register("nsga2")
def nsga2_joint(problem: CoSearchProblem, accel_space: AcceleratorSpace, evaluations: int, seed: int,
                population: int = 32) -> list[Triple]:
    """Optuna NSGA-II over accelerator + network + bits option indices (ask/tell, in memory)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.NSGAIISampler(population_size=population, seed=seed)
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"], sampler=sampler)
    a_dims, q_dims = accel_space.dims, problem.space.dims
    out: list[Triple] = []
    for _ in range(evaluations):
        trial = study.ask()
        a_idx = [trial.suggest_categorical(f"hw.{d.name}", list(range(len(d.options)))) for d in a_dims]
        q_idx = [trial.suggest_categorical(d.name, list(range(len(d.options)))) for d in q_dims]
        a_choice = accel_space.decode(a_idx)
        accel = accel_space.to_accelerator(a_choice)
        violation = _violation(accel, accel_space)
        trial.set_constraint("area_power", violation)
        choice = problem.space.decode(q_idx)
        row = problem.evaluate(accel, [choice])
        if violation <= 0:
            out += problem.triples(accel, [choice], row)
        study.tell(trial, [float(row[0, 0]), float(row[0, 1]), float(row[0, 2])])
    return out


def _violation(accel: Accelerator, space: AcceleratorSpace) -> float:
    v = 0.0
    if space.max_area_mm2 is not None:
        v = max(v, accel.area_mm2 / space.max_area_mm2 - 1.0)
    if space.max_power_w is not None:
        v = max(v, accel.peak_power_w / space.max_power_w - 1.0)
    return v


def preset_inner(evaluations: int, n_presets: int, population: int = 24) -> InnerSettings:
    """Inner-search settings that spend about ``evaluations / n_presets`` per preset."""
    per = max(population, evaluations // max(1, n_presets))
    return InnerSettings(population=population, generations=max(0, per // population - 1), front=10**6)


def presets_network_only(problem: CoSearchProblem, accel_space: AcceleratorSpace, evaluations: int, seed: int,
                         presets: Sequence[str] = ("eyeriss", "nvdla-small", "edge-systolic", "bitfusion"),
                         archive: bool = True) -> list[Triple]:
    """The network (and bits) searched alone on each preset; every evaluated triple is returned."""
    settings = preset_inner(evaluations, len(presets))
    out: list[Triple] = []
    for i, name in enumerate(presets):
        accel = retarget(Accelerator.preset(name), accel_space).with_(name=name)
        res = inner_search(problem, accel, settings, np.random.default_rng([seed, 2, i]))
        out += list(res.front)
    return out


register("presets")(presets_network_only)


def edp_at_accuracy(triples: Sequence[Triple], accuracy: float) -> float:
    """Lowest EDP among triples at least ``accuracy`` accurate (inf when none is)."""
    ok = [t.edp for t in triples if t.accuracy >= accuracy - 1e-12]
    return min(ok) if ok else math.inf


__all__ = ["BASELINES", "edp_at_accuracy", "nsga2_joint", "preset_inner", "presets_network_only", "random_joint",
           "register", "run_baseline"]
