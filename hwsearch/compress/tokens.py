"""Token pruning for vision transformers: drop the least attended tokens, block by block.

After transformer block ``i`` only ``round(tokens[i] * T)`` of the original ``T`` tokens stay: those
that received the most attention in that block (attention probabilities averaged over heads and
queries, the per-layer importance of SpAtten and the token-pruning literature; with no class token
there is no CLS row to read). The first blocks of a schedule keep 1.0, exempt as those papers advise,
because early attention maps are not yet informative. Later layers then run on fewer tokens, which the
traced NetSpec shows as a smaller ``m``.

Dropping is done by forward hooks on the blocks and their softmax (hook objects, so the model stays
picklable and deep-copyable) rather than by wrapping blocks, so module qualnames and state-dict keys
stay those of the dense model. A readout that reshapes tokens back into the full patch grid (the
`vit` space's mean pool) cannot take fewer tokens; for such a model the tokens after the final norm
are padded back to ``T`` with copies of their mean, which leaves the pooled mean exactly that of the
kept tokens.

The original positions of the surviving tokens are tracked (`TokenPositions`, reset at the start of
every forward pass) for static attention masks (`hwsearch.compress.attention_mask`): a block's mask
is over the original positions, and a later block uses only its surviving rows and columns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from hwsearch.compress.attention_mask import MaskedSoftmax, TokenPositions
from hwsearch.compress.graph import attention_modules
from hwsearch.errors import ConfigError
from hwsearch.estimators.counters import trace_netspec


class _Probe:
    """Forward hook on a softmax: remembers the last attention probabilities."""

    def __init__(self) -> None:
        self.probs: torch.Tensor | None = None

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self.probs = output.detach()  # only ranks tokens; no gradient flows through the choice


class _Drop:
    """Forward hook on a block: keep its ``keep`` most attended output tokens, in their order."""

    def __init__(self, probe: _Probe, keep: int, positions: TokenPositions | None = None) -> None:
        self.probe, self.keep, self.positions = probe, keep, positions

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        n, t, e = output.shape
        probs, self.probe.probs = self.probe.probs, None  # never keep a tensor between calls
        if self.keep >= t or probs is None:
            return output
        importance = probs.mean(dim=(1, 2))  # (n, t): attention each token receives
        idx = torch.sort(torch.topk(importance, self.keep, dim=1).indices, dim=1).values
        if getattr(self, "positions", None) is not None:  # models pickled before positions were tracked lack it
            self.positions.keep(idx)
        return torch.gather(output, 1, idx.unsqueeze(-1).expand(n, self.keep, e))


class _Restore:
    """Forward hook padding tokens back to ``tokens`` with copies of their mean."""

    def __init__(self, tokens: int) -> None:
        self.tokens = tokens

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        n, t, e = output.shape
        if t >= self.tokens:
            return output
        return torch.cat([output, output.mean(dim=1, keepdim=True).expand(n, self.tokens - t, e)], dim=1)


def transformer_blocks(model: nn.Module, input_shape: tuple[int, int, int]) -> list[tuple[str, nn.Module, str, nn.Softmax]]:
    """(name, block, attention name, softmax) of every block holding an attention module, in execution order."""
    modules = dict(model.named_modules())
    order = {layer.name: i for i, layer in enumerate(trace_netspec(model, input_shape).layers)}
    out = []
    for name, attn in attention_modules(model).items():
        softmaxes = [m for m in attn.modules() if isinstance(m, nn.Softmax)]
        if len(softmaxes) != 1 or "." not in name:
            continue
        parent = name.rsplit(".", 1)[0]
        out.append((order.get(f"{name}.qkv", 0), parent, modules[parent], name, softmaxes[0]))
    return [(name, block, attn, sm) for _, name, block, attn, sm in sorted(out, key=lambda x: x[0])]


def token_counts(schedule: Sequence[float], tokens: int) -> list[int]:
    """Tokens left after each block under ``schedule`` (shares of the original ``tokens``)."""
    return [min(tokens, max(1, int(math.floor(r * tokens + 0.5)))) for r in schedule]


def _next_module_after(model: nn.Module, block_name: str, input_shape: tuple[int, int, int]) -> str | None:
    calls: list[str] = []
    handles = [m.register_forward_pre_hook(lambda mod, i, n=n: calls.append(n))
               for n, m in model.named_modules() if n]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
            model(torch.zeros(1, *input_shape, device=device))
    except RuntimeError:
        pass  # the readout fails on fewer tokens; the calls up to it are what we need
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    start = len(calls) - 1 - calls[::-1].index(block_name)
    for n in calls[start + 1:]:
        if not n.startswith(block_name + "."):
            return n
    return None


def install_token_pruning(model: nn.Module, schedule: Sequence[float], input_shape: tuple[int, int, int]) -> list[int]:
    """Add the hooks that drop tokens after each block (in place); returns the tokens kept per block."""
    blocks = transformer_blocks(model, input_shape)
    if not blocks:
        raise ConfigError("a token schedule needs a transformer with attention modules; this model has none")
    if len(schedule) != len(blocks):
        raise ConfigError(f"the token schedule has {len(schedule)} entries but the model has {len(blocks)} "
                          "transformer blocks; give one share per block (1.0 for exempt blocks)")
    first = f"{blocks[0][2]}.qkv"
    tokens = next((layer.m for layer in trace_netspec(model, input_shape).layers if layer.name == first), None)
    if tokens is None:
        raise ConfigError(f"cannot tell how many tokens enter block {blocks[0][0]!r}")
    counts = token_counts(schedule, tokens)
    if counts[-1] >= tokens:
        return counts
    positions = TokenPositions()
    model.register_forward_pre_hook(positions.reset)
    for (_, block, _, softmax), keep in zip(blocks, counts, strict=True):
        probe = _Probe()
        softmax.register_forward_hook(probe)
        block.register_forward_hook(_Drop(probe, keep, positions))
        if isinstance(softmax, MaskedSoftmax):
            softmax.positions = positions
    was_training = model.training
    try:
        with torch.no_grad():
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
            model.eval()(torch.zeros(1, *input_shape, device=device))
        readout_ok = True
    except RuntimeError:
        readout_ok = False
    model.train(was_training)
    if not readout_ok:
        # The readout needs every token back (see module docstring): pad after the final norm.
        last = blocks[-1][0]
        nxt = _next_module_after(model, last, input_shape)
        modules = dict(model.named_modules())
        site = modules[nxt] if nxt is not None and isinstance(modules[nxt], nn.LayerNorm) else blocks[-1][1]
        site.register_forward_hook(_Restore(tokens))
    return counts


__all__ = ["install_token_pruning", "token_counts", "transformer_blocks"]
