"""Cost of a layer and of a network on an accelerator: cycles, latency, energy by level, traffic.

`cost(layer, accel)` maps the layer and turns the chosen mapping's access counts into energy with
the accelerator's per-access table (`hwsearch.hwmodel.energy`). Two mapping modes: ``fast`` maps
the array one fixed way per dataflow (`hwsearch.hwmodel.mapping`) and searches only the buffer
tiling; ``search`` also searches the spatial unrolling (`hwsearch.hwmodel.mapper`) and keeps the
``fast`` mapping whenever no candidate beats it on the objective (latency, energy or edp). An
``unroll`` (`hwsearch.hwmodel.unroll.Unrolling`) fixes the spatial unrolling instead, and only the
buffer tiling is searched. Costs are cached per (accelerator, objective, mode or unrolling): the
same layer again is one dictionary lookup, which is what makes costing hundreds of thousands of
(network, accelerator) pairs affordable. A layer whose attention mask or weight vectors the
accelerator declares it skips (`hwsearch.hwmodel.sparse`) is mapped as its dense proxy, then
charged its own MACs and its index.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Any

from hwsearch.errors import SpecError
from hwsearch.hwmodel import energy as E
from hwsearch.hwmodel import sparse
from hwsearch.hwmodel.mapper import array_candidates, run_bytes
from hwsearch.hwmodel.mapping import (
    OBJECTIVES,
    VECTOR_OPS_PER_ELEM,
    ArrayMap,
    Tiling,
    _grid,
    array_map,
    kept_share,
    mac_widths,
    macs_per_pe_cycle,
    problem,
    run_width,
    stored_weight_bytes_per_weight,
    tile_search,
)
from hwsearch.hwmodel.spec import Accelerator
from hwsearch.hwmodel.unroll import Unrolling, unrolled_map
from hwsearch.ir import LayerSpec, NetSpec

LEVELS = ("mac", "rf", "noc", "buffer", "dram")
TRAFFIC_LEVELS = ("rf", "buffer", "dram")
MODES = ("fast", "search")
# The co-search's inner loop costs every layer of every sampled network on every new accelerator;
# the mode it and every caller that does not choose gets. BENCHMARKS.md ("Mapping search vs fast
# mode") has the measurements behind the choice.
DEFAULT_MODE = "fast"


@dataclass(frozen=True)
class LayerCost:
    """What one layer costs on one accelerator (energies in pJ, traffic in bytes)."""

    compute_cycles: int
    stall_cycles: int
    clock_hz: float
    macs: int                              # dense MACs of the layer
    executed_macs: float                   # MACs the hardware really runs (sparsity skipped)
    peak_macs_per_cycle: float             # array throughput at the layer's bit-widths
    utilization: float                     # share of that peak used over the compute cycles
    energy_pj: Mapping[str, float]         # by level: mac, rf, noc, buffer, dram
    reads: Mapping[str, float]             # bytes read at rf, buffer, dram
    writes: Mapping[str, float]            # bytes written at rf, buffer, dram
    mapping: Mapping[str, Any] = field(default_factory=dict)

    @property
    def total_cycles(self) -> int:
        """Compute plus stall cycles."""
        return self.compute_cycles + self.stall_cycles

    @property
    def latency_s(self) -> float:
        """Seconds at the accelerator's clock."""
        return self.total_cycles / self.clock_hz

    @property
    def total_energy_pj(self) -> float:
        """Energy summed over levels."""
        return float(sum(self.energy_pj[k] for k in LEVELS))

    @property
    def dram_bytes(self) -> float:
        """Bytes moved between DRAM and the chip."""
        return self.reads["dram"] + self.writes["dram"]

    def to_row(self, name: str = "") -> dict[str, Any]:
        """A flat dict (one CSV/JSON row): the LayerCost fields and the per-level breakdowns."""
        row: dict[str, Any] = {
            "name": name,
            "compute_cycles": self.compute_cycles,
            "stall_cycles": self.stall_cycles,
            "total_cycles": self.total_cycles,
            "latency_s": self.latency_s,
            "energy_pj": self.total_energy_pj,
            "utilization": self.utilization,
            "macs": self.macs,
            "executed_macs": self.executed_macs,
        }
        for k in LEVELS:
            row[f"energy_{k}_pj"] = self.energy_pj[k]
        for k in TRAFFIC_LEVELS:
            row[f"{k}_read_bytes"] = self.reads[k]
            row[f"{k}_write_bytes"] = self.writes[k]
        row["mapping"] = ";".join(f"{k}={v}" for k, v in self.mapping.items())
        return row

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict of every field."""
        return {
            "compute_cycles": self.compute_cycles, "stall_cycles": self.stall_cycles,
            "clock_hz": self.clock_hz, "macs": self.macs, "executed_macs": self.executed_macs,
            "peak_macs_per_cycle": self.peak_macs_per_cycle, "utilization": self.utilization,
            "energy_pj": dict(self.energy_pj), "reads": dict(self.reads), "writes": dict(self.writes),
            "mapping": dict(self.mapping),
        }


@dataclass(frozen=True)
class NetworkCost:
    """Per-layer costs of a network, in order, and their totals (layers run one after another)."""

    layers: tuple[LayerCost, ...]
    names: tuple[str, ...]

    @property
    def compute_cycles(self) -> int:
        return sum(c.compute_cycles for c in self.layers)

    @property
    def stall_cycles(self) -> int:
        return sum(c.stall_cycles for c in self.layers)

    @property
    def total_cycles(self) -> int:
        return sum(c.total_cycles for c in self.layers)

    @property
    def latency_s(self) -> float:
        """Sum of the layers' latencies, added in layer order."""
        total = 0.0
        for c in self.layers:
            total += c.latency_s
        return total

    @property
    def energy_pj(self) -> float:
        """Sum of the layers' energies, added in layer order."""
        total = 0.0
        for c in self.layers:
            total += c.total_energy_pj
        return total

    @property
    def energy_by_level(self) -> dict[str, float]:
        return {k: sum(c.energy_pj[k] for c in self.layers) for k in LEVELS}

    @property
    def utilization(self) -> float:
        """MAC-weighted array utilisation over the layers with MACs."""
        busy = sum(c.executed_macs / c.peak_macs_per_cycle for c in self.layers if c.macs)
        cycles = sum(c.compute_cycles for c in self.layers if c.macs)
        return busy / cycles if cycles else 0.0

    @property
    def edp(self) -> float:
        """Energy-delay product in J*s."""
        return self.energy_pj * 1e-12 * self.latency_s

    def total_row(self) -> dict[str, Any]:
        """The totals as one row with the same column names as the layer rows."""
        row: dict[str, Any] = {
            "name": "total", "compute_cycles": self.compute_cycles, "stall_cycles": self.stall_cycles,
            "total_cycles": self.total_cycles, "latency_s": self.latency_s, "energy_pj": self.energy_pj,
            "utilization": self.utilization, "macs": sum(c.macs for c in self.layers),
            "executed_macs": sum(c.executed_macs for c in self.layers),
        }
        for k, v in self.energy_by_level.items():
            row[f"energy_{k}_pj"] = v
        for k in TRAFFIC_LEVELS:
            row[f"{k}_read_bytes"] = sum(c.reads[k] for c in self.layers)
            row[f"{k}_write_bytes"] = sum(c.writes[k] for c in self.layers)
        row["edp_js"] = self.edp
        return row

    def rows(self) -> list[dict[str, Any]]:
        """One row per layer, in order."""
        return [c.to_row(n) for c, n in zip(self.layers, self.names, strict=True)]


def cost(layer: LayerSpec, accel: Accelerator, objective: str = "latency", mode: str | None = None,
         unroll: Unrolling | None = None) -> LayerCost:
    """Cost of ``layer`` on ``accel`` under the best mapping for ``objective`` (latency, energy or
    edp) that ``mode`` (fast or search; default `DEFAULT_MODE`) finds, or, given ``unroll``, under
    that spatial unrolling with the best buffer tiling (`SpecError` if the array cannot hold it)."""
    hit = _CACHE.get((accel, objective, unroll or mode or DEFAULT_MODE), {}).get(layer)
    if hit is not None:
        return hit
    return costs([layer], accel, objective, mode, unroll)[0]


# (accelerator, objective, mode or unrolling) -> {layer: LayerCost}. LayerSpec and Accelerator are frozen and hashable;
# nesting hashes the accelerator once per batch. Emptied past _CACHE_MAX layers so that a long search
# cannot exhaust memory.
_CACHE: dict[tuple[Accelerator, str, str | Unrolling], dict[LayerSpec, LayerCost]] = {}
_CACHE_MAX = 1 << 17  # about 2 KB per entry
_cached = 0


def costs(layers: Iterable[LayerSpec], accel: Accelerator, objective: str = "latency",
          mode: str | None = None, unroll: Unrolling | None = None) -> list[LayerCost]:
    """Costs of many layers on one accelerator (under ``unroll`` when given, see `cost`); the
    uncached MAC layers are mapped in one batch."""
    global _cached
    layers = list(layers)
    mode = mode or DEFAULT_MODE
    key = (accel, objective, unroll or mode)
    known = _CACHE.get(key)
    if known is None:
        if objective not in OBJECTIVES:
            raise SpecError(f"mapping objective {objective!r} is unknown; use one of {', '.join(OBJECTIVES)}")
        if mode not in MODES:
            raise SpecError(f"mapping mode {mode!r} is unknown; use one of {', '.join(MODES)}")
        if unroll is not None:
            unroll.check(accel)
        known = _CACHE[key] = {}
    todo = [layer for layer in dict.fromkeys(layers) if layer not in known]
    if todo:
        if _cached + len(todo) > _CACHE_MAX:
            _CACHE.clear()
            _cached = 0
            known = _CACHE[key] = {}
        _cached += len(todo)
        mac, skipped = [], {}
        for layer in todo:
            sk = sparse.skip(layer, accel)
            if sk is not None and sk.proxy is not None:
                skipped[layer] = sk
            elif _layer_facts(layer)[0]:
                mac.append(layer)
            else:
                known[layer] = _vector_cost(layer, accel, sk)
        if mac and unroll is not None:
            known.update(zip(mac, _unrolled(mac, accel, objective, unroll), strict=True))
        elif mac and mode == "fast":
            t = E.table(accel)
            preps = [_prepare(layer, accel, t) for layer in mac]
            for layer, pr, tiling in zip(mac, preps, _tile(mac, accel, t, preps, objective, False), strict=True):
                known[layer] = _finish(layer, accel, t, pr, tiling, "fast")
        elif mac:
            known.update(zip(mac, _search(mac, accel, objective), strict=True))
        if skipped:
            # The proxies are ordinary dense layers, costed (and cached) as such.
            proxied = costs([sk.proxy for sk in skipped.values()], accel, objective, mode, unroll)
            fresh = _CACHE.setdefault(key, {})
            if fresh is not known:  # the proxies' costing emptied the cache
                fresh.update(known)
                known = fresh
            for (layer, sk), pc in zip(skipped.items(), proxied, strict=True):
                known[layer] = _skipped_cost(layer, accel, sk, pc)
    return [known[layer] for layer in layers]


def _skipped_cost(layer: LayerSpec, accel: Accelerator, sk: sparse.Skip, pc: LayerCost) -> LayerCost:
    """A sparse MAC layer's cost from its dense proxy's: the layer's own MACs, and the index loaded."""
    executed = float(layer.effective_macs)
    scale = executed / pc.executed_macs if pc.executed_macs else 1.0
    t = E.table(accel)
    size = accel.glb_bytes or accel.ifmap_sram_bytes
    idx = sk.index_bytes
    # The index is loaded before the layer's first step (not hidden) and read once from the buffer.
    stall = pc.stall_cycles + math.ceil(idx / accel.dram_bw)
    energy = dict(pc.energy_pj)
    energy["mac"] *= scale
    energy["rf"] *= scale
    energy["buffer"] += idx * (t.sram_pj(size) + t.sram_pj(size, write=True))
    energy["noc"] += idx * t.noc_pj
    energy["dram"] += idx * t.dram_pj
    reads = {"rf": pc.reads["rf"] * scale, "buffer": pc.reads["buffer"] + idx, "dram": pc.reads["dram"] + idx}
    writes = {"rf": pc.writes["rf"] * scale, "buffer": pc.writes["buffer"] + idx, "dram": pc.writes["dram"]}
    mapping = {**pc.mapping, "skip": sk.kind + (f"-{sk.direction}" if sk.direction else ""),
               "time_share": sk.time_share, "index_bytes": idx}
    return LayerCost(
        compute_cycles=pc.compute_cycles, stall_cycles=int(stall), clock_hz=pc.clock_hz, macs=layer.macs,
        executed_macs=executed, peak_macs_per_cycle=pc.peak_macs_per_cycle,
        utilization=executed / (pc.compute_cycles * pc.peak_macs_per_cycle),
        energy_pj=energy, reads=reads, writes=writes, mapping=mapping,
    )


def _tile(layers: list[LayerSpec], accel: Accelerator, t: E.EnergyTable, preps: list[_Prep], objective: str,
          with_array: bool = True) -> list[Tiling]:
    # The fast mode leaves the array's buffer energy out of the edp trade-off, as it always has, so
    # that its numbers stay those of earlier model versions.
    sizes = _sram_sizes(accel)
    return tile_search(layers, accel, [pr.am.compute_cycles for pr in preps], objective,
                       base_pj=[pr.e_mac + pr.e_rf + (pr.e_array if with_array else 0.0) for pr in preps],
                       pj_per_dram_byte=t.dram_pj + t.sram_pj(max(sizes)))


def score(c: LayerCost, objective: str) -> tuple[float, float]:
    """What ``objective`` minimises, as a sortable key (ties broken by the other quantity)."""
    e = c.total_energy_pj
    if objective == "latency":
        return float(c.total_cycles), e
    if objective == "energy":
        return e, float(c.total_cycles)
    return c.total_cycles * e, float(c.total_cycles)


def fits(c: LayerCost, accel: Accelerator) -> bool:
    """Whether a MAC layer's mapping respects the array's PEs, register files and buffer capacities."""
    m = c.mapping
    if "pe_rows_used" not in m:
        return True
    i, w, o = m["buffer_bytes"]
    caps = ((i + w + o <= accel.glb_bytes) if accel.unified else
            (i <= accel.ifmap_sram_bytes and w <= accel.filter_sram_bytes and o <= accel.ofmap_sram_bytes))
    return (1 <= m["pe_rows_used"] <= accel.pe_rows and 1 <= m["pe_cols_used"] <= accel.pe_cols
            and m["rf_bytes_used"] <= accel.rf_bytes + 1e-9 and bool(caps))


def _search(mac: list[LayerSpec], accel: Accelerator, objective: str) -> list[LayerCost]:
    """Search mode: every kept array candidate of every layer tiled in one batch; the best one for
    ``objective`` wins, or the fast mapping when it is at least as good and respects the capacities."""
    global _cached
    t = E.table(accel)
    e_i_r, e_w_r, e_o_r, _, _, e_o_w = _sram_energies(accel)
    base = [_prepare(layer, accel, t) for layer in mac]
    # The fast mappings, from the same array-level preparation, go to the fast mode's cache too.
    known = _CACHE.setdefault((accel, objective, "fast"), {})
    todo = [j for j, layer in enumerate(mac) if layer not in known]
    if todo:
        tilings = _tile([mac[j] for j in todo], accel, t, [base[j] for j in todo], objective, False)
        for j, tiling in zip(todo, tilings, strict=True):
            known[mac[j]] = _finish(mac[j], accel, t, base[j], tiling, "fast")
        _cached += len(todo)
    fast = [known[layer] for layer in mac]
    rows, preps = [], []
    for j, (layer, pr) in enumerate(zip(mac, base, strict=True)):
        for am in array_candidates(layer, accel, (e_i_r, e_w_r, e_o_r, e_o_w), t.noc_pj, pr.w_store):
            rows.append(j)
            preps.append(_with_array(pr, am, accel, t))
    tilings = _tile([mac[j] for j in rows], accel, t, preps, objective)
    best: list[LayerCost | None] = [f if fits(f, accel) else None for f in fast]
    for j, pr, tiling in zip(rows, preps, tilings, strict=True):
        c = _finish(mac[j], accel, t, pr, tiling, "search")
        if best[j] is None or score(c, objective) < score(best[j], objective):
            best[j] = c
    return best  # type: ignore[return-value]


def _unrolled(mac: list[LayerSpec], accel: Accelerator, objective: str, unroll: Unrolling) -> list[LayerCost]:
    """Every layer's array mapped under ``unroll``, then the buffer tiling searched in one batch."""
    t = E.table(accel)
    preps = [_with_array(pr, unrolled_map(layer, accel, unroll), accel, t)
             for layer, pr in zip(mac, (_prepare(layer, accel, t) for layer in mac), strict=True)]
    tilings = _tile(mac, accel, t, preps, objective)
    return [_finish(layer, accel, t, pr, tiling, "given") for layer, pr, tiling in zip(mac, preps, tilings, strict=True)]


def _sram_sizes(accel: Accelerator) -> tuple[float, float, float]:
    if accel.unified:
        return (accel.glb_bytes,) * 3
    return accel.ifmap_sram_bytes, accel.filter_sram_bytes, accel.ofmap_sram_bytes


@lru_cache(maxsize=4096)
def _sram_energies(accel: Accelerator) -> tuple[float, ...]:
    """Per-byte read energies of the ifmap, weight and output buffers, then their write energies."""
    t, sizes = E.table(accel), _sram_sizes(accel)
    return tuple(t.sram_pj(x) for x in sizes) + tuple(t.sram_pj(x, write=True) for x in sizes)


@dataclass(frozen=True)
class _Prep:
    """Array-level results of one MAC layer, before the buffer-level tiling is known."""

    am: ArrayMap
    f: float
    executed: float
    passes: int
    a_b: float
    w_b: float
    w_store: float
    e_mac: float
    e_rf: float
    e_array: float = 0.0   # buffer and array-network energy of the array's buffer accesses


def _array_energy(am: ArrayMap, accel: Accelerator, t: E.EnergyTable, a_b: float, w_store: float) -> float:
    e_i_r, e_w_r, e_o_r, _, _, e_o_w = _sram_energies(accel)
    moved = am.ifmap_reads * a_b + am.weight_reads * w_store + am.psum_reads * a_b + am.out_writes * a_b
    return (am.ifmap_reads * a_b * e_i_r + am.weight_reads * w_store * e_w_r + am.psum_reads * a_b * e_o_r
            + am.out_writes * a_b * e_o_w + moved * t.noc_pj)


def _with_array(pr: _Prep, am: ArrayMap, accel: Accelerator, t: E.EnergyTable) -> _Prep:
    # Built field by field: `dataclasses.replace` costs more than the rest of this, once per candidate.
    return _Prep(am, pr.f, pr.executed, pr.passes, pr.a_b, pr.w_b, pr.w_store, pr.e_mac, pr.e_rf,
                 _array_energy(am, accel, t, pr.a_b, pr.w_store))


def _prepare(layer: LayerSpec, accel: Accelerator, t: E.EnergyTable) -> _Prep:
    am = array_map(layer, accel)
    f = macs_per_pe_cycle(layer, accel)
    executed = layer.macs * kept_share(layer, accel)
    pw, pa, passes = mac_widths(layer, accel)
    a_b = layer.a_bits / 8
    w_b = layer.w_bits / 8 if layer.has_weights else a_b
    e_mac = executed * passes * E.mac_pj(t, pw, pa)
    e_rf = executed * passes * (w_b * t.rf_weight_pj + a_b * t.rf_ifmap_pj + 2 * a_b * t.rf_psum_pj)
    w_store = stored_weight_bytes_per_weight(layer, accel)
    if not am.rf_bytes_used:
        am = replace(am, rf_bytes_used=_fast_rf_bytes(layer, accel))
    return _Prep(am, f, executed, passes, a_b, w_b, w_store, e_mac, e_rf, _array_energy(am, accel, t, a_b, w_store))


def _fast_rf_bytes(layer: LayerSpec, accel: Accelerator) -> float:
    """Register-file bytes a PE of the fast mapping holds: one word of each operand on systolic
    arrays; on row-stationary ones the filters per PE the fast mapping assumes, chunked to fit."""
    wb, ab = run_bytes(layer, accel)
    if accel.dataflow != "rs":
        return wb + 2 * ab
    p = problem(layer)
    s = p.window if (p.r == 1 and p.s == 1 and layer.op in ("linear", "matmul")) else p.s
    wbytes = layer.w_bits / 8 if layer.has_weights else layer.a_bits / 8
    pf = int(min(p.kf, max(1, (accel.rf_bytes // 2) // max(1, int(s * wbytes)))))
    s_t = min(s, int(max(1, (accel.rf_bytes - pf * ab) // (pf * wb + ab))))
    return pf * s_t * wb + s_t * ab + pf * ab


def _finish(layer: LayerSpec, accel: Accelerator, t: E.EnergyTable, pr: _Prep, tiling: Tiling, mode: str) -> LayerCost:
    am, f, executed, passes, a_b, w_b, w_store = pr.am, pr.f, pr.executed, pr.passes, pr.a_b, pr.w_b, pr.w_store
    e_mac, e_rf = pr.e_mac, pr.e_rf
    e_i_r, e_w_r, e_o_r, e_i_w, e_w_w, e_o_w = _sram_energies(accel)
    rf_reads = executed * passes * (w_b + 2 * a_b)
    rf_writes = executed * passes * a_b
    buf_reads_array = am.ifmap_reads * a_b + am.weight_reads * w_store + am.psum_reads * a_b
    buf_writes_array = am.out_writes * a_b
    buf_reads = buf_reads_array + tiling.dram_write
    buf_writes = buf_writes_array + tiling.dram_read

    e_noc = (buf_reads_array + buf_writes_array) * t.noc_pj
    dram_i, dram_w = tiling.dram_ifmap, tiling.dram_weight
    dram_o_rd = tiling.dram_read - dram_i - dram_w
    e_buf = (am.ifmap_reads * a_b * e_i_r + am.weight_reads * w_store * e_w_r
             + am.psum_reads * a_b * e_o_r + am.out_writes * a_b * e_o_w
             + dram_i * e_i_w + dram_w * e_w_w + dram_o_rd * e_o_w + tiling.dram_write * e_o_r)
    e_dram = (tiling.dram_read + tiling.dram_write) * t.dram_pj

    stall = max(0, math.ceil(tiling.latency_cycles - am.compute_cycles - 1e-9))
    peak = accel.num_pes * f
    util = executed / (am.compute_cycles * peak)
    mapping = {
        "dataflow": accel.dataflow, "pes": accel.num_pes, "folds": am.folds, "tile_rows": tiling.rows,
        "tile_filters": tiling.filters, "tile_channels": tiling.channels, "order": tiling.order,
        "double_buffered": tiling.double_buffered, "passes": passes, "macs_per_pe_cycle": f,
        "mapper": mode, "unroll": am.unroll or "fixed", "pe_rows_used": am.rows_used,
        "pe_cols_used": am.cols_used, "rf_bytes_used": am.rf_bytes_used, "buffer_bytes": tiling.buffer_bytes,
    }
    return LayerCost(
        compute_cycles=int(am.compute_cycles), stall_cycles=int(stall), clock_hz=accel.clock_hz,
        macs=layer.macs, executed_macs=float(executed), peak_macs_per_cycle=float(peak),
        utilization=float(util),
        energy_pj={"mac": e_mac, "rf": e_rf, "noc": e_noc, "buffer": e_buf, "dram": e_dram},
        reads={"rf": rf_reads, "buffer": buf_reads, "dram": tiling.dram_read},
        writes={"rf": rf_writes, "buffer": buf_writes, "dram": tiling.dram_write},
        mapping=mapping,
    )


@lru_cache(maxsize=1 << 16)
def _layer_facts(layer: LayerSpec) -> tuple[int, float, float, float]:
    """(MACs, vector element operations, bytes read, bytes written) of a layer, computed once."""
    macs = layer.macs
    if macs:
        return macs, 0.0, 0.0, 0.0
    ops = float(layer.vector_ops * VECTOR_OPS_PER_ELEM[layer.op])
    return 0, ops, layer.in_bytes + layer.params * layer.a_bits / 8, layer.out_bytes


@lru_cache(maxsize=4096)
def _vector_unit(accel: Accelerator, a_bits: int) -> tuple[float, float, float, float, float]:
    """(lanes, pJ per element op, pJ per buffer byte read+written, noc pJ/byte, DRAM pJ/byte)."""
    t = E.table(accel)
    pa, na = run_width(a_bits, accel)
    size = accel.glb_bytes or accel.ifmap_sram_bytes
    lanes = accel.vector_lanes * (accel.native_bits / pa) / na
    return lanes, t.vector_pj * pa / 8 * na, t.sram_pj(size) + t.sram_pj(size, write=True), t.noc_pj, t.dram_pj


def _vector_cost(layer: LayerSpec, accel: Accelerator, sk: sparse.Skip | None = None) -> LayerCost:
    """Softmax, norm, eltwise and pool on the vector unit, streaming through the buffer (a masked
    softmax on hardware that skips: the kept entries and the mask's bitmap)."""
    _, ops, rd, wr = _layer_facts(layer)
    lanes, e_op, e_buf_b, e_noc_b, e_dram_b = _vector_unit(accel, layer.a_bits)
    if sk is None:
        compute = max(1, math.ceil(ops / lanes))
    else:
        per = VECTOR_OPS_PER_ELEM[layer.op]
        ops = float(layer.effective_vector_ops * per)
        rd, wr = layer.effective_in_bytes + sk.index_bytes, layer.effective_out_bytes
        compute = sparse.softmax_cycles(layer, accel, lanes, per)
    bw = accel.dram_bw
    moved = rd + wr
    latency = max(compute, moved / bw) + min(rd, accel.buffer_bytes / 4) / bw
    stall = max(0, math.ceil(latency - compute - 1e-9))
    return LayerCost(
        compute_cycles=compute, stall_cycles=stall, clock_hz=accel.clock_hz, macs=0,
        executed_macs=0.0, peak_macs_per_cycle=float(accel.pe_rows * accel.pe_cols),
        utilization=ops / (compute * lanes),
        energy_pj={"mac": ops * e_op, "rf": 0.0, "noc": moved * e_noc_b, "buffer": moved * e_buf_b,
                   "dram": moved * e_dram_b},
        reads={"rf": 0.0, "buffer": moved, "dram": rd},
        writes={"rf": 0.0, "buffer": moved, "dram": wr},
        mapping={"unit": "vector", "lanes": lanes} if sk is None else
                {"unit": "vector", "lanes": lanes, "skip": sk.kind, "index_bytes": sk.index_bytes},
    )


def network_cost(net: NetSpec | Iterable[LayerSpec], accel: Accelerator, objective: str = "latency",
                 mode: str | None = None, unroll: Unrolling | None = None) -> NetworkCost:
    """Per-layer costs and totals of a network (a NetSpec or any sequence of LayerSpecs), every MAC
    layer under ``unroll`` when given."""
    layers = tuple(net.layers if isinstance(net, NetSpec) else net)
    names = tuple(layer.name or f"{layer.op}{i}" for i, layer in enumerate(layers))
    return NetworkCost(tuple(costs(layers, accel, objective, mode, unroll)), names)


def hardware_metrics(net: NetSpec, accel: Accelerator, mode: str | None = None) -> dict[str, float]:
    """The search metrics of a network on an accelerator: latency_ms, energy_mj, edp (mJ*ms),
    area_mm2 and peak_power_w."""
    nc = network_cost(net, accel, mode=mode)
    latency_ms = nc.latency_s * 1e3
    energy_mj = nc.energy_pj * 1e-9
    return {
        "latency_ms": latency_ms,
        "energy_mj": energy_mj,
        "edp": energy_mj * latency_ms,
        "area_mm2": accel.area_mm2,
        "peak_power_w": accel.peak_power_w,
    }


def cache_clear() -> None:
    """Forget every cached cost (for benchmarks that time cold costing)."""
    global _cached
    _CACHE.clear()
    _cached = 0
    _grid.cache_clear()
    _layer_facts.cache_clear()
