"""Plans of the building blocks the spaces use, and their exact LayerSpecs, without torch.

A block's plan (`ConvBNActPlan`, `MBConvPlan`, `ViTBlockPlan`) is a small frozen dataclass holding
every constructor argument of the matching module in `hwsearch.spaces.blocks`. `layers(...)` gives
the LayerSpecs that `hwsearch.estimators.counters.trace_netspec` records for that module, in the
same order and under the same qualified names, so a space's `to_netspec` needs no torch and costs
well under a millisecond; the Once-for-All supernet builds and extracts the same modules from the
same plans. Layer lists are cached per (plan, name, input geometry), because a co-search asks for
the same blocks hundreds of thousands of times.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from hwsearch.errors import ConfigError
from hwsearch.ir import LayerSpec

ACTIVATIONS = ("relu", "hswish", "gelu", "hsigmoid")


def make_divisible(value: float, divisor: int = 8) -> int:
    """``value`` rounded to the nearest multiple of ``divisor``, never below ``divisor`` nor 10% below ``value``.

    MobileNetV3's channel rule (Howard et al., 2019): hardware likes multiples of 8, and rounding down
    may not lose more than a tenth of the channels.
    """
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def se_channels(channels: int) -> int:
    """Hidden width of a squeeze-and-excitation block on ``channels`` (a quarter, rounded to 8)."""
    return make_divisible(channels / 4)


def _check_act(act: str | None, where: str) -> None:
    if act is not None and act not in ACTIVATIONS:
        raise ConfigError(f"{where}: activation {act!r} is unknown; use one of {', '.join(ACTIVATIONS)} or None")


def _eltwise(fn: str, n: int, c: int, h: int, w: int, name: str) -> LayerSpec:
    return LayerSpec("eltwise", n=n, c=c, in_h=h, in_w=w, fn=fn, name=name)


def _tok_eltwise(fn: str, n: int, m: int, c: int, name: str) -> LayerSpec:
    return LayerSpec("eltwise", n=n, m=m, c=c, fn=fn, name=name)


@dataclass(frozen=True)
class ConvBNActPlan:
    """Conv2d (no bias) -> BatchNorm2d -> activation (``act=None``: none); ``pad = kernel // 2``."""

    in_channels: int
    out_channels: int
    kernel: int
    stride: int = 1
    depthwise: bool = False
    act: str | None = None

    def __post_init__(self) -> None:
        _check_act(self.act, "ConvBNAct")
        if self.depthwise and self.in_channels != self.out_channels:
            raise ConfigError(f"a depthwise conv needs in == out channels, got {self.in_channels}->{self.out_channels}")

    def out_size(self, h: int) -> int:
        """Output height (or width) for input height ``h``."""
        return (h + 2 * (self.kernel // 2) - self.kernel) // self.stride + 1

    def layers(self, prefix: str, n: int, h: int, w: int) -> tuple[LayerSpec, ...]:
        """LayerSpecs of the module named ``prefix`` on an ``n`` x C x ``h`` x ``w`` input."""
        return _conv_bn_act_layers(self, prefix, n, h, w)


@lru_cache(maxsize=1 << 16)
def _conv_bn_act_layers(p: ConvBNActPlan, prefix: str, n: int, h: int, w: int) -> tuple[LayerSpec, ...]:
    groups = p.in_channels if p.depthwise else 1
    conv = LayerSpec("dwconv" if p.depthwise and groups > 1 else "conv", n=n, c=p.in_channels,
                     k=p.out_channels, in_h=h, in_w=w, r=p.kernel, s=p.kernel, stride=p.stride,
                     pad=p.kernel // 2, groups=groups, name=f"{prefix}.conv")
    oh, ow = conv.h, conv.w
    out = [conv, LayerSpec("norm", n=n, c=p.out_channels, in_h=oh, in_w=ow, fn="batch", bias=True,
                           name=f"{prefix}.bn")]
    if p.act is not None:
        out.append(_eltwise(p.act, n, p.out_channels, oh, ow, f"{prefix}.act"))
    return tuple(out)


@dataclass(frozen=True)
class MBConvPlan:
    """Inverted residual (MobileNetV2/V3): 1x1 expand, k x k depthwise, optional SE, 1x1 project.

    ``mid_channels`` is ``make_divisible(in_channels * expand_ratio)``; with ``expand_ratio == 1`` the
    expand conv is left out (OFA's first block). The residual add exists when the stride is 1 and the
    width does not change. Module names: ``expand``, ``dw``, ``se``, ``project``, ``add``.
    """

    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    expand_ratio: float
    act: str = "relu"
    se: bool = False

    def __post_init__(self) -> None:
        _check_act(self.act, "MBConv")
        if self.kernel % 2 != 1 or self.kernel < 1:
            raise ConfigError(f"MBConv kernel {self.kernel} must be an odd positive integer")
        if self.expand_ratio < 1:
            raise ConfigError(f"MBConv expand ratio {self.expand_ratio} must be >= 1")

    @property
    def mid_channels(self) -> int:
        """Channels of the depthwise conv."""
        if self.expand_ratio == 1:
            return self.in_channels
        return make_divisible(self.in_channels * self.expand_ratio)

    @property
    def has_expand(self) -> bool:
        """Whether a 1x1 expand conv precedes the depthwise conv."""
        return self.expand_ratio != 1

    @property
    def has_residual(self) -> bool:
        """Whether the block adds its input to its output."""
        return self.stride == 1 and self.in_channels == self.out_channels

    @property
    def expand(self) -> ConvBNActPlan:
        """Plan of the 1x1 expand conv."""
        return ConvBNActPlan(self.in_channels, self.mid_channels, 1, 1, False, self.act)

    @property
    def dw(self) -> ConvBNActPlan:
        """Plan of the depthwise conv."""
        return ConvBNActPlan(self.mid_channels, self.mid_channels, self.kernel, self.stride, True, self.act)

    @property
    def project(self) -> ConvBNActPlan:
        """Plan of the 1x1 projection (no activation)."""
        return ConvBNActPlan(self.mid_channels, self.out_channels, 1, 1, False, None)

    def out_size(self, h: int) -> int:
        """Output height (or width) for input height ``h``."""
        return self.dw.out_size(h)

    def layers(self, prefix: str, n: int, h: int, w: int) -> tuple[LayerSpec, ...]:
        """LayerSpecs of the block named ``prefix`` on an ``n`` x C x ``h`` x ``w`` input."""
        return _mbconv_layers(self, prefix, n, h, w)


@lru_cache(maxsize=1 << 16)
def _mbconv_layers(p: MBConvPlan, prefix: str, n: int, h: int, w: int) -> tuple[LayerSpec, ...]:
    out: list[LayerSpec] = []
    if p.has_expand:
        out += p.expand.layers(f"{prefix}.expand", n, h, w)
    out += p.dw.layers(f"{prefix}.dw", n, h, w)
    oh, ow = p.dw.out_size(h), p.dw.out_size(w)
    if p.se:
        c, mid, s = p.mid_channels, se_channels(p.mid_channels), f"{prefix}.se"
        out += [
            LayerSpec("pool", n=n, c=c, in_h=oh, in_w=ow, r=oh, s=ow, fn="avg", name=f"{s}.pool"),
            LayerSpec("conv", n=n, c=c, k=mid, bias=True, name=f"{s}.reduce"),
            _eltwise("relu", n, mid, 1, 1, f"{s}.act"),
            LayerSpec("conv", n=n, c=mid, k=c, bias=True, name=f"{s}.expand"),
            _eltwise("hsigmoid", n, c, 1, 1, f"{s}.gate"),
            _eltwise("mul", n, c, oh, ow, f"{s}.scale"),
        ]
    out += p.project.layers(f"{prefix}.project", n, oh, ow)
    if p.has_residual:
        out.append(_eltwise("add", n, p.out_channels, oh, ow, f"{prefix}.add"))
    return tuple(out)


@dataclass(frozen=True)
class ViTBlockPlan:
    """Pre-norm transformer block: LayerNorm, multi-head attention, add; LayerNorm, MLP (GELU), add.

    The attention's q, k and v each have ``heads * head_dim`` features (AutoFormer: the head width is
    fixed, so elastic heads mean an elastic qkv width), projected back to ``embed``. Module names:
    ``norm1``, ``attn.{qkv,scale,qk,softmax,av,proj}``, ``add1``, ``norm2``, ``mlp.{fc1,act,fc2}``,
    ``add2``.
    """

    embed: int
    heads: int
    head_dim: int
    mlp_hidden: int

    def __post_init__(self) -> None:
        for f in ("embed", "heads", "head_dim", "mlp_hidden"):
            v = getattr(self, f)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"ViT block {f}={v!r} must be a positive integer")

    @property
    def attn_width(self) -> int:
        """Features of each of q, k and v."""
        return self.heads * self.head_dim

    def layers(self, prefix: str, n: int, tokens: int) -> tuple[LayerSpec, ...]:
        """LayerSpecs of the block named ``prefix`` on ``n`` samples of ``tokens`` tokens."""
        return _vit_block_layers(self, prefix, n, tokens)


def mlp_hidden(embed: int, ratio: float) -> int:
    """Hidden width of a transformer MLP: ``embed * ratio``, rounded to an integer."""
    return max(1, int(round(embed * ratio)))


@lru_cache(maxsize=1 << 16)
def _vit_block_layers(p: ViTBlockPlan, prefix: str, n: int, t: int) -> tuple[LayerSpec, ...]:
    e, a, nh, hd = p.embed, p.attn_width, n * p.heads, p.head_dim
    at = f"{prefix}.attn"
    return (
        LayerSpec("norm", n=n, m=t, c=e, fn="layer", bias=True, name=f"{prefix}.norm1"),
        LayerSpec("linear", n=n, m=t, c=e, k=3 * a, bias=True, name=f"{at}.qkv"),
        LayerSpec("eltwise", n=n, c=p.heads, in_h=t, in_w=hd, fn="mul", name=f"{at}.scale"),
        LayerSpec("matmul", n=nh, m=t, c=hd, k=t, name=f"{at}.qk"),
        LayerSpec("softmax", n=nh, m=t, k=t, name=f"{at}.softmax"),
        LayerSpec("matmul", n=nh, m=t, c=t, k=hd, name=f"{at}.av"),
        LayerSpec("linear", n=n, m=t, c=a, k=e, bias=True, name=f"{at}.proj"),
        _tok_eltwise("add", n, t, e, f"{prefix}.add1"),
        LayerSpec("norm", n=n, m=t, c=e, fn="layer", bias=True, name=f"{prefix}.norm2"),
        LayerSpec("linear", n=n, m=t, c=e, k=p.mlp_hidden, bias=True, name=f"{prefix}.mlp.fc1"),
        _tok_eltwise("gelu", n, t, p.mlp_hidden, f"{prefix}.mlp.act"),
        LayerSpec("linear", n=n, m=t, c=p.mlp_hidden, k=e, bias=True, name=f"{prefix}.mlp.fc2"),
        _tok_eltwise("add", n, t, e, f"{prefix}.add2"),
    )


__all__ = ["ACTIVATIONS", "ConvBNActPlan", "MBConvPlan", "ViTBlockPlan", "make_divisible", "mlp_hidden",
           "se_channels"]
