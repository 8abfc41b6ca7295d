"""Counting what a torch module really computes: its NetSpec traced by forward hooks.

`trace_netspec` runs one forward pass and turns every compute module it meets into a `LayerSpec`, in
execution order. It is the ground truth that the spaces' analytic `to_netspec` is tested against and
the way a compressed (pruned) model gets the NetSpec of what really runs. Written here rather than
taken from thop/fvcore because those count FLOPs per module type, not our LayerSpec vocabulary, and
silently skip modules they do not know; this tracer refuses a parametrised module it cannot describe.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from hwsearch.errors import SpecError
from hwsearch.ir import LayerSpec, NetSpec
from hwsearch.spaces.ops import Add, AddParam, MatMul, Mul

ACTIVATIONS: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.ReLU6: "relu6",
    nn.Hardswish: "hswish",
    nn.Hardsigmoid: "hsigmoid",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
    nn.Sigmoid: "sigmoid",
}
# Modules that move or reshape data without arithmetic worth costing.
PASSIVE = (nn.Identity, nn.Dropout, nn.Flatten, nn.Unflatten, nn.Sequential, nn.ModuleList, nn.ModuleDict)


def _pair(v: int | tuple[int, ...]) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else (int(v[0]), int(v[1]))


def _token_geometry(shape: torch.Size) -> dict[str, int]:
    """n, c, in_h, in_w, m of an activation of shape (N, C, H, W), (N, T, C) or (N, C)."""
    if len(shape) == 4:
        return {"n": shape[0], "c": shape[1], "in_h": shape[2], "in_w": shape[3]}
    if len(shape) == 3:
        return {"n": shape[0], "m": shape[1], "c": shape[2]}
    if len(shape) == 2:
        return {"n": shape[0], "c": shape[1]}
    raise SpecError(f"cannot describe an activation of shape {tuple(shape)}")


def _describe(module: nn.Module, inputs: tuple, output: torch.Tensor) -> LayerSpec | None:
    x = inputs[0] if inputs else None
    if isinstance(module, nn.Conv2d):
        if module.padding_mode != "zeros" or isinstance(module.padding, str):
            raise SpecError(f"{type(module).__name__} with padding={module.padding!r} is not supported")
        ph, pw = _pair(module.padding)
        (r, s), (sh, sw) = _pair(module.kernel_size), _pair(module.stride)
        if ph != pw or sh != sw or _pair(module.dilation) != (1, 1):
            raise SpecError(f"conv {module} needs square padding/stride and no dilation")
        depthwise = module.groups == module.in_channels and module.groups > 1
        return LayerSpec(
            "dwconv" if depthwise else "conv", n=x.shape[0], c=module.in_channels, k=module.out_channels,
            in_h=x.shape[2], in_w=x.shape[3], r=r, s=s, stride=sh, pad=ph, groups=module.groups,
            bias=module.bias is not None,
        )
    if isinstance(module, nn.Linear):
        m = math.prod(x.shape[1:-1]) if x.dim() > 2 else 1
        return LayerSpec("linear", n=x.shape[0], m=m, c=module.in_features, k=module.out_features,
                         bias=module.bias is not None)
    if isinstance(module, MatMul):
        a, b = inputs
        return LayerSpec("matmul", n=math.prod(a.shape[:-2]), m=a.shape[-2], c=a.shape[-1], k=b.shape[-1])
    if isinstance(module, nn.Softmax):
        return LayerSpec("softmax", n=math.prod(x.shape[:-2]) if x.dim() > 2 else 1,
                         m=x.shape[-2] if x.dim() > 1 else 1, k=x.shape[-1])
    if isinstance(module, nn.BatchNorm2d):
        return LayerSpec("norm", fn="batch", bias=module.affine, **_token_geometry(x.shape))
    if isinstance(module, nn.LayerNorm):
        return LayerSpec("norm", fn="layer", bias=module.elementwise_affine, **_token_geometry(x.shape))
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        if _pair(module.output_size) != (1, 1):
            raise SpecError(f"{module} is supported only with output size 1")
        fn = "avg" if isinstance(module, nn.AdaptiveAvgPool2d) else "max"
        return LayerSpec("pool", fn=fn, n=x.shape[0], c=x.shape[1], in_h=x.shape[2], in_w=x.shape[3],
                         r=x.shape[2], s=x.shape[3])
    if isinstance(module, (nn.AvgPool2d, nn.MaxPool2d)):
        (r, s), (sh, _), (ph, _) = _pair(module.kernel_size), _pair(module.stride), _pair(module.padding)
        fn = "avg" if isinstance(module, nn.AvgPool2d) else "max"
        return LayerSpec("pool", fn=fn, n=x.shape[0], c=x.shape[1], in_h=x.shape[2], in_w=x.shape[3],
                         r=r, s=s, stride=sh, pad=ph)
    if isinstance(module, (Add, Mul)):
        return LayerSpec("eltwise", fn="add" if isinstance(module, Add) else "mul",
                         **_token_geometry(output.shape))
    if isinstance(module, AddParam):
        return LayerSpec("eltwise", fn="add", bias=True, **_token_geometry(output.shape))
    for kind, fn in ACTIVATIONS.items():
        if type(module) is kind:
            return LayerSpec("eltwise", fn=fn, **_token_geometry(output.shape))
    return None


def trace_netspec(model: nn.Module, input_shape: tuple[int, int, int], batch: int = 1,
                  name: str = "") -> NetSpec:
    """Run one forward pass on zeros and return the compute layers met, in execution order.

    An attention module with a static mask of its own (a causal one) says so with a
    ``static_density(tokens)`` method giving the ``density``/``density_std`` of its map; its products
    and softmax are recorded at them (the map's query rows are the layer's ``m``)."""
    layers: list[LayerSpec] = []
    handles = []
    masked_by = {f"{parent}.{child}" if parent else child: owner
                 for parent, owner in model.named_modules() if callable(getattr(owner, "static_density", None))
                 for child, m in owner.named_children() if isinstance(m, (MatMul, nn.Softmax))}

    def hook_for(qualname: str) -> Callable:
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            spec = _describe(module, inputs, output)
            if spec is not None and qualname in masked_by:
                spec = spec.with_(**masked_by[qualname].static_density(spec.m))
            if spec is not None:
                layers.append(spec.with_(name=qualname))

        return hook

    for qualname, module in model.named_modules():
        is_leaf = not any(True for _ in module.children())
        known = _describe_kind(module)
        if known:
            handles.append(module.register_forward_hook(hook_for(qualname)))
        elif is_leaf and not isinstance(module, PASSIVE) and any(True for _ in module.parameters(recurse=False)):
            for h in handles:
                h.remove()
            raise SpecError(f"module {qualname!r} ({type(module).__name__}) has parameters but no LayerSpec "
                            "description; build it from modules the tracer knows")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
            model(torch.zeros(batch, *input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return NetSpec(tuple(layers), tuple(input_shape), name)


def _describe_kind(module: nn.Module) -> bool:
    kinds = (nn.Conv2d, nn.Linear, MatMul, nn.Softmax, nn.BatchNorm2d, nn.LayerNorm, nn.AdaptiveAvgPool2d,
             nn.AdaptiveMaxPool2d, nn.AvgPool2d, nn.MaxPool2d, Add, Mul, AddParam)
    return isinstance(module, kinds) or type(module) in ACTIVATIONS


def row_spread(shares: torch.Tensor, density: float) -> float:
    """`LayerSpec.density_std` of a mask whose rows keep ``shares`` (any shape, one entry per row)
    at the layer's ``density``: their standard deviation, clamped to the IR's bound sqrt(d(1-d))."""
    rows = shares.detach().double().reshape(-1)
    if rows.numel() < 2:
        return 0.0
    # The population spread (not the sample one): the rows are the whole matrix, not a draw from it.
    std = float(rows.std(unbiased=False))
    most = math.sqrt(max(0.0, float(density) * (1.0 - float(density))))
    # Exact shares of mean d never exceed the bound; rounding, or a mean a little off d, may.
    return min(std, most) if math.isfinite(std) else 0.0


def count_macs(model: nn.Module, input_shape: tuple[int, int, int], batch: int = 1) -> int:
    """Dense multiply-accumulates of one forward pass, counted by forward hooks."""
    return trace_netspec(model, input_shape, batch).macs


def count_params(model: nn.Module) -> int:
    """Number of parameters of ``model`` (shared tensors counted once)."""
    return sum(p.numel() for p in model.parameters())
