"""`gpt`: a decoder-only, character-level transformer with the `vit` space's elastic dimensions.

Genes, as `vit` (AutoFormer-style): the embedding width ``embed`` shared by all layers, the
``depth``, and per layer its number of ``heads`` (of fixed width ``head_dim``) and its ``mlp_ratio``.
A network of depth d runs layers 0..d-1; genes of the layers it skips still exist.

The skeleton is GPT-2's at small scale: a token lookup in the head's (tied) weight, a learned
position embedding, pre-norm blocks with causal self-attention, a final LayerNorm and a linear head
without bias giving next-token logits at every position. The lookup moves data and computes nothing,
so it is not a layer of the NetSpec (its table is counted once, in the head); the causal mask is an
``eltwise`` add of 0 / -inf to the attention scores, so the NetSpec shows everything computed.

Causality is also a static attention mask in the IR's sense (`hwsearch.ir`): a query needs only the
keys up to its own position, so QK^T, the softmax and AV carry the lower triangle's ``density`` and
the rows' ``density_std`` (`causal_density`). Their dense counts (``macs``, ``vector_ops``, bytes) are
unchanged, so hardware without ``sparse_attention`` prices them exactly as the full map, while
hardware that declares it skips the upper triangle (`hwsearch.hwmodel.sparse`); the ``effective_*``
counts are the triangle's. The torch module declares the same mask (`CausalAttention.static_density`),
so the traced NetSpec carries it too.

A sample is a window of ``context`` token ids; its NetSpec input shape is ``(1, 1, context)``.
``num_classes`` is the vocabulary size (the classes of the next-token classifier), which the engine
fills from the data as it does for image spaces; the default fits tiny-shakespeare's 65 characters.
"""

from __future__ import annotations

import math
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
class GPTPlan:
    """Everything needed to build one network of the space."""

    vocab: int
    context: int
    embed: int
    blocks: tuple[ViTBlockPlan, ...]

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """One window of ``context`` token ids, as (1, 1, context)."""
        return (1, 1, self.context)


def causal_density(t: int) -> dict[str, float]:
    """``density`` and ``density_std`` of a causal map over ``t`` tokens: query row i keeps its first
    i+1 of ``t`` keys, so the lower triangle's share is (t+1)/(2t) and the rows' shares spread evenly
    from 1/t to 1 (their population standard deviation is sqrt((t^2-1)/12)/t)."""
    return {"density": (t + 1) / (2 * t), "density_std": math.sqrt((t * t - 1) / 12) / t}


MAP_LAYERS = ("qk", "softmax", "av")  # the attention layers that touch the map, under ``attn.``


def block_layers(plan: ViTBlockPlan, prefix: str, n: int, t: int) -> tuple[LayerSpec, ...]:
    """LayerSpecs of a causal block: `vit`'s block with the mask add between QK^T and the softmax, and
    QK^T, softmax and AV at the causal mask's density (see the module docstring)."""
    causal = causal_density(t)
    maps = {f"{prefix}.attn.{x}" for x in MAP_LAYERS}
    layers = [x.with_(**causal) if x.name in maps else x for x in plan.layers(prefix, n, t)]
    at = next(i for i, layer in enumerate(layers) if layer.name == f"{prefix}.attn.qk") + 1
    layers.insert(at, LayerSpec("eltwise", n=n, c=plan.heads, in_h=t, in_w=t, fn="add", name=f"{prefix}.attn.mask"))
    return tuple(layers)


class GPTSpace(MinMiddleMaxReferences, SearchSpace):
    """Decoder-only transformer with elastic embedding width, depth, per-layer heads and MLP ratio."""

    name = "gpt"

    def __init__(
        self,
        num_classes: int = 65,
        context: int = 64,
        in_channels: int = 1,
        embeds: Sequence[int] = (64, 96, 128),
        head_dim: int = 32,
        depths: Sequence[int] = (2, 3, 4),
        heads: Sequence[int] = (1, 2, 3, 4),
        mlp_ratios: Sequence[float] = (2, 3, 4),
    ) -> None:
        for f, v in (("num_classes", num_classes), ("context", context), ("head_dim", head_dim)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"gpt: {f}={v!r} must be a positive integer")
        if num_classes < 2:
            raise ConfigError(f"gpt: num_classes={num_classes} (the vocabulary) needs at least 2 tokens")
        if in_channels != 1:
            raise ConfigError(f"gpt: in_channels={in_channels!r}; a token window has one channel (use a text data source)")
        self._num_classes, self.context, self.head_dim = num_classes, context, head_dim
        self.embeds = positive_options("gpt", "embeds", embeds, integer=True)
        self.depths = positive_options("gpt", "depths", depths, integer=True)
        self.heads = positive_options("gpt", "heads", heads, integer=True)
        self.mlp_ratios = positive_options("gpt", "mlp_ratios", mlp_ratios, integer=False)
        dims = [Dim("embed", self.embeds), Dim("depth", self.depths)]
        for j in range(max(self.depths)):
            dims.append(Dim(f"layer{j}.heads", self.heads))
            dims.append(Dim(f"layer{j}.mlp_ratio", self.mlp_ratios))
        self.dims = tuple(dims)

    @property
    def vocab(self) -> int:
        """Tokens of the vocabulary (the head's outputs)."""
        return self._num_classes

    def plan(self, choice: Mapping[str, Any]) -> GPTPlan:
        """The block plans of ``choice`` (what `build` constructs)."""
        c = self.validate(choice)
        e = int(c["embed"])
        blocks = tuple(
            ViTBlockPlan(e, int(c[f"layer{j}.heads"]), self.head_dim, mlp_hidden(e, c[f"layer{j}.mlp_ratio"]))
            for j in range(int(c["depth"]))
        )
        return GPTPlan(self._num_classes, self.context, e, blocks)

    def input_shape(self, choice: Mapping[str, Any]) -> tuple[int, int, int]:
        """(1, 1, context); the same for every choice."""
        self.validate(choice)
        return (1, 1, self.context)

    def to_netspec(self, choice: Mapping[str, Any], batch: int = 1) -> NetSpec:
        """Exact layers of ``choice``, equal to what `trace_netspec` records on `build(choice)`."""
        p = self.plan(choice)
        n, e, t = batch, p.embed, p.context
        layers: list[LayerSpec] = [LayerSpec("eltwise", n=n, m=t, c=e, fn="add", bias=True, name="pos")]
        for j, b in enumerate(p.blocks):
            layers += block_layers(b, f"blocks.{j}", n, t)
        layers += [
            LayerSpec("norm", n=n, m=t, c=e, fn="layer", bias=True, name="norm"),
            LayerSpec("linear", n=n, m=t, c=e, k=p.vocab, name="head"),
        ]
        return NetSpec(tuple(layers), p.input_shape, self.name)

    def build(self, choice: Mapping[str, Any]) -> torch.nn.Module:
        """A freshly initialised network for ``choice``."""
        # deferred: the module imports torch, and checking a config never builds a network
        from hwsearch.spaces._gpt_modules import GPT

        return GPT(self.plan(choice))


@register("gpt")
def gpt(**kwargs: Any) -> GPTSpace:
    """The `gpt` space; kwargs as `GPTSpace`."""
    return GPTSpace(**kwargs)


__all__ = ["MAP_LAYERS", "GPTPlan", "GPTSpace", "block_layers", "causal_density", "gpt"]
