"""Linear fake quantization, exact at any width from 2 to 8 bits, and the choice of clipping ranges.

Weights are quantized per output channel and symmetrically (integers in [-2^(b-1), 2^(b-1)-1], zero
point 0, as int8 kernels want); activations per tensor and asymmetrically (integers in [0, 2^b-1] with
a zero point, so a ReLU/hswish output wastes no level). A fake-quantized tensor holds exactly the values
a b-bit kernel would see after dequantization. Rounding is round-half-to-even, as in torch's
``quantize_per_tensor`` and ONNX ``Round``. Written here rather than with torch.ao fake-quant modules
because those only cover 8-bit ranges in their ONNX export and observers, and HAQ needs 2..7 bits too.
The training path uses a straight-through estimator (gradient 1 inside the clipping range, 0 outside).
"""

from __future__ import annotations

import torch

MSE_GRID = 64  # clipping candidates, geometrically spaced from 1% to 100% of the min-max range
MSE_MIN_RATIO = 0.01
MSE_SAMPLES = 1 << 14  # activation values the range search scores (a fixed random subset of the batch)


class _RoundSTE(torch.autograd.Function):
    """Round in the forward pass, pass the gradient through unchanged."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return torch.round(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return grad


def _clip_ratios() -> list[float]:
    """Shares of the min-max range tried by the MSE search (geometric, 1.0 included)."""
    return torch.logspace(torch.log10(torch.tensor(MSE_MIN_RATIO)), 0.0, MSE_GRID).tolist()


def _round(x: torch.Tensor) -> torch.Tensor:
    return _RoundSTE.apply(x) if x.requires_grad else torch.round(x)


def weight_qrange(bits: int) -> tuple[int, int]:
    """Integer range of a signed symmetric ``bits``-bit weight."""
    return -(2 ** (bits - 1)), 2 ** (bits - 1) - 1


def act_qrange(bits: int) -> tuple[int, int]:
    """Integer range of an unsigned ``bits``-bit activation."""
    return 0, 2**bits - 1


def weight_scale(w: torch.Tensor, bits: int, clip: str = "minmax") -> torch.Tensor:
    """Per-output-channel scale of a weight tensor (dim 0 = output channels)."""
    flat = w.detach().reshape(w.shape[0], -1).float()
    amax = flat.abs().amax(dim=1)
    qmax = weight_qrange(bits)[1]
    if clip == "mse":
        lo, hi = weight_qrange(bits)
        best_err = torch.full_like(amax, float("inf"))
        best_amax = amax.clone()
        for r in _clip_ratios():
            s = (amax * r).clamp_min(1e-12)[:, None] / qmax
            err = ((torch.clamp(torch.round(flat / s), lo, hi) * s - flat) ** 2).sum(dim=1)
            better = err <= best_err
            best_err = torch.where(better, err, best_err)
            best_amax = torch.where(better, amax * r, best_amax)
        amax = best_amax
    return amax.clamp_min(1e-12) / qmax


def fake_quant_weight(w: torch.Tensor, scale: torch.Tensor, bits: int) -> torch.Tensor:
    """``w`` rounded to the signed ``bits``-bit grid of per-channel ``scale`` and dequantized."""
    lo, hi = weight_qrange(bits)
    s = scale.reshape(-1, *([1] * (w.dim() - 1)))
    return torch.clamp(_round(w / s), lo, hi) * s


def act_params(lo: torch.Tensor, hi: torch.Tensor, bits: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Scale and integer zero point of the asymmetric ``bits``-bit grid covering [lo, hi] (0 inside)."""
    lo = torch.clamp(lo, max=0.0)
    hi = torch.clamp(hi, min=0.0)
    qmin, qmax = act_qrange(bits)
    scale = torch.clamp((hi - lo) / (qmax - qmin), min=1e-8)
    zero = torch.clamp(torch.round(qmin - lo / scale), qmin, qmax)
    return scale, zero


def fake_quant_act(x: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int) -> torch.Tensor:
    """``x`` rounded to the unsigned ``bits``-bit grid (scale, zero point) and dequantized."""
    qmin, qmax = act_qrange(bits)
    return (torch.clamp(_round(x / scale) + zero, qmin, qmax) - zero) * scale


def act_range(samples: torch.Tensor, bits: int, clip: str = "mse") -> tuple[float, float]:
    """Clipping range [lo, hi] of an activation from calibration ``samples``: min-max or MSE-optimal.

    The MSE search shrinks the min-max range by a common factor (64 candidates, 1.0 included) and
    scores them on at most 16,384 samples (a fixed random subset), on which its error is never above
    min-max's.
    """
    x = samples.detach().reshape(-1).float()
    lo, hi = float(torch.clamp(x.min(), max=0.0)), float(torch.clamp(x.max(), min=0.0))
    if clip != "mse" or hi - lo <= 0:
        return lo, hi
    if x.numel() > MSE_SAMPLES:
        # A fixed random subset: a stride over an NCHW tensor can alias onto a few channels or positions.
        gen = torch.Generator(device="cpu").manual_seed(0)
        x = x[torch.randint(0, x.numel(), (MSE_SAMPLES,), generator=gen).to(x.device)]
    ratios = torch.tensor(_clip_ratios(), device=x.device)
    los, his = lo * ratios, hi * ratios
    scale, zero = act_params(los, his, bits)
    qmin, qmax = act_qrange(bits)
    q = (torch.clamp(torch.round(x[None] / scale[:, None]) + zero[:, None], qmin, qmax) - zero[:, None]) * scale[:, None]
    err = ((q - x[None]) ** 2).sum(dim=1)
    # the largest range among the minimal errors, so that ties keep min-max
    best = int(torch.nonzero(err <= err.min()).max())
    return float(los[best]), float(his[best])


def act_error(samples: torch.Tensor, lo: float, hi: float, bits: int) -> float:
    """Mean squared quantization error of ``samples`` on the grid covering [lo, hi]."""
    x = samples.detach().reshape(-1).float()
    s, z = act_params(torch.tensor(lo, device=x.device), torch.tensor(hi, device=x.device), bits)
    return float(((fake_quant_act(x, s, z, bits) - x) ** 2).mean())


__all__ = ["act_error", "act_params", "act_qrange", "act_range", "fake_quant_act", "fake_quant_weight",
           "weight_qrange", "weight_scale"]
