"""How a sub-network's weights are cut out of the supernet's (largest network's) weights.

A sub-network of an elastic space is built by the space itself (`space.build(choice)`); its tensors
carry the same names as the largest network's, only smaller. This module says how each smaller tensor
is read from the full one, as Once-for-All does (Cai et al., ICLR 2020):

- channels, features, heads and layers are *leading slices*: the first k output channels, the first
  k input features... (the supernet keeps its channels sorted by importance, see `ordering`);
- a smaller depthwise kernel is the *centre* of the larger one, passed through a learned
  kernel-transformation matrix per layer and per size step (7 -> 5 -> 3), shared by all channels;
- a fused q/k/v projection is sliced per chunk (the first ``h * head_dim`` rows of q, of k and of v).

Everything is a differentiable view or matmul, so gradients of a sub-network's loss reach the shared
weights and the transformation matrices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from hwsearch.errors import SpecError


def centre_crop(weight: torch.Tensor, k: int) -> torch.Tensor:
    """The central ``k`` x ``k`` window of a conv weight (..., K, K)."""
    big = weight.shape[-1]
    lo = (big - k) // 2
    return weight[..., lo:lo + k, lo:lo + k]


def leading_slice(t: torch.Tensor, shape: Sequence[int], skip: Sequence[int] = ()) -> torch.Tensor:
    """``t`` cut to its first ``shape[d]`` entries along every dim ``d`` not in ``skip``."""
    index = tuple(slice(None) if d in skip or t.shape[d] == s else slice(0, s) for d, s in enumerate(shape))
    return t[index]


def chunked_slice(t: torch.Tensor, dim: int, chunks: int, size: int) -> torch.Tensor:
    """Split dim ``dim`` of ``t`` into ``chunks`` equal parts and keep the leading ``size // chunks`` of each."""
    if size % chunks or t.shape[dim] % chunks:
        raise SpecError(f"cannot cut {chunks} equal chunks of {size} from {t.shape[dim]} along dim {dim}")
    parts = t.chunk(chunks, dim=dim)
    return torch.cat([p.narrow(dim, 0, size // chunks) for p in parts], dim=dim)


def param_key(name: str) -> str:
    """``name`` as a ParameterDict key (dots are not allowed there)."""
    return name.replace(".", "__")


class KernelTransforms(nn.Module):
    """Learned kernel-transformation matrices: for each elastic conv weight, one per size step.

    OFA initialises them to the identity, so before training a smaller kernel is the plain centre
    crop; training lets each small kernel differ from the centre of the big one.
    """

    def __init__(self, weights: Mapping[str, tuple[int, ...]], sizes: Sequence[int]) -> None:
        super().__init__()
        self.sizes = tuple(sorted(set(int(s) for s in sizes)))
        self.matrices = nn.ParameterDict()
        for name, shape in weights.items():
            steps = [s for s in self.sizes if s <= shape[-1]]
            for big, small in zip(steps[::-1], steps[::-1][1:], strict=False):
                self.matrices[f"{param_key(name)}__{big}to{small}"] = nn.Parameter(torch.eye(small * small))

    def transform(self, name: str, weight: torch.Tensor, k: int) -> torch.Tensor:
        """``weight`` (O, I, K, K) reduced to a ``k`` x ``k`` kernel step by step, as OFA's elastic kernel."""
        if k not in self.sizes:
            raise SpecError(f"kernel {k} of {name!r} is not among the supernet's kernel sizes {list(self.sizes)}")
        current = weight
        while current.shape[-1] > k:
            big = current.shape[-1]
            small = max(s for s in self.sizes if s < big)
            key = f"{param_key(name)}__{big}to{small}"
            if key not in self.matrices:
                raise SpecError(f"no kernel transformation {big}->{small} for {name!r}; "
                                f"kernel sizes known to the supernet: {list(self.sizes)}")
            crop = centre_crop(current, small)
            o, i = crop.shape[:2]
            flat = crop.reshape(o * i, small * small) @ self.matrices[key].t()
            current = flat.reshape(o, i, small, small)
        return current


def cut(name: str, full: torch.Tensor, shape: Sequence[int], kernels: KernelTransforms | None,
        chunks: Mapping[str, tuple[int, int]]) -> torch.Tensor:
    """The sub-network tensor called ``name`` of ``shape``, read from the supernet tensor ``full``."""
    shape = tuple(int(s) for s in shape)
    if full.dim() != len(shape) or any(s > f for s, f in zip(shape, full.shape, strict=True)):
        raise SpecError(f"sub-network tensor {name!r} has shape {shape}, which does not fit inside the "
                        f"supernet's {tuple(full.shape)}; is the choice from the supernet's space?")
    if tuple(full.shape) == shape:
        return full
    t = full
    skip: tuple[int, ...] = ()
    if name in chunks:
        dim, n = chunks[name]
        if t.shape[dim] != shape[dim]:
            t = chunked_slice(t, dim, n, shape[dim])
        skip = (dim,)
    if t.dim() == 4 and t.shape[-1] != shape[-1]:
        t = leading_slice(t, shape[:2] + tuple(t.shape[2:]), skip)
        if kernels is None:
            raise SpecError(f"{name!r} needs a smaller kernel but the supernet has no kernel transformations")
        return kernels.transform(name, t, shape[-1])
    return leading_slice(t, shape, skip)


__all__ = ["KernelTransforms", "centre_crop", "chunked_slice", "cut", "leading_slice", "param_key"]
