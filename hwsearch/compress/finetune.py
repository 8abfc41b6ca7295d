"""Fine-tuning a compressed model, then its final test accuracy: a few epochs, or final training.

Training reuses `hwsearch.train.train_and_evaluate` (same data pipeline, determinism and divergence
checks as every other evaluation), with a gentler default recipe: a compressed model starts from
trained weights, so it gets no warm-up and a tenth of the from-scratch learning rate. Masks stay fixed
(masked weights get zero gradient), weight scales follow the weights, activation ranges stay those of
calibration, and rounding passes gradients straight through, so training a quantized model is
quantization-aware training at its own bit-widths.

Final training (`final_recipe`), for the pairs a search hands over, trains until validation accuracy
stops improving (early stopping with patience, the best epoch's weights kept) and distils from a
teacher (the supernet's largest network, or the uncompressed network), as OFA and AMC fine-tune:
one epoch of fine-tuning left the refined triples of the default run well below the same networks
trained alone (BENCHMARKS.md).
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


def final_recipe(max_epochs: int, patience: int | None = 3, kd_ratio: float = 1.0, **changes: object) -> Recipe:
    """The fine-tuning recipe of final training: up to ``max_epochs``, early stopping, distillation."""
    return fine_tune_recipe(max_epochs, patience=patience, kd_ratio=kd_ratio, **changes)


def fine_tune(model: nn.Module, data: Dataset, epochs: int = 3, recipe: Recipe | None = None, seed: int = 0,
              resolution: int | None = None, teacher: nn.Module | None = None) -> TrainResult:
    """Fine-tune compressed ``model`` in place on ``data`` (distilling from ``teacher`` if given) and report val/test top-1."""
    for m in model.modules():
        if isinstance(m, QUANTIZED) and not m.calibrated:
            raise ConfigError(f"layer {m.layer_name!r} has no activation range; calibrate before fine-tuning")
    recipe = recipe or fine_tune_recipe(epochs)
    return train_and_evaluate(model, data, epochs=epochs, seed=seed, recipe=recipe, resolution=resolution,
                              teacher=teacher)


__all__ = ["FINE_TUNE_LR", "final_recipe", "fine_tune", "fine_tune_recipe"]
