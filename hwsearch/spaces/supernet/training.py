"""Progressive shrinking: train the supernet once so that every sub-network works without retraining.

Once-for-All's schedule (Cai et al., ICLR 2020): train the largest network first; then unlock the
elastic kernel, then depth, then width, each phase sampling sub-networks among those unlocked so far
and distilling from the largest network trained in the first phase. Resolution is elastic in every
phase. Each step follows the sandwich rule (the largest and the smallest unlocked sub-network plus
``sandwich`` random ones, gradients summed), which converges faster than random sampling alone.
Before the width phase the channels are sorted by importance so that narrow sub-networks inherit
the most important ones. Phases whose kind the space lacks (a ViT has no kernel gene) are skipped.
A language model (`gpt`) predicts every position of its window: its logits and its teacher's count
each position as one prediction (`hwsearch.train.per_position`).
The schedules (epochs and learning rates per phase, the named presets) are `hwsearch.supernet_schedules`,
which a config can check without torch; this module re-exports them.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from hwsearch.data import Dataset
from hwsearch.errors import UnknownName
from hwsearch.spaces.base import Choice
from hwsearch.spaces.supernet.supernet import SuperNet
from hwsearch.supernet_schedules import SCHEDULES, SPACE_SCHEDULES, Schedule, preset, schedule
from hwsearch.train import (
    TrainingDiverged,
    _lr_factor,
    augment_batch,
    deterministic,
    per_position,
    pick_device,
)

PHASES = ("full", "kernel", "depth", "width")


@dataclass(frozen=True)
class PhaseLog:
    """What one phase left behind."""

    phase: str
    epochs: int
    seconds: float
    loss: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {"phase": self.phase, "epochs": self.epochs, "seconds": self.seconds, "loss": self.loss}


@dataclass(frozen=True)
class TrainingLog:
    """Every phase of one progressive-shrinking run."""

    phases: tuple[PhaseLog, ...] = field(default=())

    @property
    def seconds(self) -> float:
        """Training time of all phases."""
        return sum(p.seconds for p in self.phases)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {"seconds": self.seconds, "phases": [p.to_dict() for p in self.phases]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TrainingLog:
        """Inverse of `to_dict`."""
        return cls(tuple(PhaseLog(**p) for p in d.get("phases", ())))


class Sampler:
    """Sub-networks a phase may use: genes of locked kinds stay at the largest network's values."""

    def __init__(self, supernet: SuperNet, unlocked: set[str]) -> None:
        self.supernet = supernet
        self.free = set(supernet.genes_of(unlocked))
        self.largest = dict(supernet.largest)
        self.smallest = {d.name: (min(d.options) if d.name in self.free else self.largest[d.name])
                         for d in supernet.space.dims}

    def sample(self, rng: np.random.Generator) -> Choice:
        """A random sub-network among the unlocked ones."""
        c = self.supernet.space.sample(rng)
        return {k: (v if k in self.free else self.largest[k]) for k, v in c.items()}


def unlocked_kinds(phase: str) -> set[str]:
    """Elastic kinds a phase samples (resolution is elastic throughout, as in OFA)."""
    if phase not in PHASES:
        raise UnknownName(f"unknown progressive-shrinking phase {phase!r}; known: {', '.join(PHASES)}")
    return {"resolution", *PHASES[1:PHASES.index(phase) + 1]}


def _soft_ce(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    target = F.softmax(teacher / temperature, dim=1)
    return -(target * F.log_softmax(student / temperature, dim=1)).sum(dim=1).mean()


def train_supernet(
    supernet: SuperNet,
    data: Dataset,
    plan: Schedule,
    seed: int = 0,
    progress: bool = False,
    on_phase: Callable[[PhaseLog], None] | None = None,
) -> TrainingLog:
    """Run progressive shrinking on ``supernet`` in place and return what each phase took."""
    recipe = plan.recipe
    device = pick_device(recipe.device)
    supernet.to(device)
    phases = [(name, epochs, lr) for name, epochs, lr in plan.phases()
              if name == "full" or supernet.genes_of({name})]
    steps_per_epoch = math.ceil(len(data.y_train) / recipe.batch_size)
    if plan.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, plan.max_steps_per_epoch)
    bar = _bar(sum(e for _, e, _ in phases) * steps_per_epoch) if progress else None
    logs: list[PhaseLog] = []
    rng = np.random.default_rng(seed)
    teacher: torch.nn.Module | None = None
    with deterministic(seed, recipe.threads):
        gen = torch.Generator().manual_seed(seed)
        for phase, epochs, lr in phases:
            start = time.perf_counter()
            if phase == "width":
                supernet.reorder_channels()
            sampler = Sampler(supernet, unlocked_kinds(phase))
            decay = [p for n, p in supernet.named_parameters() if not n.startswith("kernels.")]
            no_decay = [p for n, p in supernet.named_parameters() if n.startswith("kernels.")]
            groups = [{"params": decay}] + ([{"params": no_decay, "weight_decay": 0.0}] if no_decay else [])
            if recipe.optimizer == "sgd":
                opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=lr, momentum=recipe.momentum,
                                                             weight_decay=recipe.weight_decay, nesterov=True)
            else:
                # fused: one kernel for all tensors; the per-tensor loop cost more than the tiny convs
                opt = torch.optim.AdamW(groups, lr=lr, weight_decay=recipe.weight_decay, fused=True)
            # Only the first phase warms up: the elastic phases start from trained weights, and a
            # one-epoch phase that warmed up for an epoch would never decay its learning rate.
            phase_recipe = recipe if phase == "full" else recipe.model_copy(update={"warmup_epochs": 0})
            sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_factor(phase_recipe, steps_per_epoch, epochs))
            params = [p for g in groups for p in g["params"]]
            supernet.train()
            loss_value = float("nan")
            for epoch in range(epochs):
                total, count = 0.0, 0
                order = torch.randperm(len(data.y_train), generator=gen)[:steps_per_epoch * recipe.batch_size]
                for s in range(0, len(order), recipe.batch_size):
                    idx = order[s:s + recipe.batch_size]
                    yb = data.y_train[idx].to(device)
                    if phase == "full":  # the largest network, at a random resolution
                        choices = [sampler.sample(rng)]
                    else:
                        choices = [sampler.largest, sampler.smallest] + [sampler.sample(rng) for _ in range(plan.sandwich)]
                    opt.zero_grad(set_to_none=True)
                    # One augmented batch per resolution per step, so the teacher sees what the students see.
                    inputs: dict[int, torch.Tensor] = {}
                    soft: dict[int, torch.Tensor] = {}
                    step_loss = 0.0
                    for choice in choices:
                        res = supernet.resolution(choice)
                        if res not in inputs:
                            xb = augment_batch(data.at_resolution(res).x_train[idx], data, recipe, gen)
                            inputs[res] = xb.to(device)
                            if teacher is not None and plan.kd_ratio > 0:
                                with torch.no_grad():
                                    soft[res] = teacher(inputs[res])
                        # a language model predicts every position: (N, T, vocab) logits become N*T rows
                        logits, targets = per_position(supernet(inputs[res], choice), yb)
                        loss = F.cross_entropy(logits, targets, label_smoothing=recipe.label_smoothing)
                        if res in soft:
                            teacher_logits = per_position(soft[res], yb)[0]
                            loss = loss + plan.kd_ratio * _soft_ce(logits, teacher_logits, plan.kd_temperature)
                        if not torch.isfinite(loss):
                            raise TrainingDiverged(
                                f"supernet loss became {float(loss)} in phase {phase!r}, epoch {epoch + 1}; "
                                f"lower the schedule's learning rate (now {lr})")
                        loss.backward()
                        step_loss += float(loss.detach())
                    if recipe.grad_clip > 0:
                        torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip)
                    opt.step()
                    sched.step()
                    total += step_loss / len(choices) * len(idx)
                    count += len(idx)
                    if bar is not None:
                        bar.set_description(f"supernet {phase}")
                        bar.set_postfix(loss=f"{step_loss / len(choices):.3f}")
                        bar.update(1)
                loss_value = total / max(1, count)
            if phase == "full":
                teacher = copy.deepcopy(supernet.full).train()  # batch statistics, as OFA's teacher
                for p in teacher.parameters():
                    p.requires_grad_(False)
            log = PhaseLog(phase, epochs, time.perf_counter() - start, loss_value)
            logs.append(log)
            if on_phase is not None:
                on_phase(log)
    if bar is not None:
        bar.close()
    supernet.eval()
    return TrainingLog(tuple(logs))


def _bar(total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="supernet", unit="step", leave=False)


__all__ = ["PHASES", "PhaseLog", "SCHEDULES", "SPACE_SCHEDULES", "Sampler", "Schedule", "TrainingLog", "preset",
           "schedule", "train_supernet", "unlocked_kinds"]
