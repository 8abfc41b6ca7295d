"""A 2-D convolution that skips the kernel taps which can only ever read zero padding.

Small images shrink to 1x1, 2x2 or 3x3 feature maps deep inside a MobileNet, where a 7x7 depthwise
kernel with 'same' padding touches mostly padding: on a 1x1 map only its centre tap reads a pixel.
A tap more than ``H - 1`` rows (or ``W - 1`` columns) from the centre never reaches the image, so
cropping an odd kernel to ``min(k, 2H - 1)`` and its padding to match gives the same result, while
oneDNN's depthwise kernels, which do not skip padding, ran such layers (and their backward) 10-50x
slower than needed. The layer keeps its full kernel: the NetSpec, the accelerator model and the
exported models see the layer as declared; only eager execution takes the shortcut.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

_DECLARED = [False]


@contextlib.contextmanager
def declared_kernels() -> Iterator[None]:
    """Run every `same_conv2d` with its declared kernel (for tracers that follow the weight, like DepGraph)."""
    old = _DECLARED[0]
    _DECLARED[0] = True
    try:
        yield
    finally:
        _DECLARED[0] = old


def crop_for_input(weight: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``weight`` (O, I, kh, kw) centre-cropped to the taps an ``height`` x ``width`` input can reach."""
    kh, kw = weight.shape[-2:]
    nh, nw = min(kh, 2 * height - 1), min(kw, 2 * width - 1)
    if (nh, nw) == (kh, kw):
        return weight
    top, left = (kh - nh) // 2, (kw - nw) // 2
    return weight[..., top:top + nh, left:left + nw]


def same_conv2d(conv: nn.Conv2d, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``conv``'s convolution of ``x`` with ``weight``, cropping the kernel when that changes nothing."""
    # Traced and scripted exports keep the declared kernel, so they run at any input size.
    if _DECLARED[0] or torch.jit.is_tracing() or torch.jit.is_scripting():
        return conv._conv_forward(x, weight, bias)
    kh, kw = weight.shape[-2:]
    exact = (conv.padding_mode == "zeros" and conv.dilation == (1, 1) and kh % 2 == 1 and kw % 2 == 1
             and tuple(conv.padding) == (kh // 2, kw // 2))
    if not exact:
        return conv._conv_forward(x, weight, bias)
    cropped = crop_for_input(weight, x.shape[-2], x.shape[-1])
    if cropped is weight:
        return conv._conv_forward(x, weight, bias)
    padding = (cropped.shape[-2] // 2, cropped.shape[-1] // 2)
    return F.conv2d(x, cropped, bias, conv.stride, padding, conv.dilation, conv.groups)


class SameConv2d(nn.Conv2d):
    """`nn.Conv2d` that crops an odd 'same'-padded kernel to the taps a small input can reach."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if torch.jit.is_scripting():  # TorchScript skips the other branch, which it could not compile
            return self._conv_forward(x, self.weight, self.bias)
        return same_conv2d(self, x, self.weight, self.bias)


__all__ = ["SameConv2d", "crop_for_input", "declared_kernels", "same_conv2d"]
