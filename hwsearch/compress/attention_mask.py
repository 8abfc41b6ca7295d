"""Static sparse attention: one fixed mask per attention map, chosen from the map averaged over data.

As ViTCoD (You et al., HPCA 2023) and Heo, Rho and Chung build it: the attention probabilities of each
block are averaged over a calibration set; in each query row the largest entries are kept until their
sum reaches a threshold; the rest of the map is never computed. `threshold_mask` is that rule.
A compression policy asks for a density instead (share of the map kept, one number per block), so
`density_mask` applies the same rule at the one threshold, shared by every row and head of the
block, that keeps exactly `kept_entries` entries (ties broken by position). The count depends only
on the density and the map's shape, which lets the search price a density without any data.

Masks are per head: heads of one block specialise (local, global, positional), and one mask per
block would force one pattern on all of them; the threshold is shared across the block's heads, so a
focused head gives up more entries than a diffuse one, as the block's single density knob allows.

`MaskedSoftmax` replaces an attention module's softmax: masked scores become -inf before the softmax.
Its mask is a buffer over the original token positions (NaN until measured), so a state dict
reloads it exactly. With token pruning (`hwsearch.compress.tokens`), the surviving tokens' original
positions arrive through a `TokenPositions` tracker and the mask's rows and columns of dropped tokens
go with them; a query whose kept keys were all dropped attends to itself, so no row is ever empty.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from hwsearch.compress.modules import activation_quant_bypassed, quant_bypassed
from hwsearch.errors import ConfigError
from hwsearch.estimators.counters import row_spread


class TokenPositions:
    """Original positions of the tokens still present in the current forward pass (None: all of them)."""

    def __init__(self) -> None:
        self.index: torch.Tensor | None = None  # (n, t) positions in the original token order

    def keep(self, idx: torch.Tensor) -> None:
        """Record that only ``idx`` (n, t') of the current tokens go on."""
        self.index = idx if self.index is None else torch.gather(self.index, 1, idx)

    def reset(self, *_: object) -> None:
        """Forget the positions (a forward pre-hook on the model: each pass starts with every token)."""
        self.index = None


def kept_entries(density: float, rows: int, cols: int) -> int:
    """Entries a mask of ``rows`` x ``cols`` keeps at ``density``: at least one per row."""
    if not 0.0 < float(density) <= 1.0:
        raise ConfigError(f"attention density={density!r} must lie in (0, 1]")
    return min(rows * cols, max(rows, int(math.floor(density * rows * cols + 0.5))))


def _row_events(attn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per row, entries by decreasing score, and the share of the row held by the entries before each.

    An entry is kept under the threshold rule exactly when that share is below the threshold, so the
    first entry (share -inf) is always kept and every row's kept entries are a prefix of its order.
    """
    vals, order = torch.sort(attn.detach().double(), dim=-1, descending=True, stable=True)
    before = torch.cumsum(vals, dim=-1) - vals
    before[..., 0] = -math.inf
    return before, order


def _scatter(kept_sorted: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    return torch.zeros_like(kept_sorted).scatter(-1, order, kept_sorted)


def threshold_mask(attn: torch.Tensor, threshold: float) -> torch.Tensor:
    """The paper's rule on an averaged map (..., T, T): per row, the largest entries until their sum
    reaches ``threshold`` of the row's sum; a bool mask of the same shape."""
    if not 0.0 < float(threshold) <= 1.0:
        raise ConfigError(f"threshold={threshold!r} must lie in (0, 1] (a share of each row's attention)")
    before, order = _row_events(attn)
    total = attn.detach().double().sum(dim=-1, keepdim=True)
    return _scatter(before < threshold * total, order)


def density_mask(attn: torch.Tensor, density: float) -> torch.Tensor:
    """The threshold rule on every row of ``attn`` (heads, T, T) at the one threshold that keeps exactly
    `kept_entries` of the map; a bool mask of the same shape."""
    if attn.dim() < 2:
        raise ConfigError(f"an attention map needs (…, T, T) dimensions, got shape {tuple(attn.shape)}")
    rows, cols = attn.numel() // attn.shape[-1], attn.shape[-1]
    k = kept_entries(density, rows, cols)
    total = attn.detach().sum(dim=-1, keepdim=True)
    before, order = _row_events(attn / total.clamp_min(1e-30))
    # A row never measured (a query token pruned in every sample) gives up its entries first.
    before[..., 1:] = torch.where(total > 0, before[..., 1:], torch.inf)
    flat = before.reshape(-1)
    chosen = torch.sort(flat, stable=True).indices[:k]  # ties by position keep each row a prefix
    kept = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    kept[chosen] = True
    return _scatter(kept.reshape(before.shape), order)


class MaskedSoftmax(nn.Softmax):
    """Softmax over the last dim with a static per-head mask of ``heads`` x ``tokens`` x ``tokens``.

    ``density`` is the share of the map the policy keeps; the buffer ``mask`` holds 1 (kept) / 0 and
    is NaN until `calibrate_attention` measures it or a state dict brings it.
    """

    def __init__(self, heads: int, tokens: int, density: float, name: str = "") -> None:
        super().__init__(dim=-1)
        self.heads, self.tokens, self.density, self.layer_name = heads, tokens, float(density), name
        kept_entries(self.density, heads * tokens, tokens)  # validates the density
        self.register_buffer("mask", torch.full((heads, tokens, tokens), float("nan")))
        self.positions: TokenPositions | None = None  # set by token pruning

    @property
    def measured(self) -> bool:
        """Whether the mask has been computed (from data or a state dict)."""
        return not bool(torch.isnan(self.mask).any())

    def _keep(self, n: int, t: int) -> torch.Tensor:
        keep = self.mask > 0.5
        idx = self.positions.index if self.positions is not None else None
        if idx is None:
            if t != self.tokens:
                raise ConfigError(f"attention {self.layer_name!r} has a mask over {self.tokens} tokens but got {t}")
            return keep.unsqueeze(0)
        rows = keep[:, idx].permute(1, 0, 2, 3)  # (n, heads, t, tokens): rows of the surviving queries
        keep = torch.gather(rows, 3, idx[:, None, None, :].expand(n, self.heads, t, t))
        lonely = ~keep.any(dim=-1, keepdim=True)
        ar = torch.arange(t, device=keep.device)
        return keep | (lonely & (ar[:, None] == ar[None, :]))  # not torch.eye: ONNX Runtime lacks a bool EyeLike

    def forward(self, scores: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if not self.measured:
            if quant_bypassed():
                return super().forward(scores)
            raise ConfigError(f"attention {self.layer_name!r} has no measured mask; pass calib= to apply_policy, "
                              "call calibrate_attention(model, batch), or load a state dict")
        keep = self._keep(scores.shape[0], scores.shape[-1])
        return super().forward(scores.masked_fill(~keep, float("-inf")))

    def kept_share(self) -> float:
        """Share of the map the mask keeps (the planned share until it is measured)."""
        if self.measured:
            return float(self.mask.sum()) / self.mask.numel()
        return kept_entries(self.density, self.heads * self.tokens, self.tokens) / self.mask.numel()

    def row_spread(self) -> float:
        """Spread of the kept share over the map's query rows, every head's (`LayerSpec.density_std`);
        0 until the mask is measured, as the planned mask is priced even."""
        if not self.measured:
            return 0.0
        return row_spread((self.mask > 0.5).double().mean(dim=-1), self.kept_share())


def masked_softmaxes(model: nn.Module) -> dict[str, MaskedSoftmax]:
    """Every `MaskedSoftmax` of ``model``, by qualname."""
    return {n: m for n, m in model.named_modules() if isinstance(m, MaskedSoftmax)}


def install_attention_masks(model: nn.Module, densities: Mapping[str, float],
                            tokens: Mapping[str, int]) -> dict[str, MaskedSoftmax]:
    """Replace the softmax of each named attention module (name -> density) by an unmeasured
    `MaskedSoftmax` over its ``tokens[name]`` positions (in place)."""
    out = {}
    for name, density in densities.items():
        attn = model.get_submodule(name)
        children = [(c, m) for c, m in attn.named_children() if isinstance(m, nn.Softmax)]
        if len(children) != 1 or not isinstance(getattr(attn, "heads", None), int):
            raise ConfigError(f"attention density needs one softmax and a head count in {name!r}")
        child, _ = children[0]
        if name not in tokens:
            raise ConfigError(f"cannot tell how many tokens attention {name!r} sees")
        masked = MaskedSoftmax(attn.heads, tokens[name], density, f"{name}.{child}")
        setattr(attn, child, masked)
        out[f"{name}.{child}"] = masked
    return out


@torch.no_grad()
def attention_maps(model: nn.Module, batch: torch.Tensor) -> dict[str, torch.Tensor]:
    """Dense attention probabilities of every masked softmax, averaged over ``batch`` (heads, T, T).

    Masks are off while measuring; where token pruning dropped a token, its entries are averaged over
    the samples that still had both tokens (never-seen pairs read 0)."""
    soft = masked_softmaxes(model)
    sums = {n: torch.zeros(s.mask.shape, dtype=torch.float64, device=s.mask.device) for n, s in soft.items()}
    counts = {n: torch.zeros(s.mask.shape[1:], dtype=torch.float64, device=s.mask.device) for n, s in soft.items()}

    def record(name: str, module: MaskedSoftmax, inputs: tuple) -> None:
        p = torch.softmax(inputs[0].double(), dim=-1)
        idx = module.positions.index if module.positions is not None else None
        if idx is None:
            sums[name] += p.sum(dim=0)
            counts[name] += p.shape[0]
            return
        for b in range(p.shape[0]):
            rows, cols = idx[b][:, None], idx[b][None, :]
            sums[name][:, rows, cols] += p[b]
            counts[name][rows, cols] += 1

    saved = {n: s.mask.clone() for n, s in soft.items()}
    handles = [s.register_forward_pre_hook(lambda m, i, n=n: record(n, m, i)) for n, s in soft.items()]
    was_training = model.training
    try:
        for s in soft.values():
            s.mask.fill_(float("nan"))  # unmeasured + bypassed: the dense softmax runs
        with activation_quant_bypassed():
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
            model.eval()(batch.to(device))
    finally:
        for h in handles:
            h.remove()
        for n, s in soft.items():
            s.mask.copy_(saved[n])
        model.train(was_training)
    return {n: (sums[n] / counts[n].clamp_min(1)).float() for n in soft}


@torch.no_grad()
def calibrate_attention(model: nn.Module, batch: torch.Tensor) -> nn.Module:
    """Measure every masked softmax's averaged map on ``batch`` and set its mask to ``density`` (in place)."""
    soft = masked_softmaxes(model)
    for name, avg in attention_maps(model, batch).items():
        soft[name].mask.copy_(density_mask(avg, soft[name].density).to(soft[name].mask.dtype))
    return model


__all__ = ["MaskedSoftmax", "TokenPositions", "attention_maps", "calibrate_attention", "density_mask",
           "install_attention_masks", "kept_entries", "masked_softmaxes", "threshold_mask"]
