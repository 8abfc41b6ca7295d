"""Structural pruning: output channels of coupled groups (via torch-pruning) and whole attention heads.

Which channels or heads go is decided by magnitude (L2 norm over every weight of the group a unit
touches); how many go is a function of the policy alone (`kept_units`), so pruning a fresh model
under the same policy gives the same shapes and a saved state dict loads into it. After shrinking,
the model is run once and must still give an output of the original shape; if torch-pruning produced
a model that fails, the groups are redone one by one and any group that breaks the model is left
whole and reported, for the caller to mask instead.
"""

from __future__ import annotations

import copy
import math

import torch
import torch_pruning as tp
from torch import nn

from hwsearch.compress.graph import Group, coupling_groups, dependency_graph


def kept_units(units: int, keep: float, round_to: int = 1) -> int:
    """How many of ``units`` channels (or heads) survive a keep ratio, rounded to multiples of
    ``round_to`` where the layer is at least that wide (never fewer than one unit, or one multiple)."""
    if keep >= 1.0:
        return units
    if round_to > 1 and units >= round_to:
        n = max(round_to, int(math.floor(keep * units / round_to + 0.5)) * round_to)
        return min(n, units)
    return min(units, max(1, int(math.floor(keep * units + 0.5))))


def _output_shape(model: nn.Module, input_shape: tuple[int, int, int]) -> tuple[int, ...]:
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
            return tuple(model(torch.zeros(2, *input_shape, device=device)).shape)
    finally:
        model.train(was_training)


@torch.no_grad()
def prune_heads(attn: nn.Module, keep: int) -> None:
    """Remove all but the ``keep`` heads of largest weight norm from an attention module, in place."""
    h, d = attn.heads, attn.head_dim
    if keep >= h:
        return
    qkv, proj = attn.qkv, attn.proj
    w = qkv.weight.reshape(3, h, d, -1)
    score = w.pow(2).sum(dim=(0, 2, 3)) + proj.weight.reshape(proj.out_features, h, d).pow(2).sum(dim=(0, 2))
    heads = torch.sort(torch.topk(score, keep).indices).values
    rows = (torch.arange(3)[:, None, None] * h * d + heads[None, :, None] * d + torch.arange(d)[None, None, :])
    rows = rows.reshape(-1).to(qkv.weight.device)
    cols = (heads[:, None] * d + torch.arange(d)[None, :]).reshape(-1).to(proj.weight.device)
    new_qkv = nn.Linear(qkv.in_features, len(rows), qkv.bias is not None,
                        device=qkv.weight.device, dtype=qkv.weight.dtype)
    new_qkv.weight.copy_(qkv.weight[rows])
    if qkv.bias is not None:
        new_qkv.bias.copy_(qkv.bias[rows])
    new_proj = nn.Linear(len(cols), proj.out_features, proj.bias is not None,
                         device=proj.weight.device, dtype=proj.weight.dtype)
    new_proj.weight.copy_(proj.weight[:, cols])
    if proj.bias is not None:
        new_proj.bias.copy_(proj.bias)
    new_qkv.train(qkv.training)
    new_proj.train(proj.training)
    attn.qkv, attn.proj, attn.heads = new_qkv, new_proj, keep


def _prune_group(dg: tp.DependencyGraph, group: Group, keep: int) -> None:
    module, handler = group.root
    units = int(dg.get_out_channels(module))
    if keep >= units:
        return
    full = dg.get_pruning_group(module, handler, list(range(units)))
    imp = tp.importance.GroupMagnitudeImportance(p=2)(full)
    drop = torch.argsort(imp, stable=True)[: units - keep].tolist()
    dg.get_pruning_group(module, handler, sorted(drop)).prune()


def shrink(model: nn.Module, input_shape: tuple[int, int, int], keep: dict[str, int], groups: list[Group],
           dg: tp.DependencyGraph, pristine: nn.Module) -> tuple[nn.Module, list[str]]:
    """Shrink ``model`` in place so group leader ``name`` keeps ``keep[name]`` units.

    ``groups`` and ``dg`` describe ``model`` as it is; ``pristine`` is an untouched original to restart
    from if the shrunk model fails. Returns the shrunk model (a new module when groups had to be
    retried one by one) and the leaders whose groups could not be shrunk without breaking it.
    """
    by_leader = {g.leader: g for g in groups}
    wanted = {name: n for name, n in keep.items() if n < by_leader[name].units}
    if not wanted:
        return model, []
    expected = _output_shape(model, input_shape)
    try:
        _shrink_all(model, dg, by_leader, wanted)
        if _output_shape(model, input_shape) == expected:
            return model, []
    except Exception:  # noqa: BLE001 - any failure here means: redo group by group below
        pass
    failed: list[str] = []
    current = copy.deepcopy(pristine)
    for name in wanted:
        trial = copy.deepcopy(current)
        try:
            trial_dg = dependency_graph(trial, input_shape)
            trial_groups = {g.leader: g for g in coupling_groups(trial, input_shape, trial_dg)}
            _shrink_all(trial, trial_dg, trial_groups, {name: wanted[name]})
            ok = _output_shape(trial, input_shape) == expected
        except Exception:  # noqa: BLE001
            ok = False
        if ok:
            current = trial
        else:
            failed.append(name)
    return current, failed


def _shrink_all(model: nn.Module, dg: tp.DependencyGraph, groups: dict[str, Group], wanted: dict[str, int]) -> None:
    for name, k in wanted.items():
        if groups[name].unit == "channels":
            _prune_group(dg, groups[name], k)
    modules = dict(model.named_modules())
    for name, k in wanted.items():
        if groups[name].unit == "heads":
            prune_heads(modules[name.rsplit(".", 1)[0]], k)


__all__ = ["kept_units", "prune_heads", "shrink"]
