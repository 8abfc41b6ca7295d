"""Settings of the NAAS co-search (``searcher.settings`` of ``naas``) and what a run shares.

`NaasSettings` is validated with the config, so this module stays free of torch; `reference_for` fixes
the hypervolume box from the presets, and `Assets` is what every trial of a run reads from ``<run>/naas/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from hwsearch import supernet_schedules
from hwsearch.hwmodel import Accelerator, hardware_metrics
from hwsearch.search.naas.evolution import OuterSettings
from hwsearch.search.naas.problem import CoSearchProblem, InnerSettings, QuantizedSpace, Reference
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
    sparse_options: bool = Field(False, strict=True,
                                 description="also search attention and vector sparsity support (sparse_attention, "
                                             "vector_sparsity, vector_length genes); off: the space of before")
    acc_floor: float = Field(0.8, ge=0, lt=1, description="accuracy at the hypervolume's reference point")
    top_k: int = Field(3, ge=0, description="triples refined and measured after the evolution")
    agent_episodes: int = Field(8, ge=0, description="AMC/HAQ agent episodes per refined triple")
    finetune_epochs: int = Field(1, ge=0, description="most epochs of final training per refined triple")
    finetune_patience: int | None = Field(3, ge=1, description="final training stops after this many epochs "
                                                               "without a better validation accuracy (None: never)")
    finetune_kd_ratio: float = Field(1.0, ge=0, description="weight of distillation from the supernet's largest "
                                                            "network in final training (0: labels only)")
    supernet_schedule: str = Field("fast", description="progressive-shrinking preset (fast, default, cifar10-cpu, "
                                                       "cifar10-gpu, tiny)")
    predictor_samples: int = Field(160, ge=16, description="measured sub-networks the accuracy predictor is fitted on")
    penalty_reference: str = Field("mbv3-like", description="reference sub-network of the bits sensitivity analysis")

    @field_validator("supernet_schedule")
    @classmethod
    def _known_schedule(cls, v: str) -> str:
        return supernet_schedules.check_name(v)

    def outer(self) -> OuterSettings:
        """The evolution's settings."""
        return OuterSettings(self.population, self.generations, self.parents, self.sigma, self.crossover,
                             tuple(self.seed_presets), self.top_k, self.warm_start)

    def inner(self) -> InnerSettings:
        """The inner search's settings."""
        return InnerSettings(self.inner_population, self.inner_generations, front=self.inner_front)

    def space(self) -> AcceleratorSpace:
        """The accelerator space."""
        return accelerator_space(self.accelerator, sparse_options=self.sparse_options)

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


@dataclass
class Assets:
    """What every trial of a run shares: the co-search problem and, for refinement, the supernet."""

    folder: Path
    settings: NaasSettings
    problem: CoSearchProblem
    supernet: Any = None
    data: Any = None
    info: dict[str, Any] = field(default_factory=dict)


# The metrics the evaluator reports: the config checks its objectives and constraints against them.
NAAS_REPORTS = ("accuracy", "predicted_acc", "latency_ms", "energy_mj", "edp", "area_mm2", "peak_power_w",
               "hypervolume", "evaluations", "front_size", "measured", "generation",  # accelerator trials
               "test_acc", "val_acc", "inner_policy_val_acc", "float_val_acc", "agent_val_acc",  # refinements
               "agent_episodes", "agent_improved", "finetune_epochs_run", "finetune_best_epoch",
               "predicted_latency_ms", "predicted_energy_mj", "rank")


__all__ = ["NAAS_REPORTS", "ASSETS", "Assets", "BASELINE_PRESETS", "NaasSettings", "reference_for", "retarget"]
