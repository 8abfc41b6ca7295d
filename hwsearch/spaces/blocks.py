"""The torch modules of the spaces' building blocks, each built from its plan in `blockspecs`.

Every compute step is a module (activations, residual adds, SE scaling, attention products), so the
forward-hook tracer sees exactly the layers `blockspecs` lists for the same plan. The Once-for-All
supernet constructs these same classes for the sub-networks it extracts, which keeps
`space.to_netspec(choice)` true for them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from hwsearch.spaces.blockspecs import ConvBNActPlan, MBConvPlan, ViTBlockPlan, se_channels
from hwsearch.spaces.conv import SameConv2d
from hwsearch.spaces.ops import Add, AddParam, MatMul, Mul

if TYPE_CHECKING:
    from hwsearch.spaces.ofa_mbv3 import MBV3Plan
    from hwsearch.spaces.vit import ViTPlan

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "hswish": nn.Hardswish,
    "gelu": nn.GELU,
    "hsigmoid": nn.Hardsigmoid,
}


def activation(name: str | None) -> nn.Module:
    """The module of activation ``name`` (``None``: identity, which the tracer skips)."""
    return nn.Identity() if name is None else _ACTIVATIONS[name]()


class ConvBNAct(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> activation, as `ConvBNActPlan` describes."""

    def __init__(self, plan: ConvBNActPlan) -> None:
        super().__init__()
        self.plan = plan
        groups = plan.in_channels if plan.depthwise else 1
        self.conv = SameConv2d(plan.in_channels, plan.out_channels, plan.kernel, plan.stride,
                               plan.kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(plan.out_channels)
        self.act = activation(plan.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class SqueezeExcite(nn.Module):
    """MobileNetV3 squeeze-and-excitation: avg-pool, 1x1 reduce, ReLU, 1x1 expand, hard sigmoid, scale."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        mid = se_channels(channels)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, mid, 1, bias=True)
        self.act = nn.ReLU()
        self.expand = nn.Conv2d(mid, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid()
        self.scale = Mul()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale(x, self.gate(self.expand(self.act(self.reduce(self.pool(x))))))


class MBConv(nn.Module):
    """Inverted residual block of `MBConvPlan` (absent parts are ``None``)."""

    def __init__(self, plan: MBConvPlan) -> None:
        super().__init__()
        self.plan = plan
        self.expand = ConvBNAct(plan.expand) if plan.has_expand else None
        self.dw = ConvBNAct(plan.dw)
        self.se = SqueezeExcite(plan.mid_channels) if plan.se else None
        self.project = ConvBNAct(plan.project)
        self.add = Add() if plan.has_residual else None
        if self.add is not None:
            # Zero-init residual (Goyal et al., 2017): each block starts as the identity, so a deep
            # stack trains from the first step, and a skipped block (elastic depth) changes little.
            nn.init.zeros_(self.project.bn.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.dw(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return self.add(x, y) if self.add is not None else y


class Attention(nn.Module):
    """Multi-head self-attention with ``heads`` heads of ``head_dim`` features each."""

    def __init__(self, embed: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.qkv = nn.Linear(embed, 3 * heads * head_dim, bias=True)
        self.scale = Mul()
        # A buffer, not a float, so that TorchScript types Mul's operands; not saved in state dicts.
        self.register_buffer("scale_factor", torch.tensor(head_dim ** -0.5), persistent=False)
        self.qk = MatMul()
        self.softmax = nn.Softmax(dim=-1)
        self.av = MatMul()
        self.proj = nn.Linear(heads * head_dim, embed, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q = self.scale(q, self.scale_factor)
        attn = self.softmax(self.qk(q, k.transpose(-2, -1)))
        y = self.av(attn, v).transpose(1, 2).reshape(n, t, self.heads * self.head_dim)
        return self.proj(y)


class Mlp(nn.Module):
    """Transformer MLP: linear, GELU, linear."""

    def __init__(self, embed: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed, hidden, bias=True)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, embed, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class ViTBlock(nn.Module):
    """Pre-norm transformer block of `ViTBlockPlan`."""

    def __init__(self, plan: ViTBlockPlan) -> None:
        super().__init__()
        self.plan = plan
        self.norm1 = nn.LayerNorm(plan.embed)
        self.attn = Attention(plan.embed, plan.heads, plan.head_dim)
        self.add1 = Add()
        self.norm2 = nn.LayerNorm(plan.embed)
        self.mlp = Mlp(plan.embed, plan.mlp_hidden)
        self.add2 = Add()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.add1(x, self.attn(self.norm1(x)))
        return self.add2(x, self.mlp(self.norm2(x)))


class MobileNetV3(nn.Module):
    """A network of the `ofa-mbv3` space: stem, first block, stages of MBConv blocks, head, classifier."""

    def __init__(self, plan: MBV3Plan) -> None:
        super().__init__()
        self.plan = plan
        self.stem = ConvBNAct(plan.stem)
        self.first = MBConv(plan.first)
        self.stages = nn.ModuleList(nn.Sequential(*(MBConv(b) for b in blocks)) for blocks in plan.stages)
        self.head = ConvBNAct(plan.head)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(plan.head.out_channels, plan.num_classes, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first(self.stem(x))
        for stage in self.stages:
            x = stage(x)
        return self.classifier(self.pool(self.head(x)).flatten(1))


class VisionTransformer(nn.Module):
    """A network of the `vit` space: patch embedding, position embedding, blocks, norm, mean-pool, head.

    Tokens are averaged by an ``AdaptiveAvgPool2d`` over the patch grid rather than read from a class
    token, so that every parameter sits in a module the tracer can describe.
    """

    def __init__(self, plan: ViTPlan) -> None:
        super().__init__()
        self.plan = plan
        c, _, _ = plan.input_shape
        self.grid = plan.grid
        self.patch = nn.Conv2d(c, plan.embed, plan.patch_size, plan.patch_size, 0, bias=True)
        self.pos = AddParam(plan.grid * plan.grid, plan.embed)
        self.blocks = nn.Sequential(*(ViTBlock(b) for b in plan.blocks))
        self.norm = nn.LayerNorm(plan.embed)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(plan.embed, plan.num_classes, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = self.norm(self.blocks(self.pos(x)))
        grid = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], self.grid, self.grid)
        return self.head(self.pool(grid).flatten(1))


__all__ = ["Attention", "ConvBNAct", "MBConv", "Mlp", "MobileNetV3", "SqueezeExcite", "ViTBlock",
           "VisionTransformer", "activation"]
