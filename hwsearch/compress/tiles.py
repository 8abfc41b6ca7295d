"""Tiled weight masks for linear layers: mixed-length vector pruning (TF-MVP) and block pruning.

A linear weight is a ``K x C`` matrix (output features by input features, torch's layout). A tiled
mask cuts it into equal ``rows x cols`` tiles and keeps the tiles of largest L2 norm, so every pruned
run of zeros is a whole tile: ``(1, L)`` tiles are vectors along a row (one output feature, L
consecutive inputs), ``(L, 1)`` vectors along a column, ``(B, B)`` blocks.

Vector pruning as TF-MVP (Yoo et al., POSTECH, DAC 2023) describes it: the fine-grained magnitude
mask of a matrix at the target density shows a dominant direction, read from the spread of the mask's
row sums against that of its column sums; vectors are laid along it, with a length chosen per matrix
("mixed-length"). Each spread is divided by the length of the line it sums over, which makes the two
equal for a random mask of any shape (a row sum of a random mask is binomial over C entries, a column
sum over K), so a non-square matrix is not pushed towards its longer side; for a square matrix this
is the paper's plain comparison. `choose_length` is this project's rule for the per-matrix length, not
the paper's: the longest candidate whose kept weight energy stays close to the fine-grained mask's.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from hwsearch.compress.sparsity import fine_mask
from hwsearch.errors import ConfigError

DIRECTIONS = ("row", "col")


def dominant_direction(mask: torch.Tensor) -> str:
    """``row`` when the kept weights of a 2-D ``mask`` gather in some rows more than in some columns, else ``col``."""
    if mask.dim() != 2:
        raise ConfigError(f"a direction needs a 2-D mask, got shape {tuple(mask.shape)}")
    m = (mask != 0).double()
    k, c = m.shape
    row_spread = m.sum(dim=1).var(correction=0) / c if k > 1 else torch.tensor(0.0)
    col_spread = m.sum(dim=0).var(correction=0) / k if c > 1 else torch.tensor(0.0)
    return "row" if float(row_spread) >= float(col_spread) else "col"


def vector_tile(length: int, direction: str) -> tuple[int, int]:
    """The tile of a vector of ``length`` weights along ``direction`` (``row``: (1, L); ``col``: (L, 1))."""
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction={direction!r} is unknown; use one of {', '.join(DIRECTIONS)}")
    return (1, length) if direction == "row" else (length, 1)


def tile_mask(w: torch.Tensor, density: float, tile: tuple[int, int], where: str = "layer") -> torch.Tensor:
    """Keep the ``density`` share of ``tile``-shaped tiles of the 2-D ``w`` largest in L2 norm (at least one)."""
    _check_linear(w, where)
    th, tw = tile
    k, c = w.shape
    if k % th or c % tw:
        raise ConfigError(f"{where}: a {th}x{tw} tile needs a weight of {k}x{c} divisible by it; "
                          f"choose another length or direction, or use pattern 'fine'")
    tiles = w.detach().reshape(k // th, th, c // tw, tw).permute(0, 2, 1, 3).reshape(-1, th * tw)
    norms = tiles.double().pow(2).sum(dim=1)
    keep = max(1, int(round(density * norms.numel())))
    order = torch.argsort(norms, descending=True, stable=True)
    kept = torch.zeros(norms.numel(), dtype=w.dtype, device=w.device)
    kept[order[:keep]] = 1.0
    grid = kept.reshape(k // th, c // tw)
    return grid.repeat_interleave(th, dim=0).repeat_interleave(tw, dim=1).contiguous()


def vector_mask(w: torch.Tensor, density: float, length: int, direction: str = "auto",
                where: str = "layer") -> tuple[torch.Tensor, str]:
    """Vector-pruning mask of ``w`` and the direction used (``auto``: the fine-grained mask's dominant one)."""
    _check_linear(w, where)
    if direction == "auto":
        direction = dominant_direction(fine_mask(w, density))
    return tile_mask(w, density, vector_tile(length, direction), where), direction


def choose_length(w: torch.Tensor, density: float, lengths: Sequence[int] = (16, 8, 4, 2),
                  tolerance: float = 0.05, direction: str = "auto") -> int:
    """The longest of ``lengths`` that fits ``w`` and keeps at least ``1 - tolerance`` of the weight energy
    the fine-grained mask keeps at ``density``; 1 (fine-grained) when none does."""
    w = w.detach()
    if direction == "auto":
        direction = dominant_direction(fine_mask(w, density))
    energy = float((w.double() * fine_mask(w, density)).pow(2).sum())
    for length in sorted(set(lengths), reverse=True):
        th, tw = vector_tile(length, direction)
        if w.shape[0] % th or w.shape[1] % tw:
            continue
        kept = float((w.double() * tile_mask(w, density, (th, tw))).pow(2).sum())
        if kept >= (1.0 - tolerance) * energy:
            return int(length)
    return 1


def _check_linear(w: torch.Tensor, where: str) -> None:
    if w.dim() != 2:
        raise ConfigError(f"{where}: vector and block pruning apply to linear layers (2-D weights), "
                          f"got a weight of shape {tuple(w.shape)}; use pattern 'fine' or 'nm'")


def is_tiled(mask: torch.Tensor, tile: tuple[int, int]) -> bool:
    """Whether every ``tile``-shaped tile of the 2-D ``mask`` is all kept or all pruned."""
    th, tw = tile
    k, c = mask.shape
    t = (mask != 0).reshape(k // th, th, c // tw, tw).permute(0, 2, 1, 3).reshape(-1, th * tw)
    return bool((t.all(dim=1) | ~t.any(dim=1)).all())


__all__ = ["DIRECTIONS", "choose_length", "dominant_direction", "is_tiled", "tile_mask", "vector_mask",
           "vector_tile"]
