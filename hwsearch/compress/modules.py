"""Conv, linear and attention-product layers that carry weight masks and fake quantization; calibration.

`QConv2d` and `QLinear` subclass `nn.Conv2d` / `nn.Linear`, so the NetSpec tracer, torch-pruning and
optimizers see ordinary layers, and a compressed model keeps its module qualnames. Everything that
depends on data or weights (mask, weight scales, activation ranges) is a buffer, so a state dict holds
it and reloading reproduces the model exactly; which buffers exist depends only on the policy.

Per layer: ``weight_mask`` (pattern fine/nm/vector/block), ``tile`` (vector/block: rows x cols of the
pruned tiles, a buffer because ``auto`` picks the vector direction from the weights), ``w_scale`` (per
output channel, w_bits < 32; refreshed from the weights in every training step, frozen in eval),
``a_range`` ([lo, hi] of the input, a_bits < 32, set by `calibrate`) and ``o_range`` (output range,
kept for the real int8 kernels of `to_int8`).
`QMatMul` quantizes both operands of an attention product (``a_range``, ``b_range``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from hwsearch.compress.policy import FLOAT_BITS, LayerPolicy
from hwsearch.compress.quant import act_params, act_range, fake_quant_act, fake_quant_weight, weight_scale
from hwsearch.compress.sparsity import fine_mask, nm_mask
from hwsearch.compress.tiles import tile_mask, vector_mask, vector_tile
from hwsearch.errors import ConfigError
from hwsearch.estimators.counters import row_spread
from hwsearch.spaces.conv import same_conv2d
from hwsearch.spaces.ops import MatMul


class _Compressed:
    """Shared state and maths of `QConv2d` and `QLinear` (a mixin over the torch layer)."""

    weight: nn.Parameter
    pattern: str
    nm: tuple[int, int] | None
    w_bits: int
    a_bits: int
    w_clip: str
    a_clip: str
    layer_name: str

    def _setup(self, lp: LayerPolicy, w_clip: str, a_clip: str, name: str, row_keep: int | None = None) -> None:
        self.pattern, self.nm, self.density = lp.pattern, lp.nm, lp.density
        self.w_bits, self.a_bits = lp.w_bits, lp.a_bits
        self.w_clip, self.a_clip, self.layer_name = w_clip, a_clip, name
        self.row_keep = row_keep
        self._calibrate_with: str | None = None  # clipping method while `calibrate` runs
        self._out_seen: list[float] | None = None
        mask = None
        w = self.weight.detach()
        if row_keep is not None:
            # A width that could not be shrunk structurally: zero the weakest output channels instead.
            norms = w.reshape(w.shape[0], -1).norm(dim=1)
            rows = torch.zeros(w.shape[0], device=w.device, dtype=w.dtype)
            rows[torch.topk(norms, row_keep).indices] = 1.0
            mask = rows.reshape(-1, *([1] * (w.dim() - 1))).expand_as(w).clone()
            w = w * mask
        if self.pattern == "fine":
            mask = fine_mask(w, lp.density) * (mask if mask is not None else 1.0)
        elif self.pattern == "nm":
            mask = nm_mask(w, *lp.nm, where=f"layer {name!r}") * (mask if mask is not None else 1.0)
        elif self.pattern in ("vector", "block"):
            where = f"layer {name!r}"
            if self.pattern == "vector":
                tiled, direction = vector_mask(w, lp.density, lp.vector, lp.direction, where)
                tile = vector_tile(lp.vector, direction)
            else:
                tile = (lp.block, lp.block)
                tiled = tile_mask(w, lp.density, tile, where)
            mask = tiled * (mask if mask is not None else 1.0)
            self.register_buffer("tile", torch.tensor(tile, dtype=torch.int64))
        if mask is not None:
            self.register_buffer("weight_mask", mask)
        if self.w_bits < FLOAT_BITS:
            self.register_buffer("w_scale", weight_scale(self._masked_weight(), self.w_bits, self.w_clip))
        if self.a_bits < FLOAT_BITS:
            nan = float("nan")
            self.register_buffer("a_range", torch.tensor([nan, nan]))
            self.register_buffer("o_range", torch.tensor([nan, nan]))

    @property
    def masked(self) -> bool:
        """Whether some weights are held at zero by a mask."""
        return "weight_mask" in self._buffers

    def _masked_weight(self) -> torch.Tensor:
        if self.masked:
            return self.weight * self.weight_mask
        return self.weight

    def qweight(self) -> torch.Tensor:
        """The weight the layer computes with: masked, then fake-quantized."""
        w = self._masked_weight()
        if self.w_bits < FLOAT_BITS:
            if self.training:
                with torch.no_grad():
                    self.w_scale.copy_(weight_scale(w, self.w_bits, self.w_clip))
            w = fake_quant_weight(w, self.w_scale, self.w_bits)
        return w

    @property
    def calibrated(self) -> bool:
        """Whether activation ranges are known (always true for float activations)."""
        return self.a_bits >= FLOAT_BITS or not bool(torch.isnan(self.a_range).any())

    def act_qparams(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Scale and zero point of the input activation grid."""
        return act_params(self.a_range[0], self.a_range[1], self.a_bits)

    def qinput(self, x: torch.Tensor) -> torch.Tensor:
        """The input as the layer sees it: fake-quantized to ``a_bits`` when below 32."""
        if self.a_bits >= FLOAT_BITS:
            return x
        if self._calibrate_with is not None:
            lo, hi = act_range(x, self.a_bits, self._calibrate_with)
            self.a_range.copy_(torch.tensor([lo, hi]))
            self._calibrate_with = None
        elif _BYPASS[0]:
            return x
        if not torch.jit.is_tracing() and not self.calibrated:
            raise ConfigError(
                f"layer {self.layer_name!r} quantizes activations to {self.a_bits} bits but has no "
                "calibrated range; pass calib= to apply_policy, call calibrate(model, batch), or load a state dict"
            )
        scale, zero = self.act_qparams()
        return fake_quant_act(x, scale, zero, self.a_bits)

    def _seen_output(self, y: torch.Tensor) -> None:
        if self._out_seen is not None:
            lo, hi = float(y.detach().min()), float(y.detach().max())
            self._out_seen = [min(self._out_seen[0], lo), max(self._out_seen[1], hi)]

    def describe(self) -> dict[str, object]:
        """The compression this layer carries (the LayerSpec fields it sets)."""
        density, nm = 1.0, None
        if self.pattern == "nm":
            nm = tuple(self.nm)
            if self.row_keep is not None:
                density = self.row_keep / self.weight.shape[0]
        elif self.masked:
            density = float(self.weight_mask.sum()) / self.weight_mask.numel()
        tile = tuple(int(v) for v in self.tile) if "tile" in self._buffers else None
        out = {"w_bits": self.w_bits, "a_bits": self.a_bits, "density": density, "nm": nm, "tile": tile}
        if self.masked and isinstance(self, nn.Linear) and density < 1.0:
            out["density_std"] = self.row_spread(density)
        return out

    def row_spread(self, density: float) -> float:
        """Spread of the mask's kept share over the weight's output rows (`LayerSpec.density_std`)."""
        shares = self.weight_mask.reshape(self.weight_mask.shape[0], -1).double().mean(dim=1)
        if self.pattern == "nm":
            # ``density`` leaves the N:M share out (``nm`` carries it), so the rows' shares do too.
            shares = shares * (self.nm[1] / self.nm[0])
        return row_spread(shares, density)


class QConv2d(_Compressed, nn.Conv2d):
    """A `nn.Conv2d` with an optional weight mask and fake-quantized weights and input."""

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, lp: LayerPolicy, w_clip: str, a_clip: str, name: str,
                  row_keep: int | None = None) -> QConv2d:
        """A compressed copy of ``conv`` (same weights) under ``lp``; ``row_keep`` masks output channels."""
        q = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                conv.dilation, conv.groups, conv.bias is not None, conv.padding_mode,
                device=conv.weight.device, dtype=conv.weight.dtype)
        with torch.no_grad():
            q.weight.copy_(conv.weight)
            if conv.bias is not None:
                q.bias.copy_(conv.bias)
        q._setup(lp, w_clip, a_clip, name, row_keep)
        q.train(conv.training)
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        y = same_conv2d(self, self.qinput(x), self.qweight(), self.bias)
        self._seen_output(y)
        return y


class QLinear(_Compressed, nn.Linear):
    """A `nn.Linear` with an optional weight mask and fake-quantized weights and input."""

    @classmethod
    def from_linear(cls, lin: nn.Linear, lp: LayerPolicy, w_clip: str, a_clip: str, name: str,
                    row_keep: int | None = None) -> QLinear:
        """A compressed copy of ``lin`` (same weights) under ``lp``; ``row_keep`` masks output features."""
        q = cls(lin.in_features, lin.out_features, lin.bias is not None,
                device=lin.weight.device, dtype=lin.weight.dtype)
        with torch.no_grad():
            q.weight.copy_(lin.weight)
            if lin.bias is not None:
                q.bias.copy_(lin.bias)
        q._setup(lp, w_clip, a_clip, name, row_keep)
        q.train(lin.training)
        return q

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        y = F.linear(self.qinput(x), self.qweight(), self.bias)
        self._seen_output(y)
        return y


class QMatMul(MatMul):
    """A `MatMul` (attention QK^T or AV) whose two operands are fake-quantized per tensor to ``a_bits``."""

    def __init__(self, a_bits: int, a_clip: str, name: str) -> None:
        super().__init__()
        self.a_bits, self.a_clip, self.layer_name = a_bits, a_clip, name
        self._calibrate_with: str | None = None
        nan = float("nan")
        self.register_buffer("a_range", torch.tensor([nan, nan]))
        self.register_buffer("b_range", torch.tensor([nan, nan]))

    @property
    def calibrated(self) -> bool:
        """Whether both operand ranges are known."""
        return not bool(torch.isnan(self.a_range).any() or torch.isnan(self.b_range).any())

    def _quant(self, x: torch.Tensor, rng: torch.Tensor) -> torch.Tensor:
        if self._calibrate_with is not None:
            rng.copy_(torch.tensor(act_range(x, self.a_bits, self._calibrate_with)))
        elif _BYPASS[0] and not self.calibrated:
            return x
        elif not torch.jit.is_tracing() and not self.calibrated:
            raise ConfigError(f"attention product {self.layer_name!r} quantizes its operands to {self.a_bits} bits "
                              "but has no calibrated range; calibrate the model or load a state dict")
        scale, zero = act_params(rng[0], rng[1], self.a_bits)
        return fake_quant_act(x, scale, zero, self.a_bits)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:  # noqa: D102
        a, b = self._quant(a, self.a_range), self._quant(b, self.b_range)
        self._calibrate_with = None
        return a @ b

    def describe(self) -> dict[str, object]:
        """Both operands at ``a_bits``; the second takes the weights' place in a MAC array."""
        return {"w_bits": self.a_bits, "a_bits": self.a_bits}


COMPRESSED = (QConv2d, QLinear)
QUANTIZED = (QConv2d, QLinear, QMatMul)

# Tracing a model for its NetSpec runs it on zeros before calibration; shapes do not depend on ranges.
_BYPASS = [False]


@contextlib.contextmanager
def activation_quant_bypassed() -> Iterator[None]:
    """Inside this block, uncalibrated activation quantizers pass inputs through (for shape tracing)."""
    old = _BYPASS[0]
    _BYPASS[0] = True
    try:
        yield
    finally:
        _BYPASS[0] = old


def quant_bypassed() -> bool:
    """Whether `activation_quant_bypassed` is active (unmeasured quantizers and masks pass through)."""
    return _BYPASS[0]


@torch.no_grad()
def calibrate(model: nn.Module, batch: torch.Tensor, clip: str | None = None) -> nn.Module:
    """Set every quantized layer's input range from one forward pass over ``batch`` (in place).

    Each layer fixes its range the moment its input arrives and quantizes from then on, so every
    range fits what the already-quantized layers before it really feed it. ``clip`` overrides each
    layer's ``a_clip`` (``minmax`` or ``mse``).
    """
    layers = [m for m in model.modules() if isinstance(m, QUANTIZED) and m.a_bits < FLOAT_BITS]
    was_training = model.training
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    try:
        for layer in layers:
            layer.a_range.fill_(float("nan"))
            layer._calibrate_with = clip or layer.a_clip
            if isinstance(layer, COMPRESSED):
                layer._out_seen = [float("inf"), float("-inf")]
        model(batch.to(device))
        for layer in layers:
            if layer._calibrate_with is not None:
                raise ConfigError(f"layer {layer.layer_name!r} did not run on the calibration batch")
            if isinstance(layer, COMPRESSED):
                layer.o_range.copy_(torch.tensor(layer._out_seen))
    finally:
        for layer in layers:
            layer._calibrate_with = None
            if isinstance(layer, COMPRESSED):
                layer._out_seen = None
        model.train(was_training)
    return model


__all__ = ["COMPRESSED", "QConv2d", "QLinear", "QMatMul", "QUANTIZED", "activation_quant_bypassed", "calibrate",
           "quant_bypassed"]
