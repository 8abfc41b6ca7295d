"""Progressive shrinking: train the supernet once so that every sub-network works without retraining.

Once-for-All's schedule (Cai et al., ICLR 2020): train the largest network first; then unlock the
elastic kernel, then depth, then width, each phase sampling sub-networks among those unlocked so far
and distilling from the largest network trained in the first phase. Resolution is elastic in every
phase. Each step follows the sandwich rule (the largest and the smallest unlocked sub-network plus
``sandwich`` random ones, gradients summed), which converges faster than random sampling alone.
Before the width phase the channels are sorted by importance so that narrow sub-networks inherit
the most important ones. Phases whose kind the space lacks (a ViT has no kernel gene) are skipped.
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
from pydantic import BaseModel, ConfigDict, Field

from hwsearch.data import Dataset
from hwsearch.errors import UnknownName
from hwsearch.spaces.base import Choice
from hwsearch.spaces.supernet.supernet import SuperNet
from hwsearch.train import Recipe, TrainingDiverged, _lr_factor, augment_batch, deterministic, pick_device

PHASES = ("full", "kernel", "depth", "width")


class Schedule(BaseModel):
    """Epochs and learning rates of each progressive-shrinking phase, and the shared training recipe."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs_full: int = Field(8, ge=1, description="epochs of the largest network alone (the teacher)")
    epochs_kernel: int = Field(3, ge=0, description="epochs with elastic kernel")
    epochs_depth: int = Field(3, ge=0, description="epochs with elastic kernel and depth")
    epochs_width: int = Field(4, ge=0, description="epochs with everything elastic")
    lr_full: float = Field(3e-3, gt=0, description="peak learning rate of the first phase")
    lr_elastic: float = Field(1e-3, gt=0, description="peak learning rate of the elastic phases (OFA lowers it)")
    sandwich: int = Field(2, ge=0, description="random sub-networks per step besides the largest and smallest")
    kd_ratio: float = Field(1.0, ge=0, description="weight of the distillation loss (0: off)")
    kd_temperature: float = Field(1.0, gt=0)
    max_steps_per_epoch: int | None = Field(None, ge=1, description="cap on steps per epoch (None: whole split)")
    recipe: Recipe = Field(default_factory=lambda: Recipe(epochs=0), description="batch, optimizer, augmentation")

    def phases(self) -> list[tuple[str, int, float]]:
        """(phase, epochs, peak lr) in order; phases with zero epochs left out."""
        out = [("full", self.epochs_full, self.lr_full), ("kernel", self.epochs_kernel, self.lr_elastic),
               ("depth", self.epochs_depth, self.lr_elastic), ("width", self.epochs_width, self.lr_elastic)]
        return [p for p in out if p[1] > 0]

    @property
    def total_epochs(self) -> int:
        """Epochs of all phases together."""
        return sum(e for _, e, _ in self.phases())


SCHEDULES: dict[str, Schedule] = {
    # The flagship experiment's: about 2.5 minutes on two CPU cores at digits' sizes (ofa-mbv3 COMPACT).
    # Batch 32 and a peak lr of 1e-2 for the teacher: on digits' ~1.2k training images, batch 64 at
    # 3e-3 left the largest network near 70% after 4 epochs.
    # Four kernel epochs, not two: random sub-networks (whose kernels mix 3, 5 and 7) measured 91.5% vs
    # 89.6% validation accuracy, for 26 s more. "default" below trains the width phase longer.
    "fast": Schedule(epochs_full=6, epochs_kernel=4, epochs_depth=2, epochs_width=3, sandwich=1,
                     lr_full=1e-2, lr_elastic=3e-3, recipe=Recipe(epochs=0, batch_size=32)),
    # The width phase is where random sub-networks catch up with the same architectures trained from
    # scratch for as many epochs (test, 20 random ones): 6 width epochs at lr 3e-3 left them 6.0
    # points behind, 12 at 6e-3 2.2, 20 at 6e-3 0.8 (BENCHMARKS.md), for about 4 minutes more.
    "default": Schedule(epochs_full=10, epochs_kernel=4, epochs_depth=4, epochs_width=20,
                        lr_full=1e-2, lr_elastic=6e-3, recipe=Recipe(epochs=0, batch_size=32)),
    # CIFAR-10 on two CPU cores, meant for a training subset of 10,000 images (`cifar10?train_subset=10000`)
    # and the cifar10 space profile: batch 128 as the cifar10-cpu recipe and one random sub-network per
    # step. Few epochs: 6 / 2 / 2 / 4 extrapolated to about two hours of one core for the ofa-mbv3
    # supernet alone (at total stride 8), more than a 90-minute benchmark can give it.
    "cifar10-cpu": Schedule(epochs_full=4, epochs_kernel=1, epochs_depth=1, epochs_width=2, sandwich=1,
                            lr_full=3e-3, lr_elastic=1.5e-3,
                            recipe=Recipe(epochs=0, batch_size=128, warmup_epochs=0.5)),
    # CIFAR-10 on one GPU, on the whole training split: OFA's phase proportions at a length where
    # sub-networks can approach networks trained alone; not yet run on a GPU.
    "cifar10-gpu": Schedule(epochs_full=60, epochs_kernel=20, epochs_depth=20, epochs_width=60, sandwich=2,
                            lr_full=4e-3, lr_elastic=2e-3,
                            recipe=Recipe(epochs=0, batch_size=256, warmup_epochs=3, weight_decay=0.05,
                                          device="auto", eval_batch_size=1024)),
    # For tests: a few steps only.
    "tiny": Schedule(epochs_full=1, epochs_kernel=1, epochs_depth=1, epochs_width=1, sandwich=1,
                     max_steps_per_epoch=2, recipe=Recipe(epochs=0, batch_size=32, warmup_epochs=0)),
}

# Presets that differ by space. A ViT is cheap per epoch here but needs a lower learning rate than a
# CNN (AdamW at 1e-2 left it near 50% on digits) and more epochs to reach a strong teacher.
SPACE_SCHEDULES: dict[str, dict[str, Schedule]] = {
    "vit": {
        "fast": Schedule(epochs_full=12, epochs_kernel=0, epochs_depth=3, epochs_width=5, sandwich=1,
                         lr_full=3e-3, lr_elastic=1e-3, recipe=Recipe(epochs=0, batch_size=32)),
        # Random sub-networks vs from scratch (test): 8 width epochs at lr 1e-3 left them 6.4 points
        # behind, 20 at 3e-3 2.1 (1.1 with another initialisation). Four random sub-networks per step
        # instead of two: 1.4 behind (the smallest 1.4 instead of 3.1), for about 60% more training
        # time; over three supernet seeds 1.1-1.4 behind instead of 1.5-2.1. Eight gave no more (1.4),
        # nor did dropping distillation (2.2), lr 6e-3 (2.6) or moving epochs between phases. Nor, at
        # seed 0 (1.4 here), did distilling from the step's own largest network as BigNAS (1.2; 1.3 at
        # seed 1, where this gives 1.1), NASViT's gradient projection (2.0), OFA's two width stages
        # (2.0), a random network instead of the smallest (1.6), lr 1.5e-3 (1.6), no augmentation
        # (1.5) or a learned output scale per branch width (1.5). The sub-networks underfit: 98.5% on
        # the training images, where two of them trained alone reach 99.8%. Batch 16 for the supernet
        # and the from-scratch networks alike: 0.7 / 1.2 / 1.3 behind over the same three seeds (1.4 /
        # 1.1 / 1.3 at 32), for 70% more time; not kept. What closed the gap was time for both sides:
        # twice the epochs (40 / 10 / 40, from-scratch networks 90 epochs too) left random sub-networks
        # 0.1 / 0.7 / 0.1 points behind over the three seeds (99.5% on the training images), for about
        # twice the training time (11 minutes instead of 5).
        "default": Schedule(epochs_full=40, epochs_kernel=0, epochs_depth=10, epochs_width=40, sandwich=4,
                            lr_full=3e-3, lr_elastic=3e-3, recipe=Recipe(epochs=0, batch_size=32)),
    },
}


def preset(name: str, space: str | None = None) -> Schedule:
    """The schedule preset ``name`` (fast, default, cifar10-cpu, cifar10-gpu, tiny), tuned for ``space`` where it has its own."""
    own = SPACE_SCHEDULES.get(space or "", {})
    if name in own:
        return own[name]
    try:
        return SCHEDULES[name]
    except KeyError:
        raise UnknownName(f"unknown supernet schedule {name!r}; known: {', '.join(SCHEDULES)}") from None


def schedule(name_or_fields: str | Mapping[str, Any] | Schedule, space: str | None = None) -> Schedule:
    """A `Schedule` from a preset name (fast, default, tiny; per ``space`` where tuned), a dict of fields, or a Schedule."""
    if isinstance(name_or_fields, Schedule):
        return name_or_fields
    if isinstance(name_or_fields, str):
        return preset(name_or_fields, space)
    fields = dict(name_or_fields)
    base = preset(fields.pop("preset"), space) if "preset" in fields else Schedule()
    if "recipe" in fields and isinstance(fields["recipe"], Mapping):
        fields["recipe"] = base.recipe.model_copy(update=dict(fields["recipe"]))
    return Schedule.model_validate({**base.model_dump(), **fields})


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
                        logits = supernet(inputs[res], choice)
                        loss = F.cross_entropy(logits, yb, label_smoothing=recipe.label_smoothing)
                        if res in soft:
                            loss = loss + plan.kd_ratio * _soft_ce(logits, soft[res], plan.kd_temperature)
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
