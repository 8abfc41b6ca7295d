"""Which layers a policy may address, and how their widths are coupled.

`prunable_layers` lists every conv/linear layer in execution order with its traced `LayerSpec` and
the coupled group its output width belongs to. Groups come from torch-pruning's dependency graph
(DepGraph), which follows residual adds, depthwise convs, SE scaling, norms and flattening, so that
pruning a group's channels keeps every consumer consistent. A group is led by its first layer in
execution order; the leader's ``keep`` sets the width of the whole group.

Attention modules are handled here rather than by DepGraph's head options, because those prune
per-head widths unless the model's own head count is rewritten too: an attention module (a module
with ``qkv`` and ``proj`` linear layers and integer ``heads`` and ``head_dim`` attributes, qkv rows
laid out as (3, heads, head_dim), as `hwsearch.spaces.blocks.Attention` and timm do) forms a group of
unit "heads" led by its ``qkv`` layer. A group is not shrunk structurally, and says why in ``note``,
when it feeds the network output, or passes through an op DepGraph cannot prune safely (a bare
parameter it was not told about, a slice, an unbind, a custom op, a grouped conv such as FBNet's
g2 blocks with their channel shuffle); such a group gets a channel mask on its leader instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from hwsearch.errors import SpecError
from hwsearch.estimators.counters import trace_netspec
from hwsearch.ir import LayerSpec, NetSpec
from hwsearch.spaces.conv import declared_kernels
from hwsearch.spaces.ops import AddParam

_SAFE_OPS = {
    tp.ops.OPTYPE.CONV, tp.ops.OPTYPE.BN, tp.ops.OPTYPE.LINEAR, tp.ops.OPTYPE.DEPTHWISE_CONV,
    tp.ops.OPTYPE.ELEMENTWISE, tp.ops.OPTYPE.LN, tp.ops.OPTYPE.RESHAPE, tp.ops.OPTYPE.CONCAT,
    tp.ops.OPTYPE.SPLIT,
}
NM_M = 4  # the M of the N:M patterns advertised in `PrunableLayer.patterns` (2:4 and 1:4)


@dataclass(frozen=True)
class PrunableLayer:
    """One conv/linear layer a policy may address, with the group its output width follows.

    ``group`` names the group's leader (the layer whose ``keep`` applies to the group); ``unit`` is
    ``channels`` or ``heads``, ``units`` how many the group has now; ``structural`` says whether
    ``keep < 1`` physically shrinks the group (else: a channel mask on the leader, reason in ``note``);
    ``group`` is ``None`` where the width is fixed (the classifier output). ``patterns`` are the weight
    patterns the layer accepts (``nm`` only when its input channels per group divide by 4).
    """

    name: str
    index: int
    spec: LayerSpec
    group: str | None
    unit: str
    units: int
    structural: bool
    patterns: tuple[str, ...]
    note: str = ""

    @property
    def kind(self) -> str:
        """``conv``, ``dwconv`` or ``linear``."""
        return self.spec.op

    @property
    def leader(self) -> bool:
        """Whether this layer's ``keep`` decides its group's width."""
        return self.group == self.name


@dataclass
class Group:
    """A set of layers whose output widths are pruned together (internal to `hwsearch.compress`)."""

    leader: str
    members: list[str]
    unit: str
    units: int
    structural: bool
    note: str = ""
    root: Any = None  # (module, pruning function) DepGraph starts from
    modules: list[nn.Module] = field(default_factory=list)


def attention_modules(model: nn.Module) -> dict[str, nn.Module]:
    """Attention modules whose heads can be removed whole (see the module docstring), by qualname."""
    out = {}
    for name, m in model.named_modules():
        if isinstance(getattr(m, "qkv", None), nn.Linear) and isinstance(getattr(m, "proj", None), nn.Linear) \
                and isinstance(getattr(m, "heads", None), int) and isinstance(getattr(m, "head_dim", None), int) \
                and m.qkv.out_features == 3 * m.heads * m.head_dim and m.proj.in_features == m.heads * m.head_dim:
            out[name] = m
    return out


def unwrapped_parameters(model: nn.Module) -> dict[nn.Parameter, int]:
    """Bare parameters DepGraph must prune along a channel dim: `AddParam` embeddings."""
    out = {}
    for m in model.modules():
        if isinstance(m, AddParam):
            out[m.weight] = 2 if m.weight.dim() == 3 else 1
    return out


def dependency_graph(model: nn.Module, input_shape: tuple[int, int, int]) -> tp.DependencyGraph:
    """DepGraph of ``model`` traced on one zero input."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    was_training = model.training
    model.eval()
    try:
        # A cropped kernel is a slice of the weight, which DepGraph cannot follow.
        with declared_kernels():
            return tp.DependencyGraph().build_dependency(
                model, example_inputs=torch.zeros(1, *input_shape, device=device),
                unwrapped_parameters=list(unwrapped_parameters(model).items()),
            )
    finally:
        model.train(was_training)


def _output_layer(model: nn.Module, input_shape: tuple[int, int, int]) -> nn.Module | None:
    """The conv/linear layer whose output is the network's output, if one is."""
    seen: dict[int, tuple[nn.Module, torch.Tensor]] = {}  # the tensor is kept so its id is not reused
    handles = [m.register_forward_hook(lambda mod, i, o: seen.__setitem__(id(o), (mod, o)))
               for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
            out = model(torch.zeros(1, *input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    hit = seen.get(id(out))
    return hit[0] if hit is not None else None


def coupling_groups(model: nn.Module, input_shape: tuple[int, int, int],
                    dg: tp.DependencyGraph | None = None, net: NetSpec | None = None) -> list[Group]:
    """Every group of coupled output widths of ``model``'s conv/linear layers, in execution order."""
    names = {m: n for n, m in model.named_modules()}
    net = net or trace_netspec(model, input_shape)
    order = {layer.name: i for i, layer in enumerate(net.layers)}
    attn = attention_modules(model)
    qkv_layers = {a.qkv for a in attn.values()}
    output_layer = _output_layer(model, input_shape)
    dg = dg or dependency_graph(model, input_shape)
    registered = set(unwrapped_parameters(model))
    groups: list[Group] = []
    for g in dg.get_all_groups(ignored_layers=list(qkv_layers), root_module_types=(nn.Conv2d, nn.Linear)):
        members, unsafe, modules = [], [], []
        for dep, _ in g:
            node = dep.target
            if node.type == tp.ops.OPTYPE.PARAMETER:
                if node.module not in registered:
                    unsafe.append("a bare parameter")
                continue
            if node.type not in _SAFE_OPS:
                unsafe.append(f"op {node.type.name.lower()} ({getattr(node, 'name', '') or type(node.module).__name__})")
            elif isinstance(node.module, nn.Conv2d) and 1 < node.module.groups < node.module.in_channels:
                # Channels of a grouped conv must go evenly from every group, and a channel shuffle
                # next to it permutes them; DepGraph's per-layer index mapping gets this wrong.
                unsafe.append(f"grouped conv {names.get(node.module, '?')!r} (groups={node.module.groups})")
            if isinstance(node.module, (nn.Conv2d, nn.Linear)) and dg.is_out_channel_pruning_fn(dep.handler):
                if node.module in names and names[node.module] not in members:
                    members.append(names[node.module])
                    modules.append(node.module)
        if not members:
            continue
        members.sort(key=lambda n: order.get(n, len(order)))
        leader_module = modules[[names[m] for m in modules].index(members[0])]
        units = int(dg.get_out_channels(leader_module))
        note, structural = "", True
        if output_layer is not None and output_layer in modules:
            note, structural = "feeds the network output", False
        elif unsafe:
            note, structural = f"passes through {unsafe[0]} that torch-pruning cannot shrink safely", False
        groups.append(Group(members[0], members, "channels", units, structural, note,
                            (g[0][0].target.module, g[0][0].handler), modules))
    for name, a in attn.items():
        groups.append(Group(f"{name}.qkv", [f"{name}.qkv"], "heads", a.heads, True, "", None, [a.qkv]))
    groups.sort(key=lambda grp: order.get(grp.leader, len(order)))
    return groups


def prunable_layers(model: nn.Module, input_shape: tuple[int, int, int]) -> list[PrunableLayer]:
    """The conv/linear layers of ``model`` a policy may address, in execution order (the RL env's walk)."""
    return analyse(model, input_shape)[0]


def analyse(model: nn.Module, input_shape: tuple[int, int, int]
            ) -> tuple[list[PrunableLayer], list[Group], tp.DependencyGraph]:
    """`prunable_layers`, plus the groups and dependency graph they came from (for pruning the same model)."""
    net = trace_netspec(model, input_shape)
    dg = dependency_graph(model, input_shape)
    groups = coupling_groups(model, input_shape, dg, net)
    group_of = {m: grp for grp in groups for m in grp.members}
    out: list[PrunableLayer] = []
    for layer in net.layers:
        if not layer.has_weights:
            continue
        grp = group_of.get(layer.name)
        if grp is not None and grp.note == "feeds the network output":
            grp = None
        patterns = ("dense", "fine") + (("nm",) if (layer.c // layer.groups) % NM_M == 0 else ())
        out.append(PrunableLayer(
            name=layer.name, index=len(out), spec=layer,
            group=grp.leader if grp else None,
            unit=grp.unit if grp else "channels",
            units=grp.units if grp else layer.k,
            structural=grp.structural if grp else False,
            patterns=patterns,
            note=grp.note if grp else "width fixed: feeds the network output",
        ))
    if not out:
        raise SpecError("the model has no conv or linear layer a policy could address")
    return out, groups, dg


__all__ = ["Group", "NM_M", "PrunableLayer", "analyse", "attention_modules", "coupling_groups", "dependency_graph",
           "prunable_layers", "unwrapped_parameters"]
