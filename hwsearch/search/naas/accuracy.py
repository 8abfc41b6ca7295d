"""Accuracy of (sub-network, bit-width) candidates for the co-search: predicted, then measured.

*Predicted* (inner search, thousands of candidates): the supernet's accuracy predictor gives the
float sub-network's accuracy; a `BitsPenalty` subtracts the effect of the group bit-widths. The
penalty is *measured* once per run, HAQ-style sensitivity analysis on one reference sub-network
extracted from the supernet: every group is quantized alone at the lowest bit option (the others at
the highest) with calibrated fake quantization, and its drop in validation accuracy is recorded;
intermediate widths get that drop scaled by the quantization-noise power, which falls by 4x per extra
bit (uniform quantizer, noise variance proportional to 2^-2b). A candidate's penalty is the offset of
the highest width plus the sum of its groups' drops (additive, as sensitivity analyses assume). One
measurement per group keeps the analysis to a dozen evaluations on two cores.

*Measured* (refinement): `quantized_subnet` extracts the sub-network with recalibrated BatchNorm,
applies the policy with calibrated activation ranges and measures it on the data; that is what the
final front reports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from hwsearch.compress import apply_policy
from hwsearch.data import Dataset
from hwsearch.errors import CorruptTable
from hwsearch.search.naas.problem import QuantizedSpace
from hwsearch.spaces.base import Choice
from hwsearch.spaces.supernet import extract_subnet
from hwsearch.train import evaluate


def subnet(supernet: Any, data: Dataset, net_choice: Mapping[str, Any]) -> nn.Module:
    """The float sub-network ``net_choice`` cut from ``supernet``, BatchNorm recalibrated, eval mode."""
    return extract_subnet(supernet, data, net_choice).eval()


def quantize(model: nn.Module, space: QuantizedSpace, choice: Mapping[str, Any], data: Dataset,
             calib_images: int = 256) -> nn.Module:
    """``model`` (the float network of ``choice``) under the choice's bit-width policy, calibrated."""
    net_choice, _ = space.split(choice)
    shape = space.net.input_shape(net_choice)
    calib = data.at_resolution(shape[1]).x_train[:calib_images]
    return apply_policy(model, space.policy(choice), shape, calib=calib).eval()


def accuracy_on(model: nn.Module, data: Dataset, resolution: int, split: str = "val") -> float:
    """Top-1 accuracy (fraction) of ``model`` on a split at ``resolution``."""
    x, y = data.at_resolution(resolution).split(split)
    with torch.no_grad():
        return float(evaluate(model, x, y))


@dataclass(frozen=True)
class BitsPenalty:
    """Measured accuracy loss of quantizing: ``offset`` (all groups at the highest option) plus,
    per group, ``drops[g][j]`` for bit option ``bits[j]`` (0 at the highest option)."""

    groups: tuple[str, ...]
    bits: tuple[int, ...]
    offset: float
    drops: tuple[tuple[float, ...], ...]
    reference_acc: float

    def matrix(self) -> np.ndarray:
        """Drops as a (groups x bit options) array."""
        return np.array(self.drops, dtype=float).reshape(len(self.groups), len(self.bits))

    def penalty(self, bit_idx: np.ndarray) -> np.ndarray:
        """Total loss (fraction) of each row of per-group bit-option indices."""
        m = self.matrix()
        idx = np.asarray(bit_idx, dtype=np.int64).reshape(-1, len(self.groups))
        return self.offset + m[np.arange(len(self.groups))[None, :], idx].sum(axis=1)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {"groups": list(self.groups), "bits": list(self.bits), "offset": self.offset,
                "drops": [list(r) for r in self.drops], "reference_acc": self.reference_acc}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BitsPenalty:
        """Inverse of `to_dict`."""
        try:
            return cls(tuple(d["groups"]), tuple(int(b) for b in d["bits"]), float(d["offset"]),
                       tuple(tuple(float(x) for x in r) for r in d["drops"]), float(d["reference_acc"]))
        except (KeyError, TypeError, ValueError) as e:
            raise CorruptTable(f"bit-width penalty table is malformed ({e})") from None


def measure_bits_penalty(supernet: Any, data: Dataset, space: QuantizedSpace, net_choice: Mapping[str, Any],
                         split: str = "val") -> BitsPenalty:
    """Sensitivity of each group to each bit option on the sub-network ``net_choice`` (see module doc)."""
    res = int(supernet.resolution(net_choice))
    float_model = subnet(supernet, data, net_choice)
    ref_acc = accuracy_on(float_model, data, res, split)
    top = max(b for b in space.bits if b != 32) if any(b != 32 for b in space.bits) else 32
    base_bits = {g: top for g in space.groups}

    def acc_at(bits: Mapping[str, int]) -> float:
        choice = space.join(net_choice, bits)
        return accuracy_on(quantize(float_model, space, choice, data), data, res, split)

    base = acc_at(base_bits) if top != 32 else ref_acc
    low = min(space.bits)
    drops = []
    for g in space.groups:
        d_low = max(0.0, base - acc_at({**base_bits, g: low})) if low < top else 0.0
        # the highest option (or float) costs nothing beyond the offset
        drops.append(tuple(d_low * 4.0 ** (low - b) if b < top else 0.0 for b in space.bits))
    return BitsPenalty(space.groups, space.bits, max(0.0, ref_acc - base), tuple(drops), ref_acc)


class CoSearchAccuracy:
    """The inner search's `AccuracyModel`: predicted float accuracy minus the measured bits penalty."""

    def __init__(self, net_predict: Callable[[Sequence[Choice]], np.ndarray], penalty: BitsPenalty) -> None:
        self.net_predict = net_predict
        self.penalty = penalty

    def predict(self, space: QuantizedSpace, choices: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predicted top-1 accuracy (fraction) of joint choices."""
        pos = {b: j for j, b in enumerate(self.penalty.bits)}
        nets, idx = [], np.empty((len(choices), len(self.penalty.groups)), dtype=np.int64)
        for k, c in enumerate(choices):
            net, bits = space.split(c)
            nets.append(net)
            idx[k] = [pos[bits[g]] for g in self.penalty.groups]
        acc = np.asarray(self.net_predict(nets), dtype=float).reshape(-1)
        return np.clip(acc - self.penalty.penalty(idx), 0.0, 1.0)


__all__ = ["BitsPenalty", "CoSearchAccuracy", "accuracy_on", "measure_bits_penalty", "quantize", "subnet"]
