"""Applying a `Policy` to a torch model, and the NetSpec of what the compressed model really runs.

`apply_policy` returns a new module: groups shrunk structurally (channels, heads), weight masks and
fake quantization on the layers that ask for them, token-dropping hooks for a ViT schedule, and
activation ranges calibrated when a batch is given; attention blocks with an ``attention_density``
below 1 get a static mask measured on that batch before tokens are dropped (so every block's map
covers all token positions) and before activation ranges are set (so they fit the masked network). The structure depends on the policy alone, so
``rebuild(space.build(choice), policy, input_shape, state_dict)`` restores an exported compressed model
exactly. `compressed_netspec` traces the compressed module (shapes, tokens) and reads each layer's
bits and sparsity from the layer itself, so accelerator models and lookup tables cost what runs.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from hwsearch.compress.attention_mask import (
    MaskedSoftmax,
    calibrate_attention,
    install_attention_masks,
    masked_softmaxes,
)
from hwsearch.compress.graph import PrunableLayer, analyse
from hwsearch.compress.modules import (
    COMPRESSED,
    QUANTIZED,
    QConv2d,
    QLinear,
    QMatMul,
    activation_quant_bypassed,
    calibrate,
)
from hwsearch.compress.policy import FLOAT_BITS, Policy
from hwsearch.compress.structural import kept_units, shrink
from hwsearch.compress.tokens import install_token_pruning
from hwsearch.errors import ConfigError
from hwsearch.estimators.counters import row_spread, trace_netspec
from hwsearch.ir import NetSpec
from hwsearch.spaces.ops import MatMul

POLICY_ATTR = "compression_policy"


def check_policy(policy: Policy, layers: list[PrunableLayer]) -> None:
    """Raise `ConfigError` when ``policy`` names unknown layers or asks a width it cannot set."""
    by_name = {layer.name: layer for layer in layers}
    unknown = sorted(set(policy.layers) - set(by_name))
    if unknown:
        raise ConfigError(f"policy names unknown layer(s) {unknown[:3]}; prunable layers are e.g. "
                          f"{[layer.name for layer in layers[:4]]} (see prunable_layers)")
    for name, lp in policy.layers.items():
        layer = by_name[name]
        if lp.attention_density < 1.0 and layer.unit != "heads":
            heads = [x.name for x in layers if x.unit == "heads" and x.leader]
            raise ConfigError(f"layer {name!r}: attention_density={lp.attention_density} applies to the qkv layer "
                              f"of an attention module, e.g. {heads[:2] or 'none in this model'}")
        if lp.keep >= 1.0 or layer.leader:
            continue
        if layer.group is None:
            raise ConfigError(f"layer {name!r}: keep={lp.keep} but its width is fixed ({layer.note})")
        lead = policy.layer(layer.group).keep
        if lp.keep != lead:
            raise ConfigError(f"layer {name!r}: keep={lp.keep} but its width follows group leader "
                              f"{layer.group!r} (keep={lead}); set keep on the leader only")


def _replace(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


def apply_policy(model: nn.Module, policy: Policy, input_shape: tuple[int, int, int],
                 calib: torch.Tensor | None = None) -> nn.Module:
    """A compressed copy of ``model`` under ``policy`` (``model`` itself is left untouched).

    ``calib`` is a calibration batch (N, C, H, W) for the activation ranges; without it, layers with
    quantized activations must get their ranges from `calibrate` or a loaded state dict before use.
    """
    input_shape = tuple(int(x) for x in input_shape)
    out = copy.deepcopy(model)
    layers, groups, dg = analyse(out, input_shape)
    check_policy(policy, layers)

    structural: dict[str, int] = {}
    masked_rows: dict[str, int] = {}
    for layer in layers:
        keep = policy.layer(layer.name).keep
        if not layer.leader or keep >= 1.0:
            continue
        n = kept_units(layer.units, keep, policy.round_to if layer.unit == "channels" else 1)
        (structural if layer.structural else masked_rows)[layer.name] = n
    out, failed = shrink(out, input_shape, structural, groups, dg, model)
    for name in failed:
        masked_rows[name] = structural[name]

    for layer in layers:
        lp = policy.layer(layer.name)
        rows = masked_rows.get(layer.name)
        if rows is None and lp.pattern == "dense" and lp.w_bits >= FLOAT_BITS and lp.a_bits >= FLOAT_BITS:
            continue
        old = out.get_submodule(layer.name)
        if rows is not None and layer.unit == "heads":
            rows = rows * old.out_features // layer.units  # heads -> qkv rows
        if isinstance(old, nn.Conv2d):
            new = QConv2d.from_conv(old, lp, policy.w_clip, policy.a_clip, layer.name, rows)
        else:
            new = QLinear.from_linear(old, lp, policy.w_clip, policy.a_clip, layer.name, rows)
        _replace(out, layer.name, new)

    if policy.attention_bits < FLOAT_BITS:
        for name, m in list(out.named_modules()):
            if isinstance(m, MatMul):
                _replace(out, name, QMatMul(policy.attention_bits, policy.a_clip, name))
    densities = {layer.name.rsplit(".", 1)[0]: policy.layer(layer.name).attention_density
                 for layer in layers if policy.layer(layer.name).attention_density < 1.0}
    if densities:
        with activation_quant_bypassed():
            rows = {x.name.rsplit(".", 1)[0]: x.k for x in trace_netspec(out, input_shape).layers if x.op == "softmax"}
        install_attention_masks(out, densities, rows)
        if calib is not None:
            calibrate_attention(out, calib)
    if policy.tokens:
        with activation_quant_bypassed():
            install_token_pruning(out, policy.tokens, input_shape)
    setattr(out, POLICY_ATTR, policy)
    if calib is not None and policy.needs_calibration:
        calibrate(out, calib)
    return out


def rebuild(model: nn.Module, policy: Policy, input_shape: tuple[int, int, int],
            state_dict: Mapping[str, Any]) -> nn.Module:
    """The exported compressed model: ``apply_policy`` on a freshly built ``model``, then its weights."""
    out = apply_policy(model, policy, input_shape)
    try:
        out.load_state_dict(state_dict, strict=True)
    except RuntimeError as e:
        first = str(e).strip().splitlines()
        raise ConfigError(f"the saved weights do not fit the network rebuilt from its policy: "
                          f"{first[1].strip() if len(first) > 1 else first[0]}") from None
    return out


def compressed_netspec(model: nn.Module, input_shape: tuple[int, int, int], policy: Policy | None = None,
                       batch: int = 1, name: str = "") -> NetSpec:
    """NetSpec of what runs: traced shapes (pruned channels, heads, tokens) and each layer's
    ``w_bits``/``a_bits``/``density``/``nm``/``tile`` (layers without a quantizer at the width of the layer
    before them; an attention block's QK^T, softmax and AV at its mask's density), and the
    ``density_std`` measured on the masks (a linear layer's over its output rows, an attention mask's
    over its query rows; 0 for a mask not yet measured); with ``policy``, ``model`` is compressed first."""
    if policy is not None:
        applied = getattr(model, POLICY_ATTR, None)
        if applied is not None and applied != policy:
            raise ConfigError("the model is already compressed under another policy; pass policy=None")
        if applied is None:
            model = apply_policy(model, policy, input_shape)
    with activation_quant_bypassed():
        net = trace_netspec(model, tuple(input_shape), batch, name)
    # The masked softmax and the two products of its attention module: density and row spread.
    sparse: dict[str, dict[str, float]] = {}
    for name, soft in masked_softmaxes(model).items():
        parent = name.rsplit(".", 1)[0]
        sparse[name] = _combined(soft, model.get_submodule(parent))
        for child, m in model.get_submodule(parent).named_children():
            if isinstance(m, MatMul):
                sparse[f"{parent}.{child}"] = sparse[name]
    layers = []
    for layer in net.layers:
        module = model.get_submodule(layer.name) if layer.op in ("conv", "dwconv", "linear", "matmul") else None
        layer = layer.with_(**module.describe()) if isinstance(module, QUANTIZED) else layer
        layers.append(layer.with_(**sparse[layer.name]) if layer.name in sparse else layer)
    return NetSpec(tuple(layers), net.input_shape, name).with_inherited_activation_bits()


def _combined(soft: MaskedSoftmax, attn: nn.Module) -> dict[str, float]:
    """Density fields of a compression mask's map, combined with the attention module's own static
    mask (a causal one) where it has one."""
    own = getattr(attn, "static_density", None)
    if not callable(own):
        return {"density": soft.kept_share(), "density_std": soft.row_spread()}
    static = own(soft.tokens)
    if soft.measured:
        # What runs is the intersection: a mask measured on causal maps ranks the never-attended upper
        # triangle last, so the two are far from independent and the product would undercount.
        keep = (soft.mask > 0.5) & attn.static_keep(soft.tokens).to(soft.mask.device)
        density = float(keep.sum()) / keep.numel()
        return {"density": density, "density_std": row_spread(keep.double().mean(dim=-1), density)}
    # Planned (no data yet): the policy's share taken of every row the static mask keeps, so the rows'
    # shares, and their spread, scale by it.
    share = soft.kept_share()
    density = share * static["density"]
    return {"density": density, "density_std": min(share * static["density_std"],
                                                   math.sqrt(density * (1.0 - density)))}


def nonzero_params(model: nn.Module) -> int:
    """Parameters of ``model`` as computed with: masked weights count only where the mask is 1."""
    total = 0
    for m in model.modules():
        for pname, p in m.named_parameters(recurse=False):
            if pname == "weight" and isinstance(m, COMPRESSED) and m.masked:
                total += int(m.weight_mask.sum())
            else:
                total += p.numel()
    return total


__all__ = ["POLICY_ATTR", "apply_policy", "check_policy", "compressed_netspec", "nonzero_params", "rebuild"]
