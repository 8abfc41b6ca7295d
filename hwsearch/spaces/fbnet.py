"""The FBNet search space (Wu et al., CVPR 2019): 22 searchable blocks, 9 candidate operators each.

The macro-architecture is fixed: a 3x3 stride-2 conv to 16 channels; 22 to-be-searched blocks in
seven stages of (channels, blocks, first stride) (16,1,1) (24,4,2) (32,4,2) (64,4,2) (112,4,1)
(184,4,2) (352,1,1); a 1x1 conv to the head width; global average pooling; a linear classifier.
Every conv is followed by BatchNorm, and by ReLU except a block's projection. Gene ``b<i>`` picks the
operator of block ``i`` from ``k3_e1, k3_e1_g2, k3_e3, k3_e6, k5_e1, k5_e1_g2, k5_e3, k5_e6, skip``.

Details settled against FBNet's published builder and model definitions (facts, not code):

- ``k<K>_e<E>[_g2]`` is an inverted-residual block: 1x1 conv expanding the channels by E (grouped
  when g2) + BN + ReLU, a channel shuffle of the expanded map when g2, a KxK depthwise conv with the
  stage stride + BN + ReLU, a 1x1 (grouped when g2) projection + BN, and a residual add when stride is
  1 and channels are unchanged. The expansion conv exists at E=1 too (FBNet's builder always builds
  it; only the later FBNetV2 builder drops it), and the first stage's block (16 -> 16) is searched
  like every other one, so FBNet-B/C's ``k3_e1`` there does build a 16 -> 16 expansion conv.
- ``skip`` is the identity where the block keeps shape; where it changes channels or stride (the first
  block of a stage) it is a 1x1 conv with the stride + BN + ReLU, as FBNet's builder does. The search
  allows ``skip`` in every block, as the paper does.
- The head width is a gene (``head``): 1984 is the width of the FBNet search space, but the published
  FBNet-A definition ends with a 1504-wide 1x1 conv; with 1984 FBNet-A would have 259M multiply-adds
  and 4.9M parameters instead of the paper's 249M / 4.3M. ``heads=(1984,)`` gives the strict space.
- Multiply-adds are ``NetSpec.macs``: convs and the classifier (BN, ReLU, adds and pooling count 0).
  The classifier is 2M of them, under 1% of any reference. With this reading the published models
  come out at FBNet-A 249.9M (paper 249M), FBNet-B 296.6M (295M), FBNet-C 385.0M (375M, +2.7%);
  parameters, BatchNorm's scale and shift included, 4.32M / 4.81M / 5.57M (paper 4.3M / 4.5M / 5.5M).

The per-block choices of FBNet-A/B/C follow the paper's Figure 4 as transcribed in public model
definitions (mobile-vision's FBNet model zoo and re-implementations of the paper). They agree except
for FBNet-B's block 10: the model zoo's plain FBNet-B says ``k5_e6``, a transcription of the figure
and the zoo's own FBNet-B-SE say ``k5_e1``, which is used here (``k5_e6`` would give 306M, +3.8%).
A second self-consistent reading exists: the later FBNetV2 builder drops the expansion conv at E=1,
which gives A/B(k5_e6)/C = 244.5M / 291.0M / 378.1M; it is not used because the paper's block always
has the expansion conv. The ReLU after the depthwise conv is the builder's (MobileNetV2's) and
changes no multiply-add.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hwsearch.errors import SpecError
from hwsearch.ir import LayerSpec, NetSpec
from hwsearch.spaces import register
from hwsearch.spaces.base import Choice, Dim, SearchSpace

if TYPE_CHECKING:
    import torch

OPS = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")
# (output channels, blocks, stride of the first block), from the paper's Table 1.
STAGES = ((16, 1, 1), (24, 4, 2), (32, 4, 2), (64, 4, 2), (112, 4, 1), (184, 4, 2), (352, 1, 1))
STEM_CHANNELS = 16
HEADS = (1984, 1504)
NUM_BLOCKS = sum(n for _, n, _ in STAGES)

_A = ("skip",
      "k3_e3", "k3_e1", "skip", "skip",
      "k5_e6", "k3_e3", "k5_e1", "k3_e3",
      "k5_e6", "k5_e3", "k5_e1_g2", "k5_e6",
      "k3_e6", "k5_e1_g2", "k5_e3", "k3_e1_g2",
      "k5_e6", "k5_e6", "k5_e3", "k5_e6",
      "k5_e6")
_B = ("k3_e1",
      "k3_e6", "k5_e1", "k3_e1", "k3_e1",
      "k5_e6", "k5_e3", "k3_e6", "k5_e6",
      "k5_e6", "k5_e1", "skip", "k5_e3",
      "k5_e6", "k3_e1", "k5_e1", "k5_e3",
      "k5_e6", "k5_e1", "k5_e6", "k5_e6",
      "k3_e6")
_C = ("k3_e1",
      "k3_e6", "skip", "k3_e1", "k3_e1",
      "k5_e6", "k5_e3", "k5_e6", "k3_e6",
      "k5_e6", "k5_e3", "k5_e6", "k5_e6",
      "k5_e6", "k5_e6", "k5_e6", "k5_e3",
      "k5_e6", "k5_e6", "k5_e6", "k5_e6",
      "k3_e6")
# Published multiply-adds of the references, for reports and tests.
PUBLISHED_MACS = {"fbnet-a": 249_000_000, "fbnet-b": 295_000_000, "fbnet-c": 375_000_000}


@dataclass(frozen=True)
class Op:
    """A candidate operator: kernel, expansion and groups of an inverted-residual block, or skip."""

    name: str
    kernel: int = 0
    expansion: int = 0
    groups: int = 1

    @property
    def is_skip(self) -> bool:
        """Whether the block is the identity (or a 1x1 projection where the shape changes)."""
        return self.name == "skip"

    @classmethod
    def parse(cls, name: str) -> Op:
        """The operator a gene value names."""
        if name == "skip":
            return cls(name)
        if name not in OPS:
            raise SpecError(f"FBNet operator {name!r} is unknown; options: {', '.join(OPS)}")
        parts = name.split("_")
        return cls(name, int(parts[0][1:]), int(parts[1][1:]), 2 if len(parts) == 3 else 1)


@dataclass(frozen=True)
class Block:
    """One searched block placed in the network: its operator and the shapes around it."""

    index: int
    op: Op
    c_in: int
    c_out: int
    stride: int
    size_in: int

    @property
    def mid(self) -> int:
        """Channels of the expanded (depthwise) map."""
        return self.c_in * self.op.expansion

    @property
    def size_out(self) -> int:
        """Output height/width: odd sizes round up, as a padded conv with this stride gives."""
        return (self.size_in - 1) // self.stride + 1

    @property
    def residual(self) -> bool:
        """Whether an inverted-residual block adds its input back."""
        return not self.op.is_skip and self.stride == 1 and self.c_in == self.c_out

    @property
    def projects(self) -> bool:
        """Whether a skip block needs a 1x1 conv because it changes channels or stride."""
        return self.op.is_skip and (self.stride != 1 or self.c_in != self.c_out)


class FBNetSpace(SearchSpace):
    """FBNet's 22 x 9 space at ImageNet shapes (see the module docstring for the details)."""

    name = "fbnet"

    def __init__(self, resolution: int = 224, in_channels: int = 3, num_classes: int = 1000,
                 heads: tuple[int, ...] = HEADS) -> None:
        for field, value in (("resolution", resolution), ("in_channels", in_channels),
                             ("num_classes", num_classes)):
            if not isinstance(value, int) or value < 1:
                raise SpecError(f"fbnet: {field}={value!r} must be a positive integer")
        heads = tuple(int(h) for h in heads)
        if not heads or min(heads) < 1:
            raise SpecError(f"fbnet: heads={heads!r} must list positive head widths")
        self.resolution = resolution
        self.in_channels = in_channels
        self._num_classes = num_classes
        self.heads = heads
        self.dims = tuple(Dim(f"b{i}", OPS) for i in range(NUM_BLOCKS)) + (Dim("head", heads),)

    # ---- layout shared by to_netspec and build ----------------------------------------------
    def blocks(self, choice: Mapping[str, Any]) -> list[Block]:
        """The 22 blocks of ``choice`` with their channels, strides and input sizes."""
        choice = self.validate(choice)
        out, c_in, size, i = [], STEM_CHANNELS, self._stem_size, 0
        for c_out, count, first_stride in STAGES:
            for j in range(count):
                block = Block(i, Op.parse(choice[f"b{i}"]), c_in, c_out, first_stride if j == 0 else 1, size)
                out.append(block)
                c_in, size, i = c_out, block.size_out, i + 1
        return out

    @property
    def _stem_size(self) -> int:
        return (self.resolution - 1) // 2 + 1

    # ---- the contract -----------------------------------------------------------------------
    def to_netspec(self, choice: Mapping[str, Any], batch: int = 1) -> NetSpec:
        """The exact layers `build` runs, in execution order, named by module qualname."""
        choice = self.validate(choice)
        layers: list[LayerSpec] = []
        size = self.resolution
        _conv_bn_act(layers, "stem", batch, self.in_channels, STEM_CHANNELS, size, 3, 2, 1, act=True)
        blocks = self.blocks(choice)
        for b in blocks:
            p = f"blocks.{b.index}"
            if b.op.is_skip:
                if b.projects:
                    _conv_bn_act(layers, f"{p}.proj", batch, b.c_in, b.c_out, b.size_in, 1, b.stride, 1, act=True)
                continue
            k, g = b.op.kernel, b.op.groups
            _conv_bn_act(layers, f"{p}.pw", batch, b.c_in, b.mid, b.size_in, 1, 1, g, act=True)
            _conv_bn_act(layers, f"{p}.dw", batch, b.mid, b.mid, b.size_in, k, b.stride, b.mid, act=True)
            _conv_bn_act(layers, f"{p}.pwl", batch, b.mid, b.c_out, b.size_out, 1, 1, g, act=False)
            if b.residual:
                layers.append(LayerSpec("eltwise", fn="add", n=batch, c=b.c_out, in_h=b.size_out,
                                        in_w=b.size_out, name=f"{p}.add"))
        c, size, head = blocks[-1].c_out, blocks[-1].size_out, int(choice["head"])
        _conv_bn_act(layers, "head", batch, c, head, size, 1, 1, 1, act=True)
        layers.append(LayerSpec("pool", fn="avg", n=batch, c=head, in_h=size, in_w=size, r=size, s=size,
                                name="pool"))
        layers.append(LayerSpec("linear", n=batch, c=head, k=self._num_classes, bias=True, name="classifier"))
        return NetSpec(tuple(layers), (self.in_channels, self.resolution, self.resolution), name="fbnet")

    def input_shape(self, choice: Mapping[str, Any]) -> tuple[int, int, int]:
        """(channels, height, width) of one input sample."""
        return (self.in_channels, self.resolution, self.resolution)

    def build(self, choice: Mapping[str, Any]) -> torch.nn.Module:
        """A freshly initialised FBNet for ``choice``."""
        # deferred: the module imports torch, and checking a config never builds a network
        from hwsearch.spaces._fbnet_modules import FBNet

        choice = self.validate(choice)
        return FBNet(self.blocks(choice), self.in_channels, STEM_CHANNELS, int(choice["head"]), self._num_classes)

    def references(self) -> list[str]:
        """``largest``, ``smallest`` and the published FBNet-A/B/C that this space can express."""
        return sorted(self._references())

    def reference(self, name: str) -> Choice:
        """A named reference choice."""
        return self.reference_or_error(name, self._references())

    def _references(self) -> dict[str, Choice]:
        def choice(ops: tuple[str, ...], head: int) -> Choice:
            return {**{f"b{i}": op for i, op in enumerate(ops)}, "head": head}

        widest, narrowest = max(self.heads), min(self.heads)
        refs = {
            # k5_e6 is the costliest operator everywhere and skip the cheapest, even where skip
            # becomes a 1x1 projection (a k*_e1_g2 block there costs more).
            "largest": choice(("k5_e6",) * NUM_BLOCKS, widest),
            "smallest": choice(("skip",) * NUM_BLOCKS, narrowest),
        }
        for name, ops, head in (("fbnet-a", _A, 1504), ("fbnet-b", _B, 1984), ("fbnet-c", _C, 1984)):
            if head in self.heads:
                refs[name] = choice(ops, head)
        return refs


def _conv_bn_act(layers: list[LayerSpec], prefix: str, n: int, c: int, k: int, size: int, kernel: int,
                 stride: int, groups: int, act: bool) -> None:
    """Append a conv (no bias), its BatchNorm and, if ``act``, its ReLU, as `build` names them."""
    conv = LayerSpec("dwconv" if groups == c and groups > 1 else "conv", n=n, c=c, k=k, in_h=size, in_w=size,
                     r=kernel, s=kernel, stride=stride, pad=kernel // 2, groups=groups, name=f"{prefix}.conv")
    layers.append(conv)
    out = conv.h
    layers.append(LayerSpec("norm", fn="batch", bias=True, n=n, c=k, in_h=out, in_w=out, name=f"{prefix}.bn"))
    if act:
        layers.append(LayerSpec("eltwise", fn="relu", n=n, c=k, in_h=out, in_w=out, name=f"{prefix}.act"))


@register("fbnet")
def fbnet(resolution: int = 224, in_channels: int = 3, num_classes: int = 1000,
          heads: tuple[int, ...] = HEADS) -> FBNetSpace:
    """The FBNet search space at ``resolution`` (224 as published)."""
    return FBNetSpace(resolution=resolution, in_channels=in_channels, num_classes=num_classes, heads=heads)


__all__ = ["OPS", "STAGES", "HEADS", "PUBLISHED_MACS", "Block", "Op", "FBNetSpace", "fbnet"]
