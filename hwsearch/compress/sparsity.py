"""Weight masks: fine-grained magnitude pruning and N:M semi-structured sparsity (2:4, 1:4, ...).

N:M groups run along the reduction dimension of one output at one kernel position: the input
channels of a conv (weights viewed as K x R x S x C/groups) and the input features of a linear layer,
which is the layout sparse tensor cores and N:M accelerators read. A layer whose input channels per
group are not a multiple of M (a depthwise conv has one) cannot carry an N:M pattern.
"""

from __future__ import annotations

import torch

from hwsearch.errors import ConfigError


def fine_mask(w: torch.Tensor, density: float) -> torch.Tensor:
    """Keep the ``density`` share of weights largest in magnitude (at least one), layer-wide."""
    flat = w.detach().abs().reshape(-1)
    keep = max(1, int(round(density * flat.numel())))
    order = torch.argsort(flat, descending=True, stable=True)
    mask = torch.zeros_like(flat)
    mask[order[:keep]] = 1.0
    return mask.reshape(w.shape)


def nm_reduction_size(w: torch.Tensor) -> int:
    """Length of the dimension N:M groups run along: input channels per group (conv) or features."""
    return int(w.shape[1])


def nm_supported(w: torch.Tensor, m: int) -> bool:
    """Whether the weight's reduction dimension splits into whole groups of ``m``."""
    return nm_reduction_size(w) % m == 0


def nm_mask(w: torch.Tensor, n: int, m: int, where: str = "layer") -> torch.Tensor:
    """Keep the ``n`` largest-magnitude weights of every ``m`` consecutive input channels/features."""
    if not nm_supported(w, m):
        raise ConfigError(
            f"{where}: an {n}:{m} pattern needs input channels per group divisible by {m}, "
            f"got {nm_reduction_size(w)}; use pattern 'fine' or 'dense' for this layer"
        )
    a = w.detach().abs()
    if a.dim() == 4:
        a = a.permute(0, 2, 3, 1)  # K, R, S, C: groups along input channels
    shape = a.shape
    groups = a.reshape(-1, m)
    top = torch.topk(groups, n, dim=1, sorted=False).indices
    mask = torch.zeros_like(groups).scatter_(1, top, 1.0).reshape(shape)
    if w.dim() == 4:
        mask = mask.permute(0, 3, 1, 2)
    return mask.contiguous()


def nm_violations(mask: torch.Tensor, n: int, m: int) -> int:
    """Number of M-groups of ``mask`` that do not hold exactly ``n`` non-zeros (0 for a valid mask)."""
    a = mask.permute(0, 2, 3, 1) if mask.dim() == 4 else mask
    counts = (a.reshape(-1, m) != 0).sum(dim=1)
    return int((counts != n).sum())


__all__ = ["fine_mask", "nm_mask", "nm_reduction_size", "nm_supported", "nm_violations"]
