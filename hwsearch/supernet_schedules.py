"""Progressive-shrinking schedules: the epochs and learning rates of each phase, and the named presets.

Kept apart from the training loop (`hwsearch.spaces.supernet.training`, which imports torch) so that an
experiment config naming a schedule (``evaluation.schedule``, NAAS's ``supernet_schedule``) is checked
when it loads without importing torch. The figures behind each preset are in BENCHMARKS.md, "Figures
behind design choices" and the Once-for-All sections.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from hwsearch.errors import UnknownName
from hwsearch.recipe import Recipe


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
    # The flagship experiment's: a few minutes on two CPU cores at digits' sizes (ofa-mbv3 COMPACT).
    # A larger teacher learning rate and smaller batches than CIFAR's because digits has ~1.2k training
    # images; four kernel epochs because random sub-networks (mixing 3, 5 and 7) gained from them.
    "fast": Schedule(epochs_full=6, epochs_kernel=4, epochs_depth=2, epochs_width=3, sandwich=1,
                     lr_full=1e-2, lr_elastic=3e-3, recipe=Recipe(epochs=0, batch_size=32)),
    # A long width phase at a higher learning rate: it is where random sub-networks catch up with the
    # same architectures trained from scratch for as many epochs.
    "default": Schedule(epochs_full=10, epochs_kernel=4, epochs_depth=4, epochs_width=20,
                        lr_full=1e-2, lr_elastic=6e-3, recipe=Recipe(epochs=0, batch_size=32)),
    # CIFAR-10 on two CPU cores with a training subset (`cifar10?train_subset=...`) and the cifar10
    # space profile: batch 128 as the cifar10-cpu recipe, one random sub-network per step, few epochs
    # so that the ofa-mbv3 supernet fits a benchmark of about 90 minutes.
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
# CNN and more epochs to reach a strong teacher; its sub-networks underfit, and what closed their gap to
# from-scratch training was time (more epochs and four random sub-networks per step), not any of the
# variants tried (BENCHMARKS.md lists them).
SPACE_SCHEDULES: dict[str, dict[str, Schedule]] = {
    "vit": {
        "fast": Schedule(epochs_full=12, epochs_kernel=0, epochs_depth=3, epochs_width=5, sandwich=1,
                         lr_full=3e-3, lr_elastic=1e-3, recipe=Recipe(epochs=0, batch_size=32)),
        "default": Schedule(epochs_full=40, epochs_kernel=0, epochs_depth=10, epochs_width=40, sandwich=4,
                            lr_full=3e-3, lr_elastic=3e-3, recipe=Recipe(epochs=0, batch_size=32)),
    },
    # A character-level gpt on tiny-shakespeare has tens of thousands of windows per epoch: "fast" caps
    # the steps per epoch so that a CPU run stays in minutes (configs/gpt-ofa.yaml); label smoothing is
    # off because perplexity, not top-1, is what a language model is judged by.
    "gpt": {
        "fast": Schedule(epochs_full=4, epochs_kernel=0, epochs_depth=2, epochs_width=3, sandwich=1,
                         lr_full=3e-3, lr_elastic=1e-3, max_steps_per_epoch=60,
                         recipe=Recipe(epochs=0, batch_size=32, warmup_epochs=0.5, label_smoothing=0.0)),
    },
}


def names() -> list[str]:
    """The preset names a config may give."""
    return list(SCHEDULES)


def preset(name: str, space: str | None = None) -> Schedule:
    """The schedule preset ``name`` (fast, default, cifar10-cpu, cifar10-gpu, tiny), tuned for ``space`` where it has its own."""
    own = SPACE_SCHEDULES.get(space or "", {})
    if name in own:
        return own[name]
    try:
        return SCHEDULES[name]
    except KeyError:
        raise UnknownName(f"unknown supernet schedule {name!r}; known: {', '.join(SCHEDULES)}") from None


def check_name(name: str) -> str:
    """``name`` if it names a preset; `UnknownName` otherwise (for config validators)."""
    preset(name)
    return name


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


__all__ = ["SCHEDULES", "SPACE_SCHEDULES", "Schedule", "check_name", "names", "preset", "schedule"]
