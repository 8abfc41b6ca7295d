"""The training recipe: every setting of `hwsearch.train.train_and_evaluate`, as a pydantic model.

Kept apart from the training loop so that the experiment config (which embeds it as
``evaluation.recipe``) is validated without importing torch; `hwsearch.train.Recipe` is this class.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from hwsearch.errors import UnknownName


class Recipe(BaseModel):
    """Training settings; the defaults train the small CNNs and ViTs of the spaces on digits at 32x32
    (see BENCHMARKS.md, sections "Sampled networks of the ... space, trained from scratch")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: int = Field(15, ge=0, description="passes over the training split")
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(3e-3, gt=0, description="peak learning rate (after warm-up)")
    weight_decay: float = Field(0.01, ge=0)
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    schedule: Literal["cosine", "constant"] = "cosine"
    warmup_epochs: float = Field(1.0, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    augment_shift: float = Field(0.1, ge=0, le=0.5,
                                 description="random translation, as a share of the image size (0: off); "
                                             "a data set with its own augmentation (cifar10) uses that instead")
    grad_clip: float = Field(5.0, ge=0, description="max gradient norm (0: off)")
    threads: int | None = Field(None, ge=1, description="torch CPU threads (None: keep the current count)")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    eval_batch_size: int = Field(512, ge=1)
    patience: int | None = Field(None, ge=1, description="stop once validation accuracy has not improved for this "
                                                          "many epochs and keep the best epoch's weights (None: "
                                                          "train every epoch, keep the last)")
    kd_ratio: float = Field(0.0, ge=0, description="weight of distillation from a teacher network, when one is "
                                                   "given (0: labels only)")
    kd_temperature: float = Field(1.0, gt=0, description="softmax temperature of the distillation loss")


# Named recipes; a config spells the same fields under ``evaluation.recipe``.
RECIPES: dict[str, Recipe] = {
    "default": Recipe(),
    # CIFAR-10 on a few CPU cores: batch 128 halves the optimizer steps of digits' 64, and the warm-up
    # is short because a run here is a handful of epochs on a training subset.
    "cifar10-cpu": Recipe(epochs=5, batch_size=128, lr=3e-3, warmup_epochs=0.5),
    # CIFAR-10 on one GPU: the whole training split for long enough to approach converged accuracy;
    # larger batches keep the device busy with these small networks. Not yet run on a GPU.
    "cifar10-gpu": Recipe(epochs=100, batch_size=256, lr=4e-3, weight_decay=0.05, warmup_epochs=3,
                          device="auto", eval_batch_size=1024),
}


def named_recipe(name: str) -> Recipe:
    """The named recipe (default, cifar10-cpu, cifar10-gpu)."""
    try:
        return RECIPES[name]
    except KeyError:
        raise UnknownName(f"unknown training recipe {name!r}; known: {', '.join(RECIPES)}") from None


__all__ = ["RECIPES", "Recipe", "named_recipe"]
