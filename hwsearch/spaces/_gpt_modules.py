"""The torch modules of the `gpt` space: causal attention, its block, and the decoder-only network.

They reuse the `vit` space's attention and block (`hwsearch.spaces.blocks`), so head pruning and the
compression machinery see the same ``qkv``/``proj`` layout; causality is one more traced step, the
add of a 0 / -inf mask to the attention scores before the softmax.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from hwsearch.errors import ConfigError
from hwsearch.spaces.blocks import Attention, ViTBlock
from hwsearch.spaces.blockspecs import ViTBlockPlan
from hwsearch.spaces.gpt import causal_density
from hwsearch.spaces.ops import Add, AddParam

if TYPE_CHECKING:
    from hwsearch.spaces.gpt import GPTPlan


class CausalAttention(Attention):
    """Multi-head self-attention in which a token attends to itself and the tokens before it only."""

    def __init__(self, embed: int, heads: int, head_dim: int, context: int) -> None:
        super().__init__(embed, heads, head_dim)
        self.mask = Add()
        future = torch.triu(torch.ones(context, context, dtype=torch.bool), diagonal=1)
        # A buffer rebuilt from the context, not saved: a state dict holds learned values only.
        self.register_buffer("causal", torch.zeros(context, context).masked_fill(future, float("-inf")),
                             persistent=False)

    def static_density(self, t: int) -> dict[str, float]:
        """Density fields of the map over ``t`` tokens that QK^T, the softmax and AV need (the lower
        triangle): what `hwsearch.estimators.counters.trace_netspec` records on those children."""
        return causal_density(t)

    def static_keep(self, t: int) -> torch.Tensor:
        """The positions of the map over ``t`` tokens that are computed (bool, ``t`` x ``t``)."""
        return self.causal[:t, :t] == 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, _ = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        q = self.scale(q, self.scale_factor)
        attn = self.softmax(self.mask(self.qk(q, k.transpose(-2, -1)), self.causal[:t, :t]))
        y = self.av(attn, v).transpose(1, 2).reshape(n, t, self.heads * self.head_dim)
        return self.proj(y)


class GPTBlock(ViTBlock):
    """Pre-norm transformer block of `ViTBlockPlan` with causal attention."""

    def __init__(self, plan: ViTBlockPlan, context: int) -> None:
        super().__init__(plan)
        self.attn = CausalAttention(plan.embed, plan.heads, plan.head_dim, context)


class TokenLookup(nn.Module):
    """Rows of an embedding table picked by token ids: data movement, no arithmetic, so not a layer."""

    def forward(self, idx: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        return F.embedding(idx, table)


class GPT(nn.Module):
    """A network of the `gpt` space: token lookup, position embedding, causal blocks, norm, head.

    The token table is the head's weight (tied, as GPT-2 does), so it is stored and counted once, and
    the lookup reads it as the head computes with it (masked and fake-quantized once compressed).
    The input is ``context`` token ids per sample in any shape ``(N, ..., context)`` -- the tracers feed
    zeros of the NetSpec's input shape ``(1, 1, context)`` -- and the output is ``(N, context, vocab)``
    next-token logits.
    """

    def __init__(self, plan: GPTPlan) -> None:
        super().__init__()
        self.plan = plan
        self.context = plan.context
        self.tokens = TokenLookup()
        self.pos = AddParam(plan.context, plan.embed)
        self.blocks = nn.Sequential(*(GPTBlock(b, plan.context) for b in plan.blocks))
        self.norm = nn.LayerNorm(plan.embed)
        self.head = nn.Linear(plan.embed, plan.vocab, bias=False)
        nn.init.normal_(self.head.weight, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idx = x.reshape(x.shape[0], -1).long()
        if idx.shape[1] != self.context:
            raise ConfigError(f"gpt: the network reads windows of {self.context} tokens, got {idx.shape[1]}; "
                              "cut the data into windows of the space's context")
        qweight = getattr(self.head, "qweight", None)
        table = qweight() if qweight is not None else self.head.weight
        h = self.norm(self.blocks(self.pos(self.tokens(idx, table))))
        return self.head(h)


__all__ = ["GPT", "CausalAttention", "GPTBlock", "TokenLookup"]
