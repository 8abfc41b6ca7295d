"""The torch modules of an FBNet (see `hwsearch.spaces.fbnet`), apart so that the space imports no torch.

A cost query only needs `FBNetSpace.to_netspec`; torch (seconds to import) loads when a network is
built. Module names here are the LayerSpec names `to_netspec` writes, so the two can be compared.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from hwsearch.spaces.conv import SameConv2d
from hwsearch.spaces.fbnet import Block
from hwsearch.spaces.ops import Add


class ConvBNAct(nn.Module):
    """Conv without bias, BatchNorm, and ReLU unless ``act`` is False."""

    def __init__(self, c: int, k: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True) -> None:
        super().__init__()
        self.conv = SameConv2d(c, k, kernel, stride=stride, padding=kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(k)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class ChannelShuffle(nn.Module):
    """Interleave the channels of ``groups`` groups (ShuffleNet), a reshape with no arithmetic."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class InvertedResidual(nn.Module):
    """FBNet's candidate block: grouped 1x1 expansion, shuffle, depthwise KxK, grouped 1x1 projection."""

    def __init__(self, block: Block) -> None:
        super().__init__()
        op, mid = block.op, block.mid
        self.pw = ConvBNAct(block.c_in, mid, 1, groups=op.groups)
        self.shuffle = ChannelShuffle(op.groups) if op.groups > 1 else nn.Identity()
        self.dw = ConvBNAct(mid, mid, op.kernel, stride=block.stride, groups=mid)
        self.pwl = ConvBNAct(mid, block.c_out, 1, groups=op.groups, act=False)
        self.add = Add() if block.residual else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pwl(self.dw(self.shuffle(self.pw(x))))
        return self.add(x, y) if self.add is not None else y


class Skip(nn.Module):
    """The identity, or a 1x1 conv + BN + ReLU where the block changes channels or stride."""

    def __init__(self, block: Block) -> None:
        super().__init__()
        self.proj = ConvBNAct(block.c_in, block.c_out, 1, stride=block.stride) if block.projects else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x) if self.proj is not None else x


class FBNet(nn.Module):
    """Stem, the searched blocks, 1x1 head conv, global average pool and a linear classifier."""

    def __init__(self, blocks: Sequence[Block], in_channels: int, stem_channels: int, head: int,
                 num_classes: int) -> None:
        super().__init__()
        self.stem = ConvBNAct(in_channels, stem_channels, 3, stride=2)
        self.blocks = nn.Sequential(*(Skip(b) if b.op.is_skip else InvertedResidual(b) for b in blocks))
        self.head = ConvBNAct(blocks[-1].c_out, head, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.head(self.blocks(self.stem(x))))
        return self.classifier(torch.flatten(x, 1))
