"""Sorting the supernet's channels by importance, so that leading slices keep the best ones.

Once-for-All's elastic width keeps the *first* k channels of a layer; before the width phase it
reorders each block's hidden channels by the L1 norm of the weights that read them (the projection
conv's input columns), most important first, and permutes every tensor that shares the channel axis
the same way, which leaves the largest network's function unchanged. Here: the hidden channels of
MBConv blocks and of their squeeze-and-excitation, and the heads and MLP hidden units of transformer
blocks. The embedding width of a ViT is not reordered (AutoFormer does not either); its leading
features are simply trained to carry the most.
"""

from __future__ import annotations

import torch
from torch import nn

from hwsearch.spaces.blocks import Attention, MBConv, Mlp


def _importance(weight: torch.Tensor, dim: int) -> torch.Tensor:
    """L1 norm of ``weight`` per index of ``dim`` (summed over every other dim)."""
    other = [d for d in range(weight.dim()) if d != dim]
    return weight.detach().abs().sum(dim=other)


def _permute(tensors: list[tuple[torch.Tensor, int]], order: torch.Tensor) -> None:
    for t, dim in tensors:
        t.data.copy_(t.data.index_select(dim, order.to(t.device)))


def _bn(bn: nn.BatchNorm2d) -> list[tuple[torch.Tensor, int]]:
    out = [(t, 0) for t in (bn.weight, bn.bias) if t is not None]
    out += [(t, 0) for t in (bn.running_mean, bn.running_var) if t is not None]
    return out


def _order(importance: torch.Tensor) -> torch.Tensor:
    # A stable sort keeps equal channels in place, so reordering twice changes nothing.
    return torch.sort(importance, descending=True, stable=True).indices


def reorder_mbconv(block: MBConv) -> None:
    """Sort an MBConv block's hidden channels (and its SE's) by importance, in place."""
    if block.se is not None:
        se = block.se
        order = _order(_importance(se.expand.weight, 1))
        _permute([(se.reduce.weight, 0), (se.reduce.bias, 0), (se.expand.weight, 1)], order)
    if block.expand is None:
        return  # without an expand conv the hidden channels are the block's input: not elastic
    order = _order(_importance(block.project.conv.weight, 1))
    shared = [(block.expand.conv.weight, 0), *_bn(block.expand.bn), (block.dw.conv.weight, 0), *_bn(block.dw.bn),
              (block.project.conv.weight, 1)]
    if block.se is not None:
        shared += [(block.se.reduce.weight, 1), (block.se.expand.weight, 0), (block.se.expand.bias, 0)]
    _permute(shared, order)


def reorder_attention(attn: Attention) -> None:
    """Sort attention heads by the L1 norm of their output-projection columns, in place."""
    h, d = attn.heads, attn.head_dim
    score = _importance(attn.proj.weight, 1).reshape(h, d).sum(dim=1)
    heads = _order(score)
    within = (heads[:, None] * d + torch.arange(d)[None, :]).reshape(-1)
    qkv = torch.cat([within + c * h * d for c in range(3)])
    _permute([(attn.qkv.weight, 0), (attn.qkv.bias, 0)], qkv)
    _permute([(attn.proj.weight, 1)], within)


def reorder_mlp(mlp: Mlp) -> None:
    """Sort an MLP's hidden units by the L1 norm of their fc2 columns, in place."""
    order = _order(_importance(mlp.fc2.weight, 1))
    _permute([(mlp.fc1.weight, 0), (mlp.fc1.bias, 0), (mlp.fc2.weight, 1)], order)


@torch.no_grad()
def reorder_channels(model: nn.Module) -> int:
    """Sort every elastic channel group of ``model`` by importance; returns how many groups were sorted."""
    count = 0
    for module in model.modules():
        if isinstance(module, MBConv):
            reorder_mbconv(module)
        elif isinstance(module, Attention):
            reorder_attention(module)
        elif isinstance(module, Mlp):
            reorder_mlp(module)
        else:
            continue
        count += 1
    return count


__all__ = ["reorder_attention", "reorder_channels", "reorder_mbconv", "reorder_mlp"]
