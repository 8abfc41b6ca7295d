"""The elastic supernet: one set of weights from which every network of a space is cut.

A `SuperNet` holds the largest network of a space (``space.build(largest)``) and the learned kernel
transformation matrices. A sub-network is run by building the space's own module for the choice on
the ``meta`` device (structure only, no memory) and calling it with tensors cut from the shared
weights (`slicing.cut`) through `torch.func.functional_call`. So the network that runs inside the
supernet *is* ``space.build(choice)``: the same module tree, the same forward, the same NetSpec, and
extraction is nothing more than copying those tensors into a real ``space.build(choice)``.

Elastic depth (a shallower stage has no blocks past its depth), width (fewer channels / heads /
hidden units), kernel (centre + transformation) and resolution (the choice's input size) follow from
that. BatchNorm statistics are never shared between sub-networks: each one is recalibrated on
training images before it is evaluated or extracted, as Once-for-All does.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from hwsearch.errors import SpecError
from hwsearch.spaces.base import Choice, SearchSpace
from hwsearch.spaces.blocks import Attention
from hwsearch.spaces.supernet.ordering import reorder_channels
from hwsearch.spaces.supernet.slicing import KernelTransforms, cut

KINDS = ("resolution", "kernel", "depth", "width")
_KIND_PATTERNS = (("resolution", re.compile(r"(^|\.)resolution$")), ("kernel", re.compile(r"(^|\.)kernel$")),
                  ("depth", re.compile(r"(^|\.)depth$")))


def gene_kind(name: str) -> str:
    """Which elastic dimension a gene belongs to: resolution, kernel, depth or width (anything else)."""
    for kind, pattern in _KIND_PATTERNS:
        if pattern.search(name):
            return kind
    return "width"


def _is_bn(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.batchnorm._BatchNorm)


class SuperNet(nn.Module):
    """Shared weights of every network of ``space``; run, calibrate and extract any choice of it."""

    def __init__(self, space: SearchSpace, skeleton_cache: int = 64) -> None:
        super().__init__()
        self.space = space
        self._skeletons: OrderedDict[tuple, nn.Module] = OrderedDict()
        self._skeleton_cache = skeleton_cache
        self.largest: Choice = space.validate(space.reference("largest"))
        with torch.random.fork_rng(devices=[]):
            self.full = space.build(self.largest)
        self.kinds: dict[str, str] = {d.name: gene_kind(d.name) for d in space.dims}
        kernel_genes = [d for d in space.dims if self.kinds[d.name] == "kernel"]
        sizes = sorted({int(o) for d in kernel_genes for o in d.options})
        small_kernels = {**self.largest, **{d.name: min(d.options) for d in kernel_genes}}
        small_shapes = {n: tuple(p.shape) for n, p in self.skeleton(small_kernels).named_parameters()}
        elastic = {n: tuple(p.shape) for n, p in self.full.named_parameters()
                   if p.dim() == 4 and n in small_shapes and small_shapes[n][-1] < p.shape[-1]}
        self.kernels = KernelTransforms(elastic, sizes or [1])
        self.chunks: dict[str, tuple[int, int]] = {}
        for mname, module in self.full.named_modules():
            if isinstance(module, Attention):  # q, k and v are stacked in one projection
                for p in ("weight", "bias"):
                    self.chunks[f"{mname}.qkv.{p}"] = (0, 3)

    # ---- structure ---------------------------------------------------------------------------
    def _key(self, choice: Mapping[str, Any]) -> tuple:
        return tuple(choice[d.name] for d in self.space.dims)

    def skeleton(self, choice: Mapping[str, Any]) -> nn.Module:
        """``space.build(choice)`` on the meta device: the structure of a sub-network, no memory."""
        choice = self.space.validate(choice)
        key = self._key(choice)
        skel = self._skeletons.get(key)
        if skel is None:
            with torch.device("meta"):
                skel = self.space.build(choice)
            self._skeletons[key] = skel
            if len(self._skeletons) > self._skeleton_cache:
                self._skeletons.popitem(last=False)
        else:
            self._skeletons.move_to_end(key)
        return skel

    def resolution(self, choice: Mapping[str, Any]) -> int:
        """Data resolution of ``choice``: its input's side, or a token window's length (`SearchSpace.data_resolution`)."""
        return self.space.data_resolution(choice)

    # ---- weights -----------------------------------------------------------------------------
    def weights(self, choice: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Parameters of sub-network ``choice`` cut from the shared ones (differentiable views)."""
        full = dict(self.full.named_parameters())
        out = {}
        for name, p in self.skeleton(choice).named_parameters():
            if name not in full:
                raise SpecError(f"sub-network parameter {name!r} does not exist in the largest network of "
                                f"space {self.space.name!r}; the space's module names must not depend on the choice")
            out[name] = cut(name, full[name], p.shape, self.kernels, self.chunks)
        return out

    def fresh_buffers(self, choice: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Buffers of sub-network ``choice``: BatchNorm statistics reset, any other buffer cut from the supernet."""
        skel = self.skeleton(choice)
        full = dict(self.full.named_buffers())
        device = next(self.full.parameters()).device
        out = {}
        for mname, module in skel.named_modules():
            for bname, b in module.named_buffers(recurse=False):
                name = f"{mname}.{bname}" if mname else bname
                if _is_bn(module):
                    value = {"running_mean": 0.0, "running_var": 1.0}.get(bname, 0)
                    out[name] = torch.full(b.shape, value, dtype=b.dtype, device=device)
                else:
                    out[name] = cut(name, full[name], b.shape, None, self.chunks).clone()
        return out

    # ---- running -----------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, choice: Mapping[str, Any],
                buffers: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Logits of sub-network ``choice`` on ``x`` (train mode: batch statistics; eval: ``buffers``)."""
        skel = self.skeleton(choice)
        skel.train(self.training)
        if buffers is None:
            if not self.training:
                raise SpecError("a sub-network in eval mode needs its calibrated BatchNorm statistics; "
                                "pass buffers=supernet.calibrate(choice, images)")
            buffers = self.fresh_buffers(choice)
        return functional_call(skel, {**self.weights(choice), **buffers}, (x,), strict=True)

    @torch.no_grad()
    def calibrate(self, choice: Mapping[str, Any], images: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
        """BatchNorm statistics of sub-network ``choice``: averages over ``images`` (OFA's recalibration)."""
        skel = self.skeleton(choice)
        buffers = self.fresh_buffers(choice)
        bns = [m for m in skel.modules() if _is_bn(m)]
        momenta = [m.momentum for m in bns]
        was_training = self.training
        try:
            for m in bns:
                m.momentum = None  # a cumulative average over the batches, not an exponential one
            skel.train()
            weights = self.weights(choice)
            device = next(self.full.parameters()).device
            for start in range(0, len(images), batch_size):
                functional_call(skel, {**weights, **buffers}, (images[start:start + batch_size].to(device),),
                                strict=True)
        finally:
            for m, mom in zip(bns, momenta, strict=True):
                m.momentum = mom
            self.train(was_training)
        return buffers

    @torch.no_grad()
    def logits(self, choice: Mapping[str, Any], images: torch.Tensor, buffers: Mapping[str, torch.Tensor],
               batch_size: int = 512) -> torch.Tensor:
        """Eval-mode logits of ``choice`` on ``images`` with calibrated ``buffers``."""
        skel = self.skeleton(choice)
        skel.eval()
        weights = self.weights(choice)
        device = next(self.full.parameters()).device
        outs = [functional_call(skel, {**weights, **buffers}, (images[s:s + batch_size].to(device),), strict=True)
                for s in range(0, len(images), batch_size)]
        return torch.cat(outs).cpu() if outs else torch.zeros(0)

    def extract(self, choice: Mapping[str, Any], buffers: Mapping[str, torch.Tensor]) -> nn.Module:
        """A standalone ``space.build(choice)`` holding the inherited weights and ``buffers`` (eval mode)."""
        choice = self.space.validate(choice)
        with torch.random.fork_rng(devices=[]):
            model = self.space.build(choice)
        state = {n: t.detach().clone().cpu() for n, t in self.weights(choice).items()}
        persistent = set(model.state_dict())
        state.update({n: t.detach().clone().cpu() for n, t in buffers.items() if n in persistent})
        model.load_state_dict(state, strict=True)
        return model.eval()

    def reorder_channels(self) -> int:
        """Sort elastic channels by importance (before the width phase); returns the groups sorted."""
        return reorder_channels(self.full)

    # ---- choices -----------------------------------------------------------------------------
    def genes_of(self, kinds: Iterable[str]) -> list[str]:
        """Names of the genes of the given elastic kinds."""
        kinds = set(kinds)
        return [d.name for d in self.space.dims if self.kinds[d.name] in kinds]


__all__ = ["KINDS", "SuperNet", "gene_kind"]
