"""Measuring sub-networks of a trained supernet: recalibrate BatchNorm, then accuracy or extraction.

The calibration images are the first ``calib_samples`` training images at the choice's resolution,
in a fixed order, so the same choice always gets the same statistics: the accuracy measured inside
the supernet and that of the extracted module are then the same number.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from hwsearch.data import Dataset
from hwsearch.spaces.base import Choice
from hwsearch.spaces.supernet.supernet import SuperNet
from hwsearch.train import per_position

CALIB_SAMPLES = 512


def calibration_images(supernet: SuperNet, data: Dataset, choice: Mapping[str, Any],
                       calib_samples: int = CALIB_SAMPLES) -> torch.Tensor:
    """The training images that recalibrate ``choice``'s BatchNorm, at its resolution."""
    return data.at_resolution(supernet.resolution(choice)).x_train[:calib_samples]


def calibrated(supernet: SuperNet, data: Dataset, choice: Mapping[str, Any],
               calib_samples: int = CALIB_SAMPLES) -> dict[str, torch.Tensor]:
    """``choice``'s recalibrated BatchNorm statistics (and other buffers)."""
    return supernet.calibrate(choice, calibration_images(supernet, data, choice, calib_samples))


def subnet_accuracy(supernet: SuperNet, data: Dataset, choice: Mapping[str, Any], split: str = "val",
                    calib_samples: int = CALIB_SAMPLES) -> float:
    """Top-1 accuracy (in [0, 1]) of sub-network ``choice`` run inside the supernet."""
    buffers = calibrated(supernet, data, choice, calib_samples)
    x, y = data.at_resolution(supernet.resolution(choice)).split(split)
    if len(y) == 0:
        return 0.0
    was = supernet.training
    supernet.eval()
    try:
        logits, y = per_position(supernet.logits(choice, x, buffers), y)
    finally:
        supernet.train(was)
    return int((logits.argmax(dim=1) == y).sum()) / y.numel()  # the same arithmetic as hwsearch.train.evaluate


def extract_subnet(supernet: SuperNet, data: Dataset, choice: Mapping[str, Any],
                   calib_samples: int = CALIB_SAMPLES) -> nn.Module:
    """Sub-network ``choice`` as a standalone ``space.build(choice)`` with inherited, recalibrated weights."""
    return supernet.extract(choice, calibrated(supernet, data, choice, calib_samples))


def accuracies(supernet: SuperNet, data: Dataset, choices: Sequence[Mapping[str, Any]], split: str = "val",
               calib_samples: int = CALIB_SAMPLES, progress: bool = False) -> np.ndarray:
    """Accuracy of every choice (inside the supernet), as an array."""
    it: Any = choices
    if progress:
        from tqdm.auto import tqdm

        it = tqdm(choices, desc="measure", unit="net", leave=False)
    return np.array([subnet_accuracy(supernet, data, c, split, calib_samples) for c in it], dtype=np.float64)


def sample_choices(supernet: SuperNet, n: int, seed: int = 0) -> list[Choice]:
    """``n`` distinct random choices of the supernet's space."""
    rng = np.random.default_rng(seed)
    seen: dict[tuple, Choice] = {}
    tries = 0
    while len(seen) < n and tries < 100 * n:
        c = supernet.space.sample(rng)
        seen.setdefault(tuple(c.values()), c)
        tries += 1
    return list(seen.values())


__all__ = ["CALIB_SAMPLES", "accuracies", "calibrated", "calibration_images", "extract_subnet", "sample_choices",
           "subnet_accuracy"]
