"""`vit`: a Vision Transformer with AutoFormer/HAT-style elastic dimensions, sized for small images.

Genes: the embedding width ``embed`` (shared by all layers, as in AutoFormer, Chen et al., ICCV 2021),
the ``depth``, and per layer its number of ``heads`` and its ``mlp_ratio``. The head width is fixed
(``head_dim``), so q, k and v have ``heads * head_dim`` features whatever the embedding width. A
network of depth d runs layers 0..d-1; genes of the layers it skips still exist, so every choice has
the same length.

The skeleton: a patch-embedding conv (``patch_size`` x ``patch_size``, stride ``patch_size``), a
learned position embedding, pre-norm transformer blocks, a final LayerNorm, the mean over tokens
and a linear head. Attention products are `MatMul` layers and softmax, norms, GELU and residual adds
their own layers, so the NetSpec shows everything the network computes.

Defaults (32x32 input, 8x8 patches, so 16 tokens; embeddings 64-128; networks of about 1M to 14M
MACs) were chosen on digits, where 16 tokens trained better than 64 under the default recipe
(BENCHMARKS.md, "Figures behind design choices"). CIFAR-10's photographs carry detail at 32x32: ``profile="cifar10"`` (`hwsearch.spaces.profiles`) uses
4x4 patches, 64 tokens.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hwsearch.errors import ConfigError
from hwsearch.ir import LayerSpec, NetSpec
from hwsearch.spaces import register
from hwsearch.spaces.base import Dim, MinMiddleMaxReferences, SearchSpace, positive_options
from hwsearch.spaces.blockspecs import ViTBlockPlan, mlp_hidden

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class ViTPlan:
    """Everything needed to build one network of the space."""

    input_shape: tuple[int, int, int]
    patch_size: int
    embed: int
    blocks: tuple[ViTBlockPlan, ...]
    num_classes: int

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.input_shape[1] // self.patch_size

    @property
    def tokens(self) -> int:
        """Number of tokens (patches)."""
        return self.grid * self.grid


class ViTSpace(MinMiddleMaxReferences, SearchSpace):
    """ViT with elastic embedding width, depth, per-layer heads and per-layer MLP ratio."""

    name = "vit"

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int = 10,
        resolution: int = 32,
        patch_size: int = 8,
        embeds: Sequence[int] = (64, 96, 128),
        head_dim: int = 16,
        depths: Sequence[int] = (2, 3, 4, 5),
        heads: Sequence[int] = (1, 2, 3, 4),
        mlp_ratios: Sequence[float] = (2, 3, 4),
    ) -> None:
        for f, v in (("in_channels", in_channels), ("num_classes", num_classes), ("resolution", resolution),
                     ("patch_size", patch_size), ("head_dim", head_dim)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"vit: {f}={v!r} must be a positive integer")
        if resolution % patch_size:
            raise ConfigError(f"vit: resolution {resolution} must be a multiple of patch_size {patch_size}")
        self.in_channels, self._num_classes = in_channels, num_classes
        self.resolution, self.patch_size, self.head_dim = resolution, patch_size, head_dim
        self.embeds = positive_options("vit", "embeds", embeds, integer=True)
        self.depths = positive_options("vit", "depths", depths, integer=True)
        self.heads = positive_options("vit", "heads", heads, integer=True)
        self.mlp_ratios = positive_options("vit", "mlp_ratios", mlp_ratios, integer=False)
        self.max_depth = max(self.depths)
        dims = [Dim("embed", self.embeds), Dim("depth", self.depths)]
        for j in range(self.max_depth):
            dims.append(Dim(f"layer{j}.heads", self.heads))
            dims.append(Dim(f"layer{j}.mlp_ratio", self.mlp_ratios))
        self.dims = tuple(dims)
        self._netspecs: dict[tuple, NetSpec] = {}

    def plan(self, choice: Mapping[str, Any]) -> ViTPlan:
        """The block plans of ``choice`` (what `build` constructs and the supernet extracts)."""
        c = self.validate(choice)
        e = int(c["embed"])
        blocks = tuple(
            ViTBlockPlan(e, int(c[f"layer{j}.heads"]), self.head_dim, mlp_hidden(e, c[f"layer{j}.mlp_ratio"]))
            for j in range(int(c["depth"]))
        )
        shape = (self.in_channels, self.resolution, self.resolution)
        return ViTPlan(shape, self.patch_size, e, blocks, self._num_classes)

    def input_shape(self, choice: Mapping[str, Any]) -> tuple[int, int, int]:
        """(channels, resolution, resolution); the same for every choice."""
        self.validate(choice)
        return (self.in_channels, self.resolution, self.resolution)

    def to_netspec(self, choice: Mapping[str, Any], batch: int = 1) -> NetSpec:
        """Exact layers of ``choice``, equal to what `trace_netspec` records on `build(choice)`."""
        key = (batch, *(choice.get(d.name) for d in self.dims))
        cached = self._netspecs.get(key)
        if cached is not None and len(choice) == len(self.dims):
            return cached
        p = self.plan(choice)
        n, e, t, (cin, r, _) = batch, p.embed, p.tokens, p.input_shape
        layers: list[LayerSpec] = [
            LayerSpec("conv", n=n, c=cin, k=e, in_h=r, in_w=r, r=p.patch_size, s=p.patch_size,
                      stride=p.patch_size, bias=True, name="patch"),
            LayerSpec("eltwise", n=n, m=t, c=e, fn="add", bias=True, name="pos"),
        ]
        for j, b in enumerate(p.blocks):
            layers += b.layers(f"blocks.{j}", n, t)
        layers += [
            LayerSpec("norm", n=n, m=t, c=e, fn="layer", bias=True, name="norm"),
            LayerSpec("pool", n=n, c=e, in_h=p.grid, in_w=p.grid, r=p.grid, s=p.grid, fn="avg", name="pool"),
            LayerSpec("linear", n=n, c=e, k=p.num_classes, bias=True, name="head"),
        ]
        net = NetSpec(tuple(layers), p.input_shape, self.name)
        if len(self._netspecs) > 50_000:
            self._netspecs.clear()
        self._netspecs[key] = net
        return net

    def build(self, choice: Mapping[str, Any]) -> torch.nn.Module:
        """A freshly initialised network for ``choice``."""
        # deferred: the module imports torch, and checking a config never builds a network
        from hwsearch.spaces.blocks import VisionTransformer

        return VisionTransformer(self.plan(choice))


@register("vit")
def vit(**kwargs: Any) -> ViTSpace:
    """The `vit` space; kwargs as `ViTSpace` (a ``profile`` is expanded by `spaces.get`)."""
    return ViTSpace(**kwargs)
