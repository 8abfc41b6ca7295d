"""Refinement of one co-searched triple: AMC/HAQ agent on its accelerator, final training, measurement.

The sub-network is cut from the supernet (BatchNorm recalibrated). The AMC/HAQ agent then walks its
layers in ``joint`` mode (kept channels and weight/activation bits per layer) under a latency budget
equal to the triple's latency on the triple's accelerator, priced by the accelerator model; the
environment, pricer and agent come from `hwsearch.search.amc.pipeline`, as the ``compression``
evaluator's do. The
triple's own group bit-widths are recorded as the first policy of the environment, so the agent's
answer (the most accurate policy within budget) is never worse than the inner search's on the
validation subset. The chosen policy is applied and trained to its potential (`final_recipe`:
quantization-aware, until validation accuracy stops improving, distilling from the supernet's largest
network), and its test accuracy measured; latency and energy are those of the traced compressed
network on that accelerator.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hwsearch.compress import compressed_netspec, final_recipe, fine_tune
from hwsearch.data import Dataset
from hwsearch.hwmodel import Accelerator, hardware_metrics
from hwsearch.ir import NetSpec
from hwsearch.search.amc.budget import Budget
from hwsearch.search.amc.pipeline import build_pipeline
from hwsearch.search.amc.problem import TorchProblem
from hwsearch.search.amc.settings import AgentConfig, EnvConfig
from hwsearch.search.naas.accuracy import accuracy_on, quantize, subnet
from hwsearch.search.naas.problem import QuantizedSpace, Triple, layer_group

# Refinement's own values of two AMC settings, passed explicitly: a few episodes on one triple, not
# the whole search `AgentConfig` and `EnvConfig` default to.
WARMUP_EPISODES = 4  # at most the episodes the agent plays
MAX_SPARSITY = 0.5


@dataclass(frozen=True)
class RefineSettings:
    """How much work refinement may spend per triple (the run's `NaasSettings` gives each)."""

    agent_episodes: int
    finetune_epochs: int              # the most; fewer when validation accuracy stops improving
    seed: int = 0
    patience: int | None = 3          # epochs without a better validation accuracy before stopping
    kd_ratio: float = 1.0             # distillation from the supernet's largest network (0: off)


@dataclass(frozen=True, eq=False)
class Refined:
    """A refined triple: the compressed model, its policy, NetSpec, accelerator and measured metrics."""

    net_choice: dict[str, Any]
    policy: Any                     # hwsearch.compress.Policy
    model: nn.Module
    netspec: NetSpec
    accel: Accelerator
    metrics: dict[str, float]


def refine(supernet: Any, data: Dataset, space: QuantizedSpace, triple: Triple,
           settings: RefineSettings) -> Refined:
    """Agent-refine, fine-tune and measure ``triple`` (see the module doc)."""
    accel = Accelerator.from_dict(triple.accel)
    net_choice, bits = space.split(triple.choice)
    shape = space.net.input_shape(net_choice)
    res = shape[1]
    d = data.at_resolution(res)
    torch.manual_seed(settings.seed)
    float_model = subnet(supernet, data, net_choice)
    float_acc = accuracy_on(float_model, data, res, "val")
    inner_model = quantize(float_model, space, triple.choice, data)
    inner_val = accuracy_on(inner_model, data, res, "val")

    problem = TorchProblem(float_model, shape, d.x_val, d.y_val, calib=d.x_train[:256])
    quant_bits = [b for b in space.bits if b != 32]
    cfg = EnvConfig(mode="joint", budget=Budget("latency", value=triple.latency_ms * (1 + 1e-9)),
                    max_sparsity=MAX_SPARSITY, min_bits=min(quant_bits), max_bits=max(quant_bits))
    agent_config = None
    if settings.agent_episodes > 0:
        agent_config = AgentConfig(warmup_episodes=min(WARMUP_EPISODES, settings.agent_episodes), seed=settings.seed)
    # the triple's latency_ms is the budget, so the pricer answers in milliseconds
    pipeline = build_pipeline(problem, cfg, agent_config, accelerator=accel, units="ms_mj",
                              reference_accuracy=float_acc, known=lambda env: [(_state_of(env, bits), "naas")])
    env = pipeline.env
    episodes = len(pipeline.agent.train(settings.agent_episodes)) if pipeline.agent is not None else 0
    best = env.best or env.history[0]
    policy = problem.policy(best.as_state())
    model = problem.apply(best.as_state())
    teacher = subnet(supernet, data, space.net.reference("largest")) if settings.kd_ratio > 0 else None
    result = fine_tune(model, d, epochs=settings.finetune_epochs,
                       recipe=final_recipe(settings.finetune_epochs, settings.patience, settings.kd_ratio),
                       seed=settings.seed, resolution=res, teacher=teacher)
    model = model.eval()
    net = compressed_netspec(model, shape)
    hw = hardware_metrics(net, accel)
    metrics = {
        "accuracy": float(result.test_acc), "test_acc": float(result.test_acc), "val_acc": float(result.val_acc),
        "predicted_acc": triple.accuracy, "inner_policy_val_acc": inner_val, "float_val_acc": float_acc,
        "agent_val_acc": float(best.accuracy), "agent_episodes": float(episodes),
        "agent_improved": float(best.source != "naas"), "finetune_epochs_run": float(result.epochs),
        "finetune_best_epoch": float(result.best_epoch),
        "latency_ms": hw["latency_ms"], "energy_mj": hw["energy_mj"], "edp": hw["edp"],
        "area_mm2": hw["area_mm2"], "peak_power_w": hw["peak_power_w"],
        "predicted_latency_ms": triple.latency_ms, "predicted_energy_mj": triple.energy_mj, "measured": 1.0,
    }
    return Refined(dict(net_choice), policy, model, net, accel, metrics)


def _state_of(env: Any, bits: Mapping[str, int]) -> dict[str, np.ndarray]:
    """The environment state of 'every channel kept, each layer at its group's bits'."""
    state = {k: v.copy() for k, v in env.max_state.items()}
    for i, slot in enumerate(env.slots):
        b = bits.get(layer_group(slot.name))
        if b is not None and b != 32:
            state["w_bits"][i] = b
            state["a_bits"][i] = b
    return state


__all__ = ["MAX_SPARSITY", "RefineSettings", "Refined", "WARMUP_EPISODES", "refine"]
