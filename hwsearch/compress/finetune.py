"""Fine-tuning a compressed model for a few epochs, then its final test accuracy.

Training reuses `hwsearch.train.train_and_evaluate` (same data pipeline, determinism and divergence
checks as every other evaluation), with a gentler default recipe: a compressed model starts from
trained weights, so it gets no warm-up and a tenth of the from-scratch learning rate. Masks stay fixed
(masked weights get zero gradient), weight scales follow the weights, activation ranges stay those of
calibration, and rounding passes gradients straight through.
"""

from __future__ import annotations

from torch import nn

from hwsearch.compress.modules import QUANTIZED
from hwsearch.data import Dataset
from hwsearch.errors import ConfigError
from hwsearch.train import Recipe, TrainResult, train_and_evaluate

FINE_TUNE_LR = 3e-4


def fine_tune_recipe(epochs: int = 3, **changes: object) -> Recipe:
    """The default fine-tuning recipe (``changes`` override any `Recipe` field)."""
    base = {"epochs": epochs, "lr": FINE_TUNE_LR, "warmup_epochs": 0.0, "label_smoothing": 0.0}
    base.update(changes)
    return Recipe(**base)


def fine_tune(model: nn.Module, data: Dataset, epochs: int = 3, recipe: Recipe | None = None, seed: int = 0,
              resolution: int | None = None) -> TrainResult:
    """Fine-tune compressed ``model`` in place on ``data`` and report val/test top-1 accuracy."""
    for m in model.modules():
        if isinstance(m, QUANTIZED) and not m.calibrated:
            raise ConfigError(f"layer {m.layer_name!r} has no activation range; calibrate before fine-tuning")
    recipe = recipe or fine_tune_recipe(epochs)
    return train_and_evaluate(model, data, epochs=epochs, seed=seed, recipe=recipe, resolution=resolution)


__all__ = ["FINE_TUNE_LR", "fine_tune", "fine_tune_recipe"]
