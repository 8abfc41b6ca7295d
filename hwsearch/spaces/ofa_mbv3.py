"""`ofa-mbv3`: the Once-for-All MobileNetV3 space, scaled to small images.

Genes, as in Once-for-All (Cai et al., ICLR 2020): the input ``resolution``; per stage its depth
(default {2, 3, 4}; a stage of depth d runs its blocks 0..d-1, so OFA's depth shrinking drops the
last blocks); per block its depthwise kernel ({3, 5, 7}) and expand ratio ({3, 4, 6}, OFA's elastic
width). Genes of blocks a shallower depth skips still exist, so every choice has the same length.

The fixed skeleton follows MobileNetV3-Large: a 3x3 stem, a first block with expand ratio 1, five
stages with MobileNetV3's activations (ReLU, ReLU, h-swish x3) and squeeze-and-excitation (stages 2,
4 and 5), a 1x1 head conv, global average pooling and a linear classifier. Widths, strides and the
stem stride are parameters. The defaults keep OFA's total stride of 32 (a stride-2 stem; 32x32 inputs
end on a 1x1 map) and narrow widths, so networks span about 1M to 8M MACs and train on digits in a
few minutes on two CPU cores; on CPUs the depthwise convs' backward pass, not the MAC count,
dominates training time, which is why the stem does not keep the full resolution. For 32x32
photographs, ``profile="cifar10"`` (`hwsearch.spaces.profiles`) picks strides that keep the last stage
above 1x1.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hwsearch.errors import ConfigError
from hwsearch.ir import LayerSpec, NetSpec
from hwsearch.spaces import register
from hwsearch.spaces.base import Choice, Dim, SearchSpace
from hwsearch.spaces.blockspecs import ACTIVATIONS, ConvBNActPlan, MBConvPlan

if TYPE_CHECKING:
    import torch

# MobileNetV3-Large's stage layout (Howard et al., 2019, table 1), as OFA groups it.
MBV3_ACTS = ("relu", "relu", "hswish", "hswish", "hswish")
MBV3_SE = (False, True, False, True, True)
# Per stage: depth, kernel, expand ratios of MobileNetV3-Large, for the `mbv3-like` reference.
MBV3_LIKE = ((2, 3, (4, 3)), (3, 5, (3, 3, 3)), (4, 3, (6, 3, 3, 3)), (2, 3, (6, 6)), (3, 5, (6, 6, 6)))


@dataclass(frozen=True)
class MBV3Plan:
    """Everything needed to build one network of the space: input shape and each block's plan."""

    input_shape: tuple[int, int, int]
    stem: ConvBNActPlan
    first: MBConvPlan
    stages: tuple[tuple[MBConvPlan, ...], ...]
    head: ConvBNActPlan
    num_classes: int


class OFAMobileNetV3Space(SearchSpace):
    """MobileNetV3 with OFA's elastic resolution, depth, kernel and expand ratio."""

    name = "ofa-mbv3"

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        resolutions: Sequence[int] = (24, 28, 32),
        stem_width: int = 16,
        stem_stride: int = 2,
        first_width: int = 16,
        widths: Sequence[int] = (24, 32, 48, 64, 96),
        strides: Sequence[int] = (2, 2, 2, 1, 2),
        acts: Sequence[str] = MBV3_ACTS,
        se: Sequence[bool] = MBV3_SE,
        head_width: int = 256,
        depths: Sequence[int] = (2, 3, 4),
        kernels: Sequence[int] = (3, 5, 7),
        expand_ratios: Sequence[float] = (3, 4, 6),
    ) -> None:
        _positive("in_channels", in_channels)
        _positive("num_classes", num_classes)
        for f, v in (("stem_width", stem_width), ("stem_stride", stem_stride), ("first_width", first_width),
                     ("head_width", head_width)):
            _positive(f, v)
        self.in_channels, self._num_classes = int(in_channels), int(num_classes)
        self.resolutions = _options("resolutions", resolutions, positive=True)
        self.stem_width, self.stem_stride, self.first_width = int(stem_width), int(stem_stride), int(first_width)
        self.widths = tuple(int(_positive("widths", w)) for w in widths)
        n = len(self.widths)
        if n == 0:
            raise ConfigError("ofa-mbv3: widths must name at least one stage")
        for f, v in (("strides", strides), ("acts", acts), ("se", se)):
            if len(v) != n:
                raise ConfigError(f"ofa-mbv3: {f} has {len(v)} entries but widths has {n}; give one per stage")
        self.strides = tuple(int(_positive("strides", s)) for s in strides)
        for a in acts:
            if a not in ACTIVATIONS:
                raise ConfigError(f"ofa-mbv3: activation {a!r} is unknown; use one of {', '.join(ACTIVATIONS)}")
        self.acts, self.se = tuple(acts), tuple(bool(x) for x in se)
        self.head_width = int(head_width)
        self.depths = _options("depths", depths, positive=True)
        self.kernels = _options("kernels", kernels, positive=True)
        if any(k % 2 == 0 for k in self.kernels):
            raise ConfigError(f"ofa-mbv3: kernels {list(self.kernels)} must all be odd")
        self.expand_ratios = _options("expand_ratios", expand_ratios, positive=True)
        if min(self.expand_ratios) < 1:
            raise ConfigError(f"ofa-mbv3: expand_ratios {list(self.expand_ratios)} must all be >= 1")
        self.max_depth = max(self.depths)
        dims = [Dim("resolution", self.resolutions)]
        for i in range(n):
            dims.append(Dim(f"stage{i}.depth", self.depths))
            for j in range(self.max_depth):
                dims.append(Dim(f"stage{i}.block{j}.kernel", self.kernels))
                dims.append(Dim(f"stage{i}.block{j}.expand", self.expand_ratios))
        self.dims = tuple(dims)
        self._netspecs: dict[tuple, NetSpec] = {}

    # ---- choice -> plan -> NetSpec / module ----------------------------------------------------
    def plan(self, choice: Mapping[str, Any]) -> MBV3Plan:
        """The block plans of ``choice`` (what `build` constructs and the supernet extracts)."""
        c = self.validate(choice)
        r = int(c["resolution"])
        stem = ConvBNActPlan(self.in_channels, self.stem_width, 3, self.stem_stride, False, "hswish")
        first = MBConvPlan(self.stem_width, self.first_width, 3, 1, 1, "relu", False)
        stages, width = [], self.first_width
        for i, out in enumerate(self.widths):
            blocks = []
            for j in range(int(c[f"stage{i}.depth"])):
                blocks.append(MBConvPlan(width, out, int(c[f"stage{i}.block{j}.kernel"]),
                                         self.strides[i] if j == 0 else 1, c[f"stage{i}.block{j}.expand"],
                                         self.acts[i], self.se[i]))
                width = out
            stages.append(tuple(blocks))
        head = ConvBNActPlan(width, self.head_width, 1, 1, False, "hswish")
        return MBV3Plan((self.in_channels, r, r), stem, first, tuple(stages), head, self._num_classes)

    def input_shape(self, choice: Mapping[str, Any]) -> tuple[int, int, int]:
        """(channels, resolution, resolution) of ``choice``."""
        r = int(self.validate(choice)["resolution"])
        return (self.in_channels, r, r)

    def to_netspec(self, choice: Mapping[str, Any], batch: int = 1) -> NetSpec:
        """Exact layers of ``choice``, equal to what `trace_netspec` records on `build(choice)`."""
        key = (batch, *(choice.get(d.name) for d in self.dims))
        cached = self._netspecs.get(key)
        if cached is not None and len(choice) == len(self.dims):
            return cached
        p = self.plan(choice)
        n, (_, h, w) = batch, p.input_shape
        layers: list[LayerSpec] = list(p.stem.layers("stem", n, h, w))
        h, w = p.stem.out_size(h), p.stem.out_size(w)
        layers += p.first.layers("first", n, h, w)
        for i, blocks in enumerate(p.stages):
            for j, b in enumerate(blocks):
                layers += b.layers(f"stages.{i}.{j}", n, h, w)
                h, w = b.out_size(h), b.out_size(w)
        layers += p.head.layers("head", n, h, w)
        layers.append(LayerSpec("pool", n=n, c=p.head.out_channels, in_h=h, in_w=w, r=h, s=w, fn="avg",
                                name="pool"))
        layers.append(LayerSpec("linear", n=n, c=p.head.out_channels, k=p.num_classes, bias=True,
                                name="classifier"))
        net = NetSpec(tuple(layers), p.input_shape, self.name)
        if len(self._netspecs) > 50_000:
            self._netspecs.clear()
        self._netspecs[key] = net
        return net

    def build(self, choice: Mapping[str, Any]) -> torch.nn.Module:
        """A freshly initialised network for ``choice``."""
        # deferred: the module imports torch, and checking a config never builds a network
        from hwsearch.spaces.blocks import MobileNetV3

        return MobileNetV3(self.plan(choice))

    # ---- references --------------------------------------------------------------------------
    def _refs(self) -> dict[str, Choice]:
        def uniform(pick) -> Choice:
            return {d.name: pick(d.options) for d in self.dims}

        like = uniform(min)
        like["resolution"] = max(self.resolutions)
        for i in range(len(self.widths)):
            depth, kernel, expands = MBV3_LIKE[min(i, len(MBV3_LIKE) - 1)]
            like[f"stage{i}.depth"] = _nearest(self.depths, depth)
            for j in range(min(depth, self.max_depth)):
                like[f"stage{i}.block{j}.kernel"] = _nearest(self.kernels, kernel)
                like[f"stage{i}.block{j}.expand"] = _nearest(self.expand_ratios, expands[j % len(expands)])
        return {"largest": uniform(max), "smallest": uniform(min), "mbv3-like": like}

    def references(self) -> list[str]:
        """``largest``, ``smallest`` and ``mbv3-like`` (MobileNetV3-Large's depths, kernels, ratios)."""
        return list(self._refs())

    def reference(self, name: str) -> Choice:
        """A named reference choice."""
        return self.reference_or_error(name, self._refs())


def _positive(field: str, value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0 or value != int(value):
        raise ConfigError(f"ofa-mbv3: {field}={value!r} must be a positive integer")
    return value


def _options(field: str, values: Sequence[Any], positive: bool = False) -> tuple[Any, ...]:
    values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    if not values or len(set(values)) != len(values):
        raise ConfigError(f"ofa-mbv3: {field}={list(values)!r} must be a non-empty list without repeats")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (positive and v <= 0):
            raise ConfigError(f"ofa-mbv3: {field} entry {v!r} must be a positive number")
    return tuple(sorted(int(v) if float(v).is_integer() else float(v) for v in values))


def _nearest(options: Sequence[Any], target: float) -> Any:
    return min(options, key=lambda o: (abs(o - target), o))


@register("ofa-mbv3")
def ofa_mbv3(**kwargs: Any) -> OFAMobileNetV3Space:
    """The `ofa-mbv3` space; kwargs as `OFAMobileNetV3Space` (a ``profile`` is expanded by `spaces.get`)."""
    return OFAMobileNetV3Space(**kwargs)
