"""A trained torch network as the environment's `CompressionProblem`: its slots, prices and accuracy.

`hwsearch.compress.apply_policy` is the reference way to compress a model, but it rebuilds a
dependency graph and physically shrinks every group (seconds per policy), and the agent's budget
clipping prices hundreds of candidate policies per episode. So this module prices and evaluates
without shrinking, and is tested against `apply_policy` / `compressed_netspec`:

- Pricing: a few probe policies are shrunk once, each pruning a different subset of the groups
  (a binary code per group); which traced layer fields (batch x heads, input / output channels,
  groups) change in which probes tells which group each field follows. A state is then priced by
  scaling those fields, in numpy for the analytic metrics and as exact `LayerSpec`s for predictors.
- Accuracy: removing a group's channels (or an attention head) changes the network exactly as zeroing
  the matching input columns of the group's consumers does, as long as no norm mixes channels of the
  group (LayerNorm does; such groups are left unpruned). Channels go by torch-pruning's group
  magnitude, heads by qkv + proj weight norm, as in `apply_policy`; weights are fake-quantized with
  `hwsearch.compress.quant`. Quantized activations need calibration, and static attention masks
  are measured on data, so those states go through `apply_policy` itself.
- Attention density: a mask keeps `hwsearch.compress.attention_mask.kept_entries` of its map, a number that depends only on the
  density, the heads kept and the tokens, so its QK^T, softmax and AV layers are priced without data.
- A language model (labels at every position, `hwsearch.lm_eval.is_sequence`) is scored by the mean
  log-likelihood of the next token, minus the log of its perplexity, in place of top-1 accuracy:
  perplexity is what such a model is judged by, and the log keeps the reward's scale that of the
  loss (a difference of nats per token). The environment's ``accuracy`` is then that score.
- BatchNorm statistics are re-estimated on a fixed calibration batch after compressing (EagleEye's
  adaptive BN): without it a pruned network's accuracy says little about the same network after
  fine-tuning. No weight is trained, so this is still the reward "without fine-tuning".
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch_pruning as tp
from torch import nn

from hwsearch.compress import LayerPolicy, Policy, apply_policy, compressed_netspec
from hwsearch.compress.graph import Group, analyse, attention_modules
from hwsearch.compress.quant import fake_quant_weight, weight_scale
from hwsearch.errors import SpecError
from hwsearch.estimators.counters import trace_netspec
from hwsearch.ir import NetSpec
from hwsearch.lm_eval import lm_score
from hwsearch.search.amc.budget import State
from hwsearch.search.amc.env import FLOAT_BITS, Slot
from hwsearch.train import scores

if TYPE_CHECKING:
    from hwsearch.search.amc.trained_cache import TrainedNetwork

SCALED_FIELDS = ("n", "c", "k", "groups")
_OPS = ("conv", "dwconv", "linear", "matmul", "softmax", "norm", "eltwise", "pool")


@dataclass(frozen=True)
class _ColumnMask:
    """Input columns of one consumer layer that belong to each unit of a group."""

    module: str
    columns: tuple[tuple[int, ...], ...]  # per unit (root index)


@dataclass(frozen=True)
class _GroupMask:
    """How to remove ``n`` units of one group by zeroing weights: drop order and consumer columns."""

    leader: str
    units: int
    drop_order: tuple[int, ...]
    consumers: tuple[_ColumnMask, ...]


def _channel_masks(model: nn.Module, groups: list[Group], dg: tp.DependencyGraph
                   ) -> tuple[dict[str, _GroupMask], dict[str, str]]:
    """Masks for every structural channel group without a LayerNorm, and why other groups have none."""
    names = {m: n for n, m in model.named_modules()}
    masks: dict[str, _GroupMask] = {}
    why: dict[str, str] = {}
    for group in groups:
        if group.unit != "channels":
            continue
        if not group.structural:
            why[group.leader] = group.note
            continue
        module, handler = group.root
        full = dg.get_pruning_group(module, handler, list(range(group.units)))
        if any(isinstance(dep.target.module, (nn.LayerNorm, nn.GroupNorm)) for dep, _ in full):
            why[group.leader] = "a LayerNorm normalises over this width, so pruning it needs re-normalising"
            continue
        imp = tp.importance.GroupMagnitudeImportance(p=2)(full)
        order = tuple(int(i) for i in torch.argsort(imp, stable=True).tolist())
        consumers = []
        for item in full:
            dep, idxs = item.dep, item.idxs
            target = dep.target.module
            if not isinstance(target, (nn.Conv2d, nn.Linear)) or not dg.is_in_channel_pruning_fn(dep.handler):
                continue
            if isinstance(target, nn.Conv2d) and target.groups != 1:
                continue
            cols: list[list[int]] = [[] for _ in range(group.units)]
            for idx, root in zip(idxs, item.root_idxs, strict=True):
                cols[int(root)].append(int(idx))
            consumers.append(_ColumnMask(names[target], tuple(tuple(c) for c in cols)))
        masks[group.leader] = _GroupMask(group.leader, group.units, order, tuple(consumers))
    return masks, why


def _head_masks(model: nn.Module) -> dict[str, _GroupMask]:
    """Masks removing whole attention heads: the matching input columns of ``proj``."""
    out = {}
    for name, attn in attention_modules(model).items():
        h, d = attn.heads, attn.head_dim
        w = attn.qkv.weight.detach().reshape(3, h, d, -1)
        score = w.pow(2).sum(dim=(0, 2, 3)) + attn.proj.weight.detach().reshape(-1, h, d).pow(2).sum(dim=(0, 2))
        order = tuple(int(i) for i in torch.argsort(score, stable=True).tolist())
        cols = tuple(tuple(range(j * d, (j + 1) * d)) for j in range(h))
        out[f"{name}.qkv"] = _GroupMask(f"{name}.qkv", h, order, (_ColumnMask(f"{name}.proj", cols),))
    return out


@dataclass(frozen=True)
class PriceTemplate:
    """Which group each scalable field of each traced layer follows (-1: none), found by probing."""

    base: NetSpec
    groups: tuple[str, ...]     # group leaders, in the order of the dependency columns
    units: tuple[int, ...]
    deps: dict[str, np.ndarray]  # field -> (layers,) group index or -1


def derive_template(model: nn.Module, input_shape: tuple[int, int, int],
                    groups: dict[str, int]) -> tuple[PriceTemplate, list[str]]:
    """Probe ``groups`` (leader -> units) with binary-coded policies through `apply_policy`; returns
    the template and the leaders whose pruning changed no shape (masked, not shrunk: left out)."""
    base = trace_netspec(model, input_shape)
    leaders = [g for g, u in groups.items() if u >= 2]
    codes = {g: i + 1 for i, g in enumerate(leaders)}
    rounds = max(1, len(leaders).bit_length())
    probes: list[NetSpec] = []
    for b in range(rounds):
        keep = {g: LayerPolicy(keep=(groups[g] // 2) / groups[g]) for g in leaders if codes[g] >> b & 1}
        probes.append(compressed_netspec(apply_policy(model, Policy(keep, round_to=1), input_shape), input_shape))
    by_code = {c: g for g, c in codes.items()}
    deps = {f: np.full(len(base.layers), -1, dtype=np.int64) for f in SCALED_FIELDS}
    for li, layer in enumerate(base.layers):
        for probe in probes:
            if len(probe.layers) != len(base.layers) or probe.layers[li].name != layer.name:
                raise SpecError(f"pruning changed the layer sequence at {layer.name!r}; cannot price policies")
        for f in SCALED_FIELDS:
            vals = [getattr(p.layers[li], f) for p in probes]
            code = sum(1 << b for b, v in enumerate(vals) if v != getattr(layer, f))
            if code == 0:
                continue
            g = by_code.get(code)
            ok = g is not None and all(
                v == (getattr(layer, f) * (groups[g] // 2) // groups[g] if code >> b & 1 else getattr(layer, f))
                for b, v in enumerate(vals))
            if not ok:
                raise SpecError(f"layer {layer.name!r} field {f} does not follow a single pruned group; "
                                "cannot price policies for this network")
            deps[f][li] = leaders.index(g)
    used = {int(i) for d in deps.values() for i in d if i >= 0}
    dropped = [g for i, g in enumerate(leaders) if i not in used]
    keep_idx = [i for i in range(len(leaders)) if i in used]
    remap = np.full(len(leaders) + 1, -1, dtype=np.int64)
    remap[keep_idx] = np.arange(len(keep_idx))
    deps = {f: np.where(d >= 0, remap[d], -1) for f, d in deps.items()}
    kept = [leaders[i] for i in keep_idx]
    return PriceTemplate(base, tuple(kept), tuple(groups[g] for g in kept), deps), dropped


class TorchProblem:
    """A trained network + evaluation data, implementing `CompressionProblem` without shrinking."""

    def __init__(self, model: nn.Module, input_shape: tuple[int, int, int], x_val: torch.Tensor,
                 y_val: torch.Tensor, x_test: torch.Tensor | None = None, y_test: torch.Tensor | None = None,
                 calib: torch.Tensor | None = None, round_to: int = 8, w_clip: str = "minmax",
                 recalibrate_bn: bool = True) -> None:
        self.model = model.eval()
        self.input_shape = tuple(int(x) for x in input_shape)
        self.data = {"val": (x_val, y_val)}
        if x_test is not None and y_test is not None:
            self.data["test"] = (x_test, y_test)
        self.calib = calib if calib is not None else x_val[:256]
        self.round_to, self.w_clip, self.recalibrate_bn = round_to, w_clip, recalibrate_bn
        self.language_model = y_val.dim() == 2  # labels at every position: scored by log-likelihood
        self._memo: dict[tuple[str, bool, bytes], tuple[float, float]] = {}  # (accuracy, confidence)
        self.layers, groups, dg = analyse(model, self.input_shape)
        channel, self.unprunable = _channel_masks(model, groups, dg)
        self.masks = {**channel, **_head_masks(model)}
        candidates = {layer.name: layer.units for layer in self.layers
                      if layer.leader and layer.structural and layer.name in self.masks}
        self.template, dropped = derive_template(model, self.input_shape, candidates)
        for name in dropped:
            self.unprunable[name] = "pruning it changes no layer shape (apply_policy masks it instead)"
        priced = set(self.template.groups)
        base = self.template.base.layers
        attention = {attn: x.k for attn in attention_modules(model) for x in base if x.name == f"{attn}.softmax"}
        self.slots = tuple(
            Slot(layer.name, layer.spec, layer.group or "", prunable=layer.name in priced, quantizable=True,
                 units=layer.units, attention_tokens=attention.get(layer.name.rsplit(".", 1)[0], 0)
                 if layer.unit == "heads" else 0)
            for layer in self.layers)
        self._slot_of = {s.name: i for i, s in enumerate(self.slots)}
        self._group_slot = np.array([self._slot_of[g] for g in self.template.groups], dtype=np.int64)
        self._arrays = self._base_arrays()
        self._work = copy.deepcopy(model).eval()
        self._modules = dict(self._work.named_modules())
        self._weights = {s.name: self._modules[s.name].weight.detach().clone() for s in self.slots}
        for m in self.masks.values():
            for c in m.consumers:
                self._weights.setdefault(c.module, self._modules[c.module].weight.detach().clone())
        self._bn = {n: (m.running_mean.clone(), m.running_var.clone()) for n, m in self._work.named_modules()
                    if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.running_mean is not None}

    @classmethod
    def from_trained(cls, net: TrainedNetwork, val_samples: int | None = None, calib_samples: int = 128,
                     **kw: object) -> TorchProblem:
        """The problem of a cached trained network: reward on the first ``val_samples`` of its validation
        split, BatchNorm re-estimated on the first ``calib_samples`` training images."""
        d = net.data
        n = len(d.y_val) if val_samples is None else int(val_samples)
        return cls(net.model, net.input_shape, d.x_val[:n], d.y_val[:n], d.x_test, d.y_test,
                   calib=d.x_train[:calib_samples], **kw)

    # ---- pricing ----------------------------------------------------------------------------------
    def _base_arrays(self) -> dict[str, np.ndarray]:
        layers = self.template.base.layers
        arr = {f: np.array([getattr(x, f) for x in layers], dtype=np.int64)
               for f in ("n", "c", "k", "m", "groups", "r", "s", "in_h", "in_w", "w_bits", "a_bits")}
        arr["h"] = np.array([x.h for x in layers], dtype=np.int64)
        arr["w"] = np.array([x.w for x in layers], dtype=np.int64)
        arr["bias"] = np.array([x.bias for x in layers], dtype=np.int64)
        arr["op"] = np.array([_OPS.index(x.op) for x in layers], dtype=np.int64)
        arr["slot"] = np.array([self._slot_of.get(x.name, -1) if x.has_weights else -1 for x in layers],
                               dtype=np.int64)
        # NetSpec.with_inherited_activation_bits, vectorised: a layer without weights at float width
        # reads the width of the nearest layer before it that has its own (a chain inherits the same)
        own = np.array([x.has_weights or x.a_bits != FLOAT_BITS for x in layers], dtype=bool)
        src = np.maximum.accumulate(np.where(own, np.arange(len(layers)), -1))
        arr["inherit_from"] = np.where(own, -1, src)
        arr["matmul"] = arr["op"] == _OPS.index("matmul")
        # The products and softmax of each attention block follow the density its qkv slot decides.
        att = np.full(len(layers), -1, dtype=np.int64)
        tokens = np.ones(len(layers), dtype=np.int64)
        for i, slot in enumerate(self.slots):
            if slot.attention_tokens:
                attn = slot.name.rsplit(".", 1)[0]
                for li, x in enumerate(layers):
                    if x.name.rsplit(".", 1)[0] == attn and x.op in ("matmul", "softmax"):
                        att[li], tokens[li] = i, slot.attention_tokens
        arr["attention_slot"], arr["attention_tokens"] = att, tokens
        arr["density"] = np.array([x.density for x in layers], dtype=np.float64)
        arr["density_std"] = np.array([x.density_std for x in layers], dtype=np.float64)
        return arr

    def _scaled(self, state: State) -> dict[str, np.ndarray]:
        kept = np.asarray(state["keep"], dtype=np.int64)[self._group_slot]
        units = np.array(self.template.units, dtype=np.int64)
        a = self._arrays
        out = dict(a)
        for f in SCALED_FIELDS:
            dep = self.template.deps[f]
            has = dep >= 0
            if has.any():
                v = a[f].copy()
                v[has] = a[f][has] * kept[dep[has]] // units[dep[has]]
                out[f] = v
        slot = a["slot"]
        weighted = slot >= 0
        for f in ("w_bits", "a_bits"):
            v = a[f].copy()
            v[weighted] = np.asarray(state[f], dtype=np.int64)[slot[weighted]]
            out[f] = v
        src = a["inherit_from"]
        inherits = src >= 0
        if inherits.any():
            width = out["a_bits"][src[inherits]]
            out["a_bits"][inherits] = width
            matmul = a["matmul"][inherits]
            out["w_bits"][np.flatnonzero(inherits)[matmul]] = width[matmul]
        att = a["attention_slot"]
        sparse = att >= 0
        if sparse.any() and "attention" in state:
            percent = np.asarray(state["attention"], dtype=np.int64)[att[sparse]]
            heads = np.asarray(state["keep"], dtype=np.int64)[att[sparse]]
            t = a["attention_tokens"][sparse]
            rows, entries = heads * t, heads * t * t
            # kept_entries, vectorised (same float operations, so the same count)
            kept = np.minimum(entries, np.maximum(rows, np.floor((percent / 100) * rows * t + 0.5).astype(np.int64)))
            # A model's own static mask (gpt's causal one) is in the base density: the policy's share is
            # taken of what it keeps, as `compressed_netspec` plans it (same float operations).
            share = kept / entries
            density, std = a["density"].copy(), a["density_std"].copy()
            density[sparse] = share * a["density"][sparse]
            std[sparse] = np.minimum(share * a["density_std"][sparse],
                                     np.sqrt(density[sparse] * (1.0 - density[sparse])))
            out["density"], out["density_std"] = density, std
        return out

    def netspec(self, state: State) -> NetSpec:
        """The compressed network's exact NetSpec (what `compressed_netspec` traces for this policy)."""
        s = self._scaled(state)
        layers = []
        for i, layer in enumerate(self.template.base.layers):
            changes: dict[str, float] = {f: int(s[f][i]) for f in (*SCALED_FIELDS, "w_bits", "a_bits")
                                         if s[f][i] != getattr(layer, f)}
            for f in ("density", "density_std"):
                if s[f][i] != getattr(layer, f):
                    changes[f] = float(s[f][i])
            layers.append(layer.with_(**changes) if changes else layer)
        return NetSpec(tuple(layers), self.template.base.input_shape, self.template.base.name)

    def fast_metric(self, metric: str) -> Callable[[State], float] | None:
        """A numpy pricing of ``metric`` equal to pricing `netspec`, or None where only a NetSpec will do."""
        op = self._arrays["op"]
        conv = (op == 0) | (op == 1)
        lin = (op == 2) | (op == 3)
        weighted = (op == 0) | (op == 1) | (op == 2)

        def parts(state: State) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
            s = self._scaled(state)
            macs = np.where(conv, s["n"] * s["k"] * s["h"] * s["w"] * (s["c"] // s["groups"]) * s["r"] * s["s"],
                            np.where(lin, s["n"] * s["m"] * s["c"] * s["k"], 0))
            wparams = np.where(conv, s["k"] * (s["c"] // s["groups"]) * s["r"] * s["s"],
                               np.where(op == 2, s["c"] * s["k"], 0))
            return s, macs, wparams

        def params_of(s: dict[str, np.ndarray], wparams: np.ndarray) -> np.ndarray:
            bias = np.where(weighted, s["k"] * s["bias"], 0)
            norm = np.where((op == 5) & (s["bias"] == 1), 2 * s["c"], 0)
            elt = np.where((op == 6) & (s["bias"] == 1), s["c"] * s["in_h"] * s["in_w"] * s["m"], 0)
            return wparams + bias + norm + elt

        if metric == "macs":
            return lambda st: float(parts(st)[1].sum())
        if metric == "params":
            def params(st: State) -> float:
                s, _, wp = parts(st)
                return float(params_of(s, wp).sum())
            return params
        if metric == "model_size":
            def size(st: State) -> float:
                s, _, wp = parts(st)
                return float((params_of(s, wp) * s["w_bits"]).sum() / 8)
            return size
        if metric == "avg_w_bits":
            def avg(st: State) -> float:
                s, _, wp = parts(st)
                total = wp.sum()
                return float((wp * s["w_bits"]).sum() / total) if total else 0.0
            return avg
        if metric == "bitops":
            def bitops(st: State) -> float:
                s, macs, _ = parts(st)
                effective = np.round(macs * s["density"])  # LayerSpec.effective_macs: a mask skips attention work
                return float((effective * np.where(weighted, s["w_bits"], s["a_bits"]) * s["a_bits"]).sum())
            return bitops
        return None

    # ---- policies and accuracy --------------------------------------------------------------------
    def policy(self, state: State) -> Policy:
        """The `hwsearch.compress.Policy` a state stands for."""
        layers = {}
        for i, slot in enumerate(self.slots):
            kept = int(state["keep"][i])
            keep = kept / slot.units if slot.prunable and kept < slot.units else 1.0
            percent = int(state["attention"][i]) if "attention" in state and slot.attention_tokens else 100
            lp = LayerPolicy(keep=keep, w_bits=int(state["w_bits"][i]), a_bits=int(state["a_bits"][i]),
                             attention_density=percent / 100)
            if not lp.is_identity:
                layers[slot.name] = lp
        return Policy(layers, round_to=self.round_to, w_clip=self.w_clip)

    def apply(self, state: State) -> nn.Module:
        """The compressed model itself, through `apply_policy` (structural, calibrated)."""
        model = apply_policy(self.model, self.policy(state), self.input_shape, calib=self.calib)
        if self.recalibrate_bn:
            recalibrate_batchnorm(model, self.calib)
        return model.eval()

    @torch.no_grad()
    def _masked_model(self, state: State) -> nn.Module:
        for name, w in self._weights.items():
            self._modules[name].weight.copy_(w)
        for name, (mean, var) in self._bn.items():
            self._modules[name].running_mean.copy_(mean)
            self._modules[name].running_var.copy_(var)
        for leader, mask in self.masks.items():
            i = self._slot_of[leader]
            if not self.slots[i].prunable:
                continue
            n_drop = mask.units - int(state["keep"][i])
            if n_drop <= 0:
                continue
            dropped = mask.drop_order[:n_drop]
            for c in mask.consumers:
                cols = [col for u in dropped for col in c.columns[u]]
                self._modules[c.module].weight[:, cols] = 0
        for i, slot in enumerate(self.slots):
            bits = int(state["w_bits"][i])
            if bits < FLOAT_BITS:
                w = self._modules[slot.name].weight
                w.copy_(fake_quant_weight(w, weight_scale(w, bits, self.w_clip), bits))
        if self.recalibrate_bn:
            recalibrate_batchnorm(self._work, self.calib)
        return self._work

    def _scores(self, state: State, split: str, exact: bool) -> tuple[float, float]:
        knobs = [k for k in ("keep", "w_bits", "a_bits", "attention") if k in state]
        key = (split, exact, b"".join(k.encode() + np.asarray(state[k], dtype=np.int64).tobytes() for k in knobs))
        if key not in self._memo:
            x, y = self.data[split]
            sparse = "attention" in state and any(int(p) < 100 for p in state["attention"])
            if exact or sparse or any(int(b) < FLOAT_BITS for b in state["a_bits"]):
                self._memo[key] = self._measure(self.apply(state), x, y)
            else:
                self._memo[key] = self._measure(self._masked_model(state), x, y)
        return self._memo[key]

    def _measure(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
        if self.language_model:
            # a continuous score rarely ties, so there is no confidence to break ties with
            return -lm_score(model, x, y).loss, math.nan
        return scores(model, x, y)

    def accuracy(self, state: State, split: str = "val", exact: bool = False) -> float:
        """Top-1 accuracy without fine-tuning (a language model: minus the log of its perplexity);
        ``exact`` (or quantized activations) uses `apply_policy`."""
        return self._scores(state, split, exact)[0]

    def confidence(self, state: State, split: str = "val") -> float:
        """Mean softmax probability of the true label (same network as `accuracy`): ranks equally accurate
        policies (NaN for a language model, whose score does not tie)."""
        return self._scores(state, split, False)[1]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batch: torch.Tensor) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics on ``batch`` (weights untouched); eval mode after."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return model
    was = model.training
    model.eval()
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batch
        m.train()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    model(batch.to(device))
    for m, mom in zip(bns, momenta, strict=True):
        m.momentum = mom
        m.eval()
    model.train(was)
    return model


__all__ = ["PriceTemplate", "TorchProblem", "derive_template", "recalibrate_batchnorm"]
