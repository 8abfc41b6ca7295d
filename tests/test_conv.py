"""SameConv2d: cropping a 'same' kernel to the taps a small input reaches changes nothing."""

import itertools

import pytest
import torch
from torch import nn

from hwsearch.spaces.conv import SameConv2d, crop_for_input, declared_kernels


@pytest.mark.parametrize("kernel,stride,size,depthwise",
                         list(itertools.product([1, 3, 5, 7], [1, 2], [1, 2, 3, 5, 8], [False, True])))
def test_cropped_convolution_equals_the_declared_one_forward_and_backward(kernel, stride, size, depthwise):
    torch.manual_seed(0)
    c = 6
    out = c if depthwise else 8
    ref = nn.Conv2d(c, out, kernel, stride, kernel // 2, groups=c if depthwise else 1, bias=True)
    conv = SameConv2d(c, out, kernel, stride, kernel // 2, groups=c if depthwise else 1, bias=True)
    conv.load_state_dict(ref.state_dict())
    x = torch.randn(3, c, size, size, requires_grad=True)
    y_ref, y = ref(x), conv(x)
    assert y.shape == y_ref.shape
    torch.testing.assert_close(y, y_ref, atol=1e-5, rtol=1e-5)
    g_ref = torch.autograd.grad(y_ref.square().sum(), [x, ref.weight])
    g = torch.autograd.grad(y.square().sum(), [x, conv.weight])
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_a_seven_by_seven_kernel_on_a_one_pixel_map_keeps_only_its_centre():
    w = torch.arange(49.0).reshape(1, 1, 7, 7)
    assert crop_for_input(w, 1, 1).flatten().tolist() == [24.0]
    assert crop_for_input(w, 2, 9).shape == (1, 1, 3, 7)
    assert crop_for_input(w, 4, 4) is w


def test_declared_kernels_and_tracing_keep_the_full_kernel():
    conv = SameConv2d(4, 4, 7, 1, 3, groups=4, bias=False)
    x = torch.randn(1, 4, 1, 1)
    with declared_kernels():
        y = conv(x)
    assert y.grad_fn.next_functions[1][0].__class__.__name__ == "AccumulateGrad"  # the weight itself, not a slice
    traced = torch.jit.trace(conv, x)
    torch.testing.assert_close(traced(torch.ones(1, 4, 9, 9)), conv(torch.ones(1, 4, 9, 9)))
