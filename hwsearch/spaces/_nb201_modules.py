"""The torch modules of a NAS-Bench-201 network (see `hwsearch.spaces.nb201`), apart so that the
space imports no torch.

Module names are the LayerSpec names `NB201Space.to_netspec` writes, so the two can be compared.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from hwsearch.spaces import nb201_arch as arch
from hwsearch.spaces.nb201 import CONV_KERNELS, CellPlan
from hwsearch.spaces.ops import Add


class ReLUConvBN(nn.Module):
    """ReLU, a 'same'-padded conv without bias, BatchNorm."""

    def __init__(self, c: int, k: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        # Not in place: a cell feeds one node to several edges, which must all see it unchanged.
        self.relu = nn.ReLU(inplace=False)
        self.conv = nn.Conv2d(c, k, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(self.relu(x)))


def edge_op(op: str, channels: int) -> nn.Module:
    """The module of a non-``none`` edge."""
    if op in CONV_KERNELS:
        return ReLUConvBN(channels, channels, CONV_KERNELS[op])
    if op == "avg_pool_3x3":
        return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)
    return nn.Identity()


class Cell(nn.Module):
    """A searched cell: node j sums its edges' outputs; a node with only ``none`` inputs is zero."""

    def __init__(self, choice: Mapping[str, Any], channels: int) -> None:
        super().__init__()
        self.inputs: list[list[tuple[int, str]]] = []
        for j in range(1, arch.NODES):
            live = [(i, arch.gene(i, j)) for i in range(j) if choice[arch.gene(i, j)] != "none"]
            for _, g in live:
                self.add_module(g, edge_op(choice[g], channels))
            for t in range(len(live) - 1):
                self.add_module(f"add{j}_{t}", Add())
            self.inputs.append(live)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for j, live in enumerate(self.inputs, start=1):
            outs = [getattr(self, g)(nodes[i]) for i, g in live]
            if not outs:
                nodes.append(torch.zeros_like(x))
                continue
            y = outs[0]
            for t, other in enumerate(outs[1:]):
                y = getattr(self, f"add{j}_{t}")(y, other)
            nodes.append(y)
        return nodes[-1]


class Reduction(nn.Module):
    """The ResNet basic block of stride 2 joining two stages."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, stride=2)
        self.conv_b = ReLUConvBN(c_out, c_out, 3)
        self.shortcut = nn.Sequential()
        self.shortcut.add_module("pool", nn.AvgPool2d(2, stride=2))
        self.shortcut.add_module("conv", nn.Conv2d(c_in, c_out, 1, bias=False))
        self.add = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_b(self.conv_a(x))
        return self.add(y, self.shortcut(x))


class NB201Network(nn.Module):
    """Stem, cells and reductions, BN-ReLU, global average pool, linear classifier."""

    def __init__(self, choice: Mapping[str, Any], cells: Sequence[CellPlan], in_channels: int, channels: int,
                 num_classes: int) -> None:
        super().__init__()
        self.stem = nn.Sequential()
        self.stem.add_module("conv", nn.Conv2d(in_channels, channels, 3, padding=1, bias=False))
        self.stem.add_module("bn", nn.BatchNorm2d(channels))
        self.cells = nn.Sequential(*(Reduction(c.c_in, c.c_out) if c.reduction else Cell(choice, c.c_out)
                                     for c in cells))
        last = cells[-1].c_out
        self.lastact = nn.Sequential()
        self.lastact.add_module("bn", nn.BatchNorm2d(last))
        self.lastact.add_module("relu", nn.ReLU(inplace=True))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(last, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.lastact(self.cells(self.stem(x))))
        return self.classifier(torch.flatten(x, 1))
