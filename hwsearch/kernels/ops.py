"""LayerSpec -> a runnable torch kernel, in the precision the device really executes.

`make_kernel(layer, device, dtype)` builds the module or function the layer stands for with random
weights and inputs already on the device, and returns a `Kernel` whose `run()` does one forward call.
Kernels are built from the same torch modules networks are built from (nn.Conv2d, nn.Linear,
nn.LayerNorm, ...), so a profiled layer pays the same per-call overhead it pays inside a network.

Precision follows the layer's bit-widths (weights and activations for conv/dwconv/linear,
activations for the rest):

- 32 bits -> the table's float dtype (fp32 on CPU; fp32, fp16 or bf16 on CUDA);
- 16 bits -> fp16 (or the table's bf16) on CUDA; the CPU has no native half kernels -> `NoKernel`;
- 8 bits on CPU -> torch's quantized int8 kernels (the x86/fbgemm or qnnpack engine): conv, dwconv,
  linear, matmul, softmax, batch/layer norm, add/mul, relu/relu6/hswish/hsigmoid/sigmoid/gelu, pools;
  weight-only 8 bits on a linear (activations float) -> torch's dynamic int8 linear;
- 8 bits on CUDA -> int8 GEMM (``torch._int_mm``) for linear layers only;
- any other bit-width (2-7, 9-15 ...) has no real kernel in torch on any device -> `NoKernel`,
  rather than a number measured on something the layer is not.

Sparsity: 2:4 semi-structured on CUDA linear layers in fp16/bf16 runs torch's sparse kernels; every
other fine-grained or N:M sparsity runs dense (torch has no faster kernel for it, which is the true
latency of a masked layer on this device) and the kernel says so in ``notes``. Structural pruning
needs nothing here: it is already a smaller dense shape.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from hwsearch.errors import SpecError
from hwsearch.ir import LayerSpec

PRECISIONS = ("fp32", "fp16", "bf16", "int8", "int8-dynamic")


class NoKernel(SpecError):
    """The device has no real kernel for this layer in this precision (e.g. 4-bit weights on a CPU)."""


@dataclass(frozen=True)
class Kernel:
    """A layer ready to run: ``run()`` is one forward call on pre-built inputs.

    Call it under ``torch.inference_mode()`` (the profiler enters it once around a whole timing loop,
    as a network's forward does, so that entering the mode is not counted per layer).
    """

    layer: LayerSpec
    device: str
    precision: str
    run: Callable[[], Any]
    sparse: bool = False     # whether a sparse kernel (not dense math) executes the layer
    notes: str = ""


@contextlib.contextmanager
def quiet_deprecations() -> Iterator[None]:
    """Silence torch's deprecation warnings about quantized tensors while building and timing kernels."""
    # torch 2.13 warns on every quantized tensor creation that the API is deprecated; the kernels
    # still exist and are what an int8 CPU deployment with torch runs today.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*quantize.*deprecated.*")
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        yield


def _torch_dtype(name: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def precision_for(layer: LayerSpec, device: str, dtype: str = "fp32") -> str:
    """The precision ``layer`` runs in on ``device`` with a table of float dtype ``dtype``."""
    bits = (layer.w_bits, layer.a_bits) if layer.has_weights else (layer.a_bits, layer.a_bits)
    where = f"layer {layer.name or layer.op!r} ({layer.op}, w_bits={layer.w_bits}, a_bits={layer.a_bits})"
    if bits == (32, 32):
        return dtype
    if bits == (16, 16) or (min(bits) >= 16 and 16 in bits):
        if device == "cuda":
            return dtype if dtype in ("fp16", "bf16") else "fp16"
        raise NoKernel(f"{where}: this CPU has no native 16-bit float kernels; measured precisions on cpu are "
                       "32-bit float and 8-bit int")
    if bits == (8, 8):
        return "int8"
    if layer.op == "linear" and bits[0] == 8 and bits[1] >= 16 and device == "cpu":
        return "int8-dynamic"
    raise NoKernel(f"{where}: torch has no {device} kernel for these bit-widths; real kernels exist for "
                   "32/16-bit float and 8-bit int (weight-only 8-bit for linear on cpu)")


# ---- tensor geometry -------------------------------------------------------------------------------
def activation_shape(layer: LayerSpec) -> tuple[int, ...]:
    """The input shape a network feeds this layer: (N, C, H, W), (N, T, C) or (N, C)."""
    if layer.op in ("conv", "dwconv", "pool"):
        return (layer.n, layer.c, layer.in_h, layer.in_w)
    if layer.op == "linear":
        return (layer.n, layer.m, layer.c) if layer.m > 1 else (layer.n, layer.c)
    if layer.op == "softmax":
        return (layer.n, layer.m, layer.k)
    # norm / eltwise: tokens (N, T, C) when m > 1, maps (N, C, H, W) when spatial, else (N, C)
    if layer.m > 1:
        return (layer.n, layer.m, layer.c * layer.in_h * layer.in_w)
    if layer.in_h * layer.in_w > 1:
        return (layer.n, layer.c, layer.in_h, layer.in_w)
    return (layer.n, layer.c)


def _is_global_pool(layer: LayerSpec) -> bool:
    return layer.r == layer.in_h and layer.s == layer.in_w and layer.pad == 0


def _float_activation(fn: str):
    from torch import nn

    table = {"relu": nn.ReLU, "relu6": nn.ReLU6, "hswish": nn.Hardswish, "hsigmoid": nn.Hardsigmoid,
             "gelu": nn.GELU, "silu": nn.SiLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
    return table[fn]() if fn in table else None


# ---- float kernels (fp32 / fp16 / bf16) ----------------------------------------------------------
def _float_kernel(layer: LayerSpec, device: str, precision: str) -> tuple[Callable[[], Any], bool, str]:
    import torch
    from torch import nn

    from hwsearch.spaces.conv import SameConv2d  # deferred: torch (hwsearch.kernels loads it per kernel)

    dt = _torch_dtype(precision)
    dev = torch.device(device)
    notes = ""
    make = dict(device=dev, dtype=dt)

    def x_of(shape):
        return torch.randn(*shape, **make)

    act = _float_activation(layer.fn) if layer.op in ("conv", "dwconv", "linear") and layer.fn else None
    if layer.op in ("conv", "dwconv", "linear") and layer.fn and act is None:
        raise NoKernel(f"layer {layer.name or layer.op!r}: fused activation {layer.fn!r} is unknown")

    def then_act(mod):
        return mod if act is None else nn.Sequential(mod, act)

    sparse = False
    if layer.op in ("conv", "dwconv"):
        mod = then_act(SameConv2d(layer.c, layer.k, (layer.r, layer.s), layer.stride, layer.pad,
                                  groups=layer.groups, bias=layer.bias, **make))
        x = x_of(activation_shape(layer))
        fn = _call(mod.eval(), x)
    elif layer.op == "linear":
        lin = nn.Linear(layer.c, layer.k, bias=layer.bias, **make)
        x = x_of(activation_shape(layer))
        if layer.nm == (2, 4) and device == "cuda" and precision in ("fp16", "bf16"):
            fn, sparse = _semi_structured_linear(lin, x, act), True
        else:
            fn = _call(then_act(lin).eval(), x)
    elif layer.op == "matmul":
        a, b = x_of((layer.n, layer.m, layer.c)), x_of((layer.n, layer.c, layer.k))
        fn = lambda: torch.matmul(a, b)  # noqa: E731
    elif layer.op == "softmax":
        fn = _call(nn.Softmax(dim=-1), x_of(activation_shape(layer)))
    elif layer.op == "norm":
        shape = activation_shape(layer)
        if layer.fn in ("batch", ""):
            if len(shape) != 4:
                shape = (layer.n, layer.c * layer.m, layer.in_h, layer.in_w)
            mod = nn.BatchNorm2d(shape[1], affine=layer.bias, **make)
        elif layer.fn == "layer":
            mod = nn.LayerNorm(shape[-1], elementwise_affine=layer.bias, **make)
            if len(shape) == 4:
                shape = (layer.n, layer.in_h * layer.in_w * layer.m, layer.c)
                mod = nn.LayerNorm(layer.c, elementwise_affine=layer.bias, **make)
        else:
            raise NoKernel(f"layer {layer.name or 'norm'!r}: norm kind {layer.fn!r} is unknown; use batch or layer")
        fn = _call(mod.eval(), x_of(shape))
    elif layer.op == "eltwise":
        shape = activation_shape(layer)
        a = x_of(shape)
        if layer.fn in ("add", "mul", ""):
            other = x_of((1,) + shape[1:]) if layer.bias else x_of(shape)
            fn = (lambda: a * other) if layer.fn == "mul" else (lambda: a + other)
        else:
            mod = _float_activation(layer.fn)
            if mod is None:
                raise NoKernel(f"layer {layer.name or 'eltwise'!r}: element-wise function {layer.fn!r} is unknown")
            fn = _call(mod, a)
    elif layer.op == "pool":
        mod = _pool_module(layer)
        fn = _call(mod, x_of(activation_shape(layer)))
    else:  # pragma: no cover - LayerSpec validates op
        raise NoKernel(f"op {layer.op!r} has no kernel")
    if layer.weight_density < 1.0 and not sparse and layer.has_weights:
        notes = "sparsity executed dense: torch has no faster kernel for it on this device"
    return fn, sparse, notes


def _pool_module(layer: LayerSpec):
    from torch import nn

    if layer.fn not in ("avg", "max", ""):
        raise NoKernel(f"layer {layer.name or 'pool'!r}: pool kind {layer.fn!r} is unknown; use avg or max")
    if _is_global_pool(layer):
        return nn.AdaptiveMaxPool2d(1) if layer.fn == "max" else nn.AdaptiveAvgPool2d(1)
    if layer.fn == "max":
        return nn.MaxPool2d((layer.r, layer.s), layer.stride, layer.pad)
    return nn.AvgPool2d((layer.r, layer.s), layer.stride, layer.pad)


def _call(mod, x) -> Callable[[], Any]:
    return lambda: mod(x)


def _semi_structured_linear(lin, x, act) -> Callable[[], Any]:
    """A 2:4-pruned linear layer run by torch's semi-structured sparse kernels (CUDA, fp16/bf16)."""
    import torch
    import torch.nn.functional as F

    w = lin.weight.detach()
    groups = w.reshape(-1, 4)
    keep = groups.abs().topk(2, dim=1).indices
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, keep, True).reshape(w.shape)
    try:
        ws = torch.sparse.to_sparse_semi_structured(w * mask)
    except (RuntimeError, ValueError) as e:
        raise NoKernel(f"2:4 sparse linear {tuple(w.shape)}: torch refused it ({str(e).splitlines()[0]})") from None
    b = None if lin.bias is None else lin.bias.detach()
    x2 = x.reshape(-1, x.shape[-1])

    def run() -> Any:
        y = F.linear(x2, ws, b)
        return y if act is None else act(y)

    try:  # shape limits of the sparse GEMM surface on the first call, not at conversion
        run()
    except (RuntimeError, ValueError) as e:
        raise NoKernel(f"2:4 sparse linear {tuple(w.shape)} on {tuple(x2.shape)} inputs: torch refused it "
                       f"({str(e).splitlines()[0]})") from None
    return run


# ---- int8 kernels ----------------------------------------------------------------------------------
_SCALE, _ZP = 0.05, 128


def _quantized_activation(fn: str) -> Callable[[Any], Any] | None:
    import torch
    import torch.ao.nn.quantized.functional as qF
    import torch.nn.functional as F

    table: dict[str, Callable[[Any], Any]] = {
        "relu": torch.relu,
        "relu6": F.relu6,
        "hswish": lambda q: qF.hardswish(q, _SCALE, _ZP),
        "hsigmoid": F.hardsigmoid,
        "sigmoid": torch.sigmoid,
        "gelu": F.gelu,
        "tanh": torch.tanh,
    }
    return table.get(fn)


def _int8_cpu_kernel(layer: LayerSpec) -> Callable[[], Any]:
    import torch
    import torch.ao.nn.intrinsic.quantized as nniq
    import torch.ao.nn.quantized as nnq

    def q_of(shape):
        return torch.quantize_per_tensor(torch.randn(*shape), _SCALE, _ZP, torch.quint8)

    where = f"layer {layer.name or layer.op!r}"
    act = None
    if layer.op in ("conv", "dwconv", "linear") and layer.fn and layer.fn != "relu":
        act = _quantized_activation(layer.fn)
        if act is None:
            raise NoKernel(f"{where}: torch has no int8 cpu kernel for activation {layer.fn!r}")
    if layer.op in ("conv", "dwconv"):
        cls = nniq.ConvReLU2d if layer.fn == "relu" else nnq.Conv2d
        mod = cls(layer.c, layer.k, (layer.r, layer.s), layer.stride, layer.pad, groups=layer.groups,
                  bias=layer.bias)
        w = torch.quantize_per_channel(torch.randn(layer.k, layer.c // layer.groups, layer.r, layer.s) * 0.1,
                                       torch.full((layer.k,), 0.01), torch.zeros(layer.k, dtype=torch.long), 0,
                                       torch.qint8)
        mod.set_weight_bias(w, torch.randn(layer.k) if layer.bias else None)
        mod.scale, mod.zero_point = _SCALE, _ZP
        x = q_of(activation_shape(layer))
        return (lambda: act(mod(x))) if act else (lambda: mod(x))
    if layer.op == "linear":
        cls = nniq.LinearReLU if layer.fn == "relu" else nnq.Linear
        mod = cls(layer.c, layer.k, bias=layer.bias) if cls is nniq.LinearReLU else cls(layer.c, layer.k,
                                                                                         bias_=layer.bias)
        w = torch.quantize_per_tensor(torch.randn(layer.k, layer.c) * 0.1, 0.01, 0, torch.qint8)
        mod.set_weight_bias(w, torch.randn(layer.k) if layer.bias else None)
        mod.scale, mod.zero_point = _SCALE, _ZP
        x = q_of((layer.n * layer.m, layer.c))
        return (lambda: act(mod(x))) if act else (lambda: mod(x))
    if layer.op == "matmul":
        a, b = q_of((layer.n, layer.m, layer.c)), q_of((layer.n, layer.c, layer.k))
        return lambda: torch.ops.quantized.matmul(a, b, _SCALE, _ZP)
    if layer.op == "softmax":
        x = q_of(activation_shape(layer))
        return lambda: torch.ops.quantized.softmax(x, -1, _SCALE, _ZP)
    if layer.op == "norm":
        shape = activation_shape(layer)
        if layer.fn in ("batch", ""):
            if len(shape) != 4:
                shape = (layer.n, layer.c * layer.m, layer.in_h, layer.in_w)
            c = shape[1]
            x = q_of(shape)
            wt, bs, mean, var = torch.ones(c), torch.zeros(c), torch.zeros(c), torch.ones(c)
            return lambda: torch.ops.quantized.batch_norm2d(x, wt, bs, mean, var, 1e-5, _SCALE, _ZP)
        if layer.fn == "layer":
            if len(shape) == 4:
                shape = (layer.n, layer.in_h * layer.in_w * layer.m, layer.c)
            c = shape[-1]
            x, wt, bs = q_of(shape), torch.ones(c), torch.zeros(c)
            return lambda: torch.ops.quantized.layer_norm(x, [c], wt, bs, 1e-5, _SCALE, _ZP)
        raise NoKernel(f"{where}: norm kind {layer.fn!r} is unknown; use batch or layer")
    if layer.op == "eltwise":
        shape = activation_shape(layer)
        a = q_of(shape)
        if layer.fn in ("add", "mul", ""):
            b = q_of((1,) + shape[1:]) if layer.bias else q_of(shape)
            op = torch.ops.quantized.mul if layer.fn == "mul" else torch.ops.quantized.add
            return lambda: op(a, b, _SCALE, _ZP)
        f = _quantized_activation(layer.fn)
        if f is None:
            raise NoKernel(f"{where}: torch has no int8 cpu kernel for element-wise {layer.fn!r}")
        return lambda: f(a)
    if layer.op == "pool":
        mod = _pool_module(layer)
        x = q_of(activation_shape(layer))
        return lambda: mod(x)
    raise NoKernel(f"{where}: op {layer.op!r} has no int8 cpu kernel")  # pragma: no cover


def _int8_dynamic_linear(layer: LayerSpec) -> Callable[[], Any]:
    import torch
    import torch.ao.nn.quantized.dynamic as nnqd

    mod = nnqd.Linear(layer.c, layer.k, bias_=layer.bias)
    x = torch.randn(*activation_shape(layer))
    act = _float_activation(layer.fn) if layer.fn else None
    return (lambda: act(mod(x))) if act else (lambda: mod(x))


def _int8_cuda_kernel(layer: LayerSpec) -> Callable[[], Any]:
    import torch

    if layer.op != "linear":
        raise NoKernel(f"layer {layer.name or layer.op!r}: torch has an int8 cuda kernel for linear layers only "
                       f"(torch._int_mm), not for {layer.op}")
    rows = layer.n * layer.m
    if rows <= 16 or layer.c % 8 or layer.k % 8:
        raise NoKernel(f"layer {layer.name or 'linear'!r}: torch._int_mm needs more than 16 rows and c, k "
                       f"multiples of 8; got rows={rows}, c={layer.c}, k={layer.k}")
    x = torch.randint(-128, 127, (rows, layer.c), dtype=torch.int8, device="cuda")
    w = torch.randint(-128, 127, (layer.k, layer.c), dtype=torch.int8, device="cuda").t()
    return lambda: torch._int_mm(x, w)


# ---- the factory -----------------------------------------------------------------------------------
def make_kernel(layer: LayerSpec, device: str = "cpu", dtype: str = "fp32", seed: int = 0) -> Kernel:
    """A runnable kernel for ``layer`` on ``device``; raises `NoKernel` where the device has none."""
    import torch

    precision = precision_for(layer, device, dtype)
    torch.manual_seed(seed)
    with quiet_deprecations(), torch.inference_mode():
        if precision == "int8" and device == "cpu":
            run, sparse, notes = _int8_cpu_kernel(layer), False, ""
        elif precision == "int8":
            run, sparse, notes = _int8_cuda_kernel(layer), False, ""
        elif precision == "int8-dynamic":
            run, sparse, notes = _int8_dynamic_linear(layer), False, ""
        else:
            run, sparse, notes = _float_kernel(layer, device, precision)
    if layer.weight_density < 1.0 and not sparse and not notes and layer.has_weights:
        notes = "sparsity executed dense: torch has no faster kernel for it on this device"
    return Kernel(layer, device, precision, run, sparse, notes)


__all__ = ["PRECISIONS", "Kernel", "NoKernel", "activation_shape", "make_kernel", "precision_for"]
