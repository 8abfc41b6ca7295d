"""NAAS's inner loop: for one accelerator, search sub-network and per-group bit-widths at once.

A candidate is a `QuantizedSpace` choice: the network space's genes plus one bit-width gene per
layer group (``stem``, ``stages.2``, ``head``...; weights and activations of every conv/linear layer
of the group share it, the HAQ granularity coarsened so that the inner search stays small). Its
NetSpec is the network's with those bits set on the weighted layers, exactly what
`hwsearch.compress.compressed_netspec` reports for the model `QuantizedSpace.build` returns.

Costs are vectorised per accelerator: every distinct layer (at every bit option) is mapped once by
the accelerator model in one batch, and a candidate's latency and energy are sums of table entries,
so thousands of candidates per accelerator cost milliseconds after the first mapping pass.
Accuracy comes from an `AccuracyModel` (the supernet's predictor minus a measured bit-width penalty,
see `hwsearch.search.naas.accuracy`); which numbers are predicted and which measured is recorded on
every `Triple`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from hwsearch.errors import ConfigError
from hwsearch.hwmodel import Accelerator, costs
from hwsearch.ir import LayerSpec, NetSpec
from hwsearch.search.pareto import hypervolume, nondominated, rank_select
from hwsearch.spaces.base import Choice, Dim, SearchSpace

if TYPE_CHECKING:
    import torch

    from hwsearch.compress import Policy


def layer_group(name: str) -> str:
    """The bit-width group of a layer name: ``stages.2.1.dw.conv`` -> ``stages.2``; ``stem.conv`` -> ``stem``."""
    parts = name.split(".")
    if parts[0] in ("stages", "blocks", "layers") and len(parts) > 1 and parts[1].isdigit():
        return ".".join(parts[:2])
    return parts[0]


class QuantizedSpace(SearchSpace):
    """A network space with one weight/activation bit-width gene per layer group."""

    def __init__(self, net: SearchSpace, bits: Sequence[int] = (4, 6, 8)) -> None:
        self.net = net
        self.name = f"{net.name}+bits"
        self.bits = tuple(int(b) for b in bits)
        if not self.bits or any(not (2 <= b <= 8 or b == 32) for b in self.bits):
            raise ConfigError(f"bit options {list(bits)} must be integers from 2 to 8, or 32 (float)")
        largest = net.to_netspec(net.reference("largest"))
        groups: dict[str, None] = {}
        for layer in largest.layers:
            if layer.has_weights:
                groups.setdefault(layer_group(layer.name), None)
        self.groups = tuple(groups)
        self.bit_dims = tuple(Dim(f"bits.{g}", self.bits) for g in self.groups)
        self.dims = tuple(net.dims) + self.bit_dims
        self._num_classes = net.num_classes

    def split(self, choice: Mapping[str, Any]) -> tuple[Choice, dict[str, int]]:
        """(network choice, group -> bits)."""
        c = self.validate(choice)
        return ({d.name: c[d.name] for d in self.net.dims},
                {g: int(c[f"bits.{g}"]) for g in self.groups})

    def join(self, net_choice: Mapping[str, Any], bits: Mapping[str, int]) -> Choice:
        """The joint choice of a network choice and group bits."""
        return self.validate({**net_choice, **{f"bits.{g}": int(b) for g, b in bits.items()}})

    def policy(self, choice: Mapping[str, Any]) -> Policy:
        """The compression `Policy` (per-layer w/a bits) of a joint choice."""
        from hwsearch.compress import LayerPolicy, Policy  # deferred: torch (settings import this module)

        net_choice, bits = self.split(choice)
        layers = {}
        for layer in self.net.to_netspec(net_choice).layers:
            if layer.has_weights:
                b = bits[layer_group(layer.name)]
                if b != 32:
                    layers[layer.name] = LayerPolicy(w_bits=b, a_bits=b)
        return Policy(layers=layers)

    def to_netspec(self, choice: Mapping[str, Any], batch: int = 1) -> NetSpec:
        """The network's layers with each weighted layer at its group's bits (the layers between them
        at the width of the layer before them)."""
        net_choice, bits = self.split(choice)
        base = self.net.to_netspec(net_choice, batch)
        layers = tuple(quantize_layer(layer, bits) for layer in base.layers)
        return NetSpec(layers, base.input_shape, base.name).with_inherited_activation_bits()

    def build(self, choice: Mapping[str, Any]) -> torch.nn.Module:
        """A freshly initialised, fake-quantized network (activation ranges still to calibrate)."""
        from hwsearch.compress import apply_policy  # deferred: torch

        net_choice, _ = self.split(choice)
        return apply_policy(self.net.build(net_choice), self.policy(choice), self.net.input_shape(net_choice))

    def references(self) -> list[str]:
        """The network space's references, all at the highest bit option."""
        return self.net.references()

    def reference(self, name: str) -> Choice:
        """A network reference at the highest bit option."""
        return self.join(self.net.reference(name), {g: max(self.bits) for g in self.groups})

    def input_shape(self, choice: Mapping[str, Any]) -> tuple[int, int, int]:
        """The network's input shape."""
        return self.net.input_shape(self.split(choice)[0])


def _at_bits(layer: LayerSpec, b: int) -> LayerSpec:
    """``layer`` where its group runs at ``b`` bits: weighted layers quantized, the others at the
    width they inherit (`NetSpec.with_inherited_activation_bits`)."""
    if b == 32:
        return layer
    if layer.has_weights:
        return layer.with_(w_bits=b, a_bits=b)
    return layer if layer.a_bits != 32 else layer.with_activation_bits(b)


def quantize_layer(layer: LayerSpec, bits: Mapping[str, int]) -> LayerSpec:
    """``layer`` at its group's bits when it has weights (other layers are left as traced)."""
    if not layer.has_weights:
        return layer
    b = bits[layer_group(layer.name)]
    return layer if b == 32 else layer.with_(w_bits=b, a_bits=b)


class AccuracyModel(Protocol):
    """Top-1 accuracy (fraction) of joint choices, vectorised."""

    def predict(self, space: QuantizedSpace, choices: Sequence[Mapping[str, Any]]) -> np.ndarray: ...


class CostTables:
    """Latency/energy of every (distinct layer, bit option) on accelerators, filled lazily in batches."""

    def __init__(self, space: QuantizedSpace) -> None:
        self.space = space
        self.layers: list[LayerSpec] = []          # distinct float layers
        self.ids: dict[LayerSpec, int] = {}
        self.nets: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}   # net key -> (layer ids, group ids)
        self.tables: dict[Accelerator, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._group_ix = {g: i for i, g in enumerate(space.groups)}

    def net_index(self, net_choice: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """(distinct-layer id, group index) of every layer of a network: a layer without weights takes
        the group of the weighted layer before it (its input's width, see
        `NetSpec.with_inherited_activation_bits`), or -1 when none comes before it."""
        key = tuple(net_choice[d.name] for d in self.space.net.dims)
        hit = self.nets.get(key)
        if hit is not None:
            return hit
        ids, groups = [], []
        group = -1
        for layer in self.space.net.to_netspec(net_choice).layers:
            i = self.ids.get(layer)  # a LayerSpec's name is not part of its identity
            if i is None:
                i = self.ids[layer] = len(self.layers)
                self.layers.append(layer)
            ids.append(i)
            if layer.has_weights:
                group = self._group_ix[layer_group(layer.name)]
            groups.append(group)
        out = (np.array(ids, dtype=np.int64), np.array(groups, dtype=np.int64))
        if len(self.nets) > 100_000:
            self.nets.clear()
        self.nets[key] = out
        return out

    def _table(self, accel: Accelerator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        nb = len(self.space.bits) + 1  # the last column: the layer as traced (no group before it)
        t = self.tables.get(accel)
        n = len(self.layers)
        if t is None or len(t[0]) < n:
            lat = np.zeros((n, nb))
            en = np.zeros((n, nb))
            done = np.zeros(n, dtype=bool)
            if t is not None:
                m = len(t[0])
                lat[:m], en[:m], done[:m] = t
            t = (lat, en, done)
            if len(self.tables) > 256:
                self.tables.clear()
            self.tables[accel] = t
        return t

    def evaluate(self, accel: Accelerator, net_choices: Sequence[Mapping[str, Any]],
                 bit_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(latency ms, energy mJ) of networks at per-group bit indices (rows of ``bit_idx``) on ``accel``."""
        index = [self.net_index(c) for c in net_choices]
        lat, en, done = self._table(accel)
        need = np.unique(np.concatenate([ids for ids, _ in index])) if index else np.zeros(0, dtype=np.int64)
        need = need[~done[need]]
        if need.size:
            todo: list[LayerSpec] = []
            where: list[tuple[int, int]] = []
            traced = len(self.space.bits)
            for i in need:
                layer = self.layers[i]
                for j, b in enumerate(self.space.bits):
                    todo.append(_at_bits(layer, b))
                    where.append((i, j))
                if not layer.has_weights:
                    todo.append(layer)
                    where.append((i, traced))
            for (i, j), c in zip(where, costs(todo, accel), strict=True):
                lat[i, j] = c.latency_s * 1e3
                en[i, j] = c.total_energy_pj * 1e-9
            done[need] = True
        out_l = np.empty(len(index))
        out_e = np.empty(len(index))
        for k, (ids, groups) in enumerate(index):
            cols = np.where(groups >= 0, bit_idx[k][np.maximum(groups, 0)], len(self.space.bits))
            out_l[k] = lat[ids, cols].sum()
            out_e[k] = en[ids, cols].sum()
        return out_l, out_e


@dataclass(frozen=True)
class Reference:
    """Fixed normalisation of the (accuracy, latency, energy) objectives and the hypervolume box."""

    acc_floor: float
    latency_ms: float
    energy_mj: float

    def normalise(self, acc: np.ndarray, lat: np.ndarray, en: np.ndarray) -> np.ndarray:
        """Minimised, normalised objectives: reference point (1, 1, 1), ideal (0, 0, 0)."""
        return np.stack([(1.0 - np.asarray(acc)) / (1.0 - self.acc_floor),
                         np.asarray(lat) / self.latency_ms, np.asarray(en) / self.energy_mj], axis=1)

    def hypervolume(self, acc: Sequence[float], lat: Sequence[float], en: Sequence[float]) -> float:
        """Hypervolume of the points inside the (1, 1, 1) box."""
        if len(acc) == 0:
            return 0.0
        return hypervolume(self.normalise(np.asarray(acc), np.asarray(lat), np.asarray(en)), np.ones(3))

    def to_dict(self) -> dict[str, float]:
        """JSON-able dict."""
        return {"acc_floor": self.acc_floor, "latency_ms": self.latency_ms, "energy_mj": self.energy_mj}


@dataclass(frozen=True)
class Triple:
    """One (sub-network, quantization policy, accelerator) candidate and its metrics."""

    choice: dict[str, Any]          # joint network + bits genes
    accel: dict[str, Any]           # `Accelerator.to_dict()`
    accuracy: float
    latency_ms: float
    energy_mj: float
    area_mm2: float
    accuracy_source: str = "predicted"

    @property
    def edp(self) -> float:
        """Energy-delay product, mJ x ms."""
        return self.energy_mj * self.latency_ms

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (EDP included)."""
        return {"choice": self.choice, "accel": self.accel, "accuracy": self.accuracy,
                "latency_ms": self.latency_ms, "energy_mj": self.energy_mj, "area_mm2": self.area_mm2,
                "edp": self.edp, "accuracy_source": self.accuracy_source}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Triple:
        """Inverse of `to_dict`."""
        return cls(dict(d["choice"]), dict(d["accel"]), float(d["accuracy"]), float(d["latency_ms"]),
                   float(d["energy_mj"]), float(d["area_mm2"]), str(d.get("accuracy_source", "predicted")))


@dataclass
class CoSearchProblem:
    """What every inner search shares: the joint space, accuracy model, cost tables, normalisation."""

    space: QuantizedSpace
    accuracy: AccuracyModel
    reference: Reference
    tables: CostTables = field(init=False)

    def __post_init__(self) -> None:
        self.tables = CostTables(self.space)

    def evaluate(self, accel: Accelerator, choices: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Rows (accuracy, latency ms, energy mJ) of joint choices on ``accel``."""
        nets, idx = [], np.empty((len(choices), len(self.space.groups)), dtype=np.int64)
        pos = {b: j for j, b in enumerate(self.space.bits)}
        for k, c in enumerate(choices):
            net, bits = self.space.split(c)
            nets.append(net)
            idx[k] = [pos[bits[g]] for g in self.space.groups]
        lat, en = self.tables.evaluate(accel, nets, idx)
        acc = np.asarray(self.accuracy.predict(self.space, choices), dtype=float)
        return np.stack([acc, lat, en], axis=1)

    def triples(self, accel: Accelerator, choices: Sequence[Mapping[str, Any]], rows: np.ndarray) -> list[Triple]:
        """`Triple`s of evaluated choices."""
        a = accel.to_dict()
        area = accel.area_mm2
        return [Triple(dict(c), a, float(r[0]), float(r[1]), float(r[2]), area) for c, r in zip(choices, rows, strict=True)]


@dataclass(frozen=True)
class InnerSettings:
    """Population and generations of the inner evolution; ``front`` caps the front a trial keeps."""

    population: int = 32
    generations: int = 8
    mutate_prob: float = 0.15
    front: int = 24

    @property
    def evaluations(self) -> int:
        """Candidates one inner search evaluates."""
        return self.population * (self.generations + 1)


@dataclass(frozen=True)
class InnerResult:
    """The front one accelerator supports, its hypervolume and how many candidates were evaluated."""

    front: tuple[Triple, ...]
    hypervolume: float
    evaluations: int


def inner_search(problem: CoSearchProblem, accel: Accelerator, settings: InnerSettings,
                 rng: np.random.Generator, seeds: Sequence[Mapping[str, Any]] = ()) -> InnerResult:
    """NSGA-II-style evolution of (sub-network, bits) for one accelerator; returns its Pareto front.

    ``seeds`` (at most half the population) start the population beside random choices: the outer
    loop passes the best triples found on earlier accelerators, so the network search is not
    restarted from nothing for every accelerator."""
    space, P = problem.space, settings.population
    start = [space.validate(c) for c in list(seeds)[: P // 2]]
    pop = start + [space.sample(rng) for _ in range(P - len(start))]
    rows = problem.evaluate(accel, pop)
    archive, arch_rows = list(pop), rows
    for _ in range(settings.generations):
        obj = _minimised(rows)
        parents = [pop[i] for i in rank_select(obj, max(2, P // 2))]
        children = []
        for _ in range(P):
            a, b = rng.choice(len(parents), size=2, replace=len(parents) < 2)
            child = space.crossover(parents[a], parents[b], rng)
            children.append(space.mutate(child, rng, settings.mutate_prob))
        crows = problem.evaluate(accel, children)
        archive += children
        arch_rows = np.vstack([arch_rows, crows])
        both, brows = pop + children, np.vstack([rows, crows])
        keep = rank_select(_minimised(brows), P)
        pop, rows = [both[i] for i in keep], brows[keep]
    mask = nondominated(_minimised(arch_rows))
    idx = np.flatnonzero(mask)
    if len(idx) > settings.front:
        idx = idx[rank_select(_minimised(arch_rows[idx]), settings.front)]
    front = problem.triples(accel, [archive[i] for i in idx], arch_rows[idx])
    hv = problem.reference.hypervolume(arch_rows[idx, 0], arch_rows[idx, 1], arch_rows[idx, 2])
    return InnerResult(tuple(front), hv, P * (settings.generations + 1))


def _minimised(rows: np.ndarray) -> np.ndarray:
    return np.stack([-rows[:, 0], rows[:, 1], rows[:, 2]], axis=1)


def front_of(triples: Sequence[Triple], with_area: bool = False) -> list[Triple]:
    """The non-dominated triples on (accuracy, latency, energy[, area])."""
    if not triples:
        return []
    cols = [[-t.accuracy, t.latency_ms, t.energy_mj] + ([t.area_mm2] if with_area else []) for t in triples]
    mask = nondominated(np.array(cols))
    return [t for t, m in zip(triples, mask, strict=True) if m]


__all__ = ["AccuracyModel", "CoSearchProblem", "CostTables", "InnerResult", "InnerSettings", "QuantizedSpace",
           "Reference", "Triple", "front_of", "inner_search", "layer_group", "quantize_layer"]
