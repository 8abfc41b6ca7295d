"""Small torch modules for the compute steps that torch writes as operators, not modules.

Spaces build every compute step of a network as a module (attention products, residual adds, the
position-embedding add), so that `hwsearch.estimators.counters.trace_netspec` sees it through a
forward hook and the traced NetSpec equals the space's analytic `to_netspec` layer by layer.
"""

from __future__ import annotations

import torch
from torch import nn


class MatMul(nn.Module):
    """``a @ b`` on batched activations (attention QK^T and AV): a ``matmul`` layer."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a @ b


class Add(nn.Module):
    """Element-wise sum of two activations (a residual connection): an ``eltwise`` ``add`` layer."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class Mul(nn.Module):
    """Element-wise (broadcast) product, e.g. squeeze-and-excitation scaling: an ``eltwise`` ``mul``."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a * b


class AddParam(nn.Module):
    """Adds a learned tensor of one sample's shape (a position embedding): ``eltwise`` with bias."""

    def __init__(self, *shape: int, std: float = 0.02) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, *shape) * std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.weight
