"""Mapping a layer onto an accelerator: array folding (cycles, buffer accesses) and buffer tiling.

Two levels, searched separately because they barely interact:

1. *Array level.* The layer is seen as ``reps`` independent products of ``P`` output pixels x
   ``Kf`` filters x a reduction ``window`` (``Cr`` channels x ``r*s`` taps). Systolic dataflows
   (ws, os, is) fold two of these dimensions over the PE rows/columns and stream the third, costing
   ``folds * (T + fill) - 1`` cycles, the count SCALE-Sim 3 reports (os: fill ``R + C - 2``; ws and
   is: ``2R + C - 2``), or the fill once per layer on an array with pipelined folds (`fold_cycles`).
   Row-stationary (Eyeriss) maps filter rows x output rows onto PE sets, each
   PE running one 1-D row convolution. Buffer accesses follow from the fold counts.
2. *Buffer level.* A tiling (output rows x filters x channels) and a loop order are searched over a
   candidate grid, all candidates at once in numpy: DRAM refetches follow Timeloop's rule (a tile
   is refetched by every outer loop, except the innermost run of loops that do not index it),
   tiles must fit the (double-buffered) SRAMs, and the latency is the compute time stretched by any
   DRAM-bandwidth shortfall plus the first tile's load. The winner minimises latency (or EDP).

Bit-widths and sparsity act on the reduction dimension, where the hardware would: a PE fuses
``(native/p_w)(native/p_a)`` low-bit MACs per cycle (Bit Fusion) or needs several passes for wide
operands (see `hwsearch.hwmodel.spec`); zero-skipping hardware executes only non-zero weights and
N:M hardware only the N of every M. Written by hand rather than through Timeloop or ZigZag because
co-search needs a few microseconds per layer, not seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from hwsearch.errors import SpecError
from hwsearch.hwmodel.spec import Accelerator
from hwsearch.ir import LayerSpec

# Element operations per element of the vector unit (softmax: max, subtract, exp, sum, divide;
# norm: mean, variance, normalise, affine).
VECTOR_OPS_PER_ELEM = {"softmax": 5, "norm": 4, "eltwise": 1, "pool": 1}
ACC_BITS = 32  # partial sums are kept and spilled at accumulator width
OBJECTIVES = ("latency", "energy", "edp")


@dataclass(frozen=True)
class Problem:
    """A MAC layer in the mapper's terms: ``reps`` independent conv-like products."""

    reps: int          # groups (conv) or batched products (matmul); nothing is shared across reps
    n: int             # samples per rep
    kf: int            # filters per rep
    cr: int            # reduction channels per rep
    r: int
    s: int
    h: int             # output rows (per sample)
    w: int             # output columns
    in_rows: int       # padded input rows of one sample
    in_cols: int       # padded input columns
    stride: int

    @property
    def pixels(self) -> int:
        return self.n * self.h * self.w

    @property
    def window(self) -> int:
        return self.cr * self.r * self.s


def problem(layer: LayerSpec) -> Problem:
    """The conv-like view of a MAC layer (gemm as a 1x1 convolution over rows of tokens)."""
    if layer.op in ("conv", "dwconv"):
        g = layer.groups
        return Problem(g, layer.n, layer.k // g, layer.c // g, layer.r, layer.s, layer.h, layer.w,
                       layer.in_h + 2 * layer.pad, layer.in_w + 2 * layer.pad, layer.stride)
    if layer.op == "linear":
        rows = layer.n * layer.m
        return Problem(1, 1, layer.k, layer.c, 1, 1, rows, 1, rows, 1, 1)
    if layer.op == "matmul":
        return Problem(layer.n, 1, layer.k, layer.c, 1, 1, layer.m, 1, layer.m, 1, 1)
    raise SpecError(f"layer {layer.name or layer.op!r}: op {layer.op!r} has no MACs to map")


# ---- precision and sparsity -------------------------------------------------------------------------
def run_width(bits: int, accel: Accelerator) -> tuple[int, int]:
    """(width of one pass, passes) with which the PE runs an operand of ``bits`` bits."""
    if bits <= accel.native_bits:
        return min(p for p in accel.precisions if p >= bits), 1
    return accel.native_bits, -(-bits // accel.native_bits)


def macs_per_pe_cycle(layer: LayerSpec, accel: Accelerator) -> float:
    """MACs of the layer's bit-widths that one PE completes per cycle (Bit Fusion scaling)."""
    pw, nw = run_width(layer.w_bits, accel)
    pa, na = run_width(layer.a_bits, accel)
    nb = accel.native_bits
    return (nb / pw) * (nb / pa) / (nw * na)


def mac_widths(layer: LayerSpec, accel: Accelerator) -> tuple[int, int, int]:
    """(weight width, activation width, passes) of each executed MAC, for its energy."""
    pw, nw = run_width(layer.w_bits, accel)
    pa, na = run_width(layer.a_bits, accel)
    return pw, pa, nw * na


def kept_share(layer: LayerSpec, accel: Accelerator) -> float:
    """Share of the reduction the hardware executes (sparsity it can skip)."""
    if not layer.has_weights:
        return 1.0
    if accel.sparsity == "zero_skip":
        return layer.weight_density
    if accel.sparsity == "nm" and layer.nm is not None:
        return layer.nm[0] / layer.nm[1]
    return 1.0


def stored_weight_bytes_per_weight(layer: LayerSpec, accel: Accelerator) -> float:
    """Bytes stored per dense weight position: compressed with index metadata where supported."""
    wb = layer.w_bits / 8
    if not layer.has_weights:
        return layer.a_bits / 8  # matmul's second operand is an activation
    if accel.sparsity == "zero_skip" and layer.weight_density < 1.0:
        return wb * layer.weight_density + 1 / 8  # one-bit occupancy map per dense position
    if accel.sparsity == "nm" and layer.nm is not None:
        n, m = layer.nm
        return (wb + math.ceil(math.log2(m)) / 8) * n / m  # value plus position within its block
    return wb


# ---- array level ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ArrayMap:
    """What the array level decides: cycles and buffer <-> array accesses (elements)."""

    compute_cycles: int
    ifmap_reads: float
    weight_reads: float
    out_writes: float      # final outputs and spilled partial sums written to the buffer
    psum_reads: float
    folds: int
    rows_used: int = 0     # PE rows and columns the unrolling occupies (0: not reported)
    cols_used: int = 0
    rf_bytes_used: float = 0.0  # register-file bytes one PE keeps resident
    unroll: str = ""       # the spatial unrolling, in words (mapping search only)


def fold_cycles(folds: Any, stream: Any, fill: int, accel: Accelerator) -> Any:
    """Cycles of ``folds`` systolic folds that stream ``stream`` cycles each (ints or numpy arrays).

    SCALE-Sim's count: every fold pays its ``fill`` and drain, and the count ends one cycle before the
    last drain (a 1x1 array has no drain to lose). With ``accel.pipelined_folds`` they overlap the next
    fold, which still takes at least the one cycle per PE row its stationary tile needs to shift in."""
    if accel.pipelined_folds:
        return np.maximum(folds * stream, folds * np.maximum(stream, accel.pe_rows) + fill - 1)
    return np.maximum(folds * stream, folds * (stream + fill) - 1)


def array_map(layer: LayerSpec, accel: Accelerator) -> ArrayMap:
    """Cycles and buffer accesses of a MAC layer on the accelerator's array."""
    p = problem(layer)
    rho = kept_share(layer, accel)
    f = macs_per_pe_cycle(layer, accel)
    red_t = max(1, math.ceil(p.window * rho / f))       # reduction length in PE-cycles
    red_e = max(1, math.ceil(p.window * rho))           # reduction elements actually moved
    R, C = accel.pe_rows, accel.pe_cols
    if accel.dataflow == "rs":
        return _rs_map(p, layer, accel, rho, f)
    if accel.dataflow == "os":
        sr, sc, t, t_e = p.pixels, p.kf, red_t, red_e
        fill = R + C - 2
    elif accel.dataflow == "ws":
        sr, sc, t, t_e = red_t, p.kf, p.pixels, p.pixels
        fill = 2 * R + C - 2
    else:  # "is"
        sr, sc, t, t_e = red_t, p.pixels, p.kf, p.kf
        fill = 2 * R + C - 2
    rf, cf = -(-sr // R), -(-sc // C)
    folds = rf * cf
    cycles = int(fold_cycles(p.reps * folds, t, fill, accel))
    # Element counts with the reduction at its moved (not time-compressed) length.
    scale = red_e / red_t if accel.dataflow in ("ws", "is") else 1.0
    if accel.dataflow == "os":
        ifm, wts, outw, psr = cf * sr * t_e, rf * sc * t_e, float(sr * sc), 0.0
    elif accel.dataflow == "ws":
        wts = sr * scale * sc
        ifm = cf * sr * scale * t
        outw, psr = rf * sc * t, (rf - 1) * sc * t
    else:
        ifm = sr * scale * sc
        wts = cf * sr * scale * t
        outw, psr = rf * sc * t, (rf - 1) * sc * t
    r = p.reps
    return ArrayMap(cycles, r * ifm, r * wts, r * outw, r * psr, p.reps * folds, min(sr, R), min(sc, C))


def _rs_map(p: Problem, layer: LayerSpec, accel: Accelerator, rho: float, f: float) -> ArrayMap:
    """Row-stationary: PE sets of filter rows x output rows, one 1-D row convolution per PE."""
    R, C = accel.pe_rows, accel.pe_cols
    if p.r == 1 and p.s == 1 and layer.op in ("linear", "matmul"):
        # A GEMM runs as a dot product per PE: one "filter row" of the whole reduction length.
        n, cr, r, s, h, w, in_rows_strip = 1, 1, 1, p.window, p.pixels, 1, None
    else:
        n, cr, r, s, h, w, in_rows_strip = p.n, p.cr, p.r, p.s, p.h, p.w, True
    set_h, r_fold = min(r, R), -(-r // R)
    e = min(h, C)
    strips = -(-h // e)
    sets = max(1, (R // set_h) * (C // e))
    jobs = p.reps * n * p.kf * cr * strips * r_fold
    per_job = max(1, math.ceil(s * w * rho / f))
    passes = -(-jobs // sets)
    cycles = passes * per_job + R + C - 2
    wbytes = layer.w_bits / 8 if layer.has_weights else layer.a_bits / 8
    # Eyeriss keeps p filters in each PE's register file, so an ifmap row serves p filters at once;
    # vertically stacked sets accumulate q channels spatially before a partial sum leaves the array.
    pf = int(min(p.kf, max(1, (accel.rf_bytes // 2) // max(1, int(s * wbytes)))))
    q = max(1, R // set_h)
    weights = p.reps * p.kf * p.window * rho
    wts = weights * (n * strips if in_rows_strip else strips)
    if in_rows_strip:
        rows_in = min(p.in_rows, (e - 1) * p.stride + r)
        ifm = p.reps * n * cr * strips * rows_in * p.in_cols * -(-p.kf // pf)
    else:
        ifm = p.reps * p.pixels * p.window * -(-p.kf // pf) / max(1, C // e)
    outs = p.reps * p.n * p.kf * p.h * p.w
    chunks = -(-cr // q) * r_fold
    return ArrayMap(int(cycles), float(ifm), float(wts), float(outs * chunks), float(outs * (chunks - 1)),
                    int(passes), (R // set_h) * set_h, (C // e) * e)


# ---- buffer level -----------------------------------------------------------------------------------
@lru_cache(maxsize=4096)
def _candidates(n: int) -> tuple[int, ...]:
    """Powers of two below ``n``, and ``n`` itself."""
    return tuple(sorted({1 << i for i in range(n.bit_length()) if (1 << i) < n} | {n}))


@dataclass(frozen=True)
class Tiling:
    """The buffer level's choice and the DRAM traffic it implies (bytes)."""

    rows: int
    filters: int
    channels: int
    order: str             # innermost loop: R (rows), K (filters) or C (channels)
    double_buffered: bool
    dram_read: float
    dram_write: float
    dram_ifmap: float
    dram_weight: float
    prologue_cycles: float
    latency_cycles: float
    buffer_bytes: tuple[float, float, float] = (0.0, 0.0, 0.0)  # ifmap, weight, output bytes held (x2 if double-buffered)


@dataclass(frozen=True)
class _Grid:
    """Every candidate tiling of one layer, flattened, with its accelerator-independent traffic."""

    rt: np.ndarray
    kt: np.ndarray
    ct: np.ndarray
    i_t: np.ndarray        # tile footprints (bytes)
    w_t: np.ndarray
    o_t: np.ndarray
    ifm: np.ndarray        # (3, n): DRAM bytes per innermost-loop choice
    wts: np.ndarray
    rd: np.ndarray
    wr: np.ndarray


# A grid takes 1-150 KB, so a few thousand layers' grids stay well under a gigabyte.
@lru_cache(maxsize=2048)
def _grid(layer: LayerSpec, w_per: float) -> _Grid:
    """Candidate tilings of ``layer`` (``w_per``: stored bytes per dense weight) and their traffic."""
    p = problem(layer)
    gemm = layer.op in ("linear", "matmul")
    a_b, acc_b = layer.a_bits / 8, ACC_BITS / 8
    rows_total = p.n * p.h
    rc, kc, cc = (np.array(_candidates(x), dtype=np.float64) for x in (rows_total, p.kf, p.cr))
    rt, kt, ct = (g.ravel() for g in np.meshgrid(rc, kc, cc, indexing="ij"))
    nR, nK, nC = np.ceil(rows_total / rt), np.ceil(p.kf / kt), np.ceil(p.cr / ct)
    if gemm:
        in_rows_t = rt
        in_rows_sweep = np.full_like(rt, float(rows_total))
    else:
        within = np.minimum(p.in_rows, (np.minimum(rt, p.h) - 1) * p.stride + p.r)
        in_rows_t = np.where(rt <= p.h, within, np.ceil(rt / p.h) * p.in_rows)
        in_rows_sweep = nR * in_rows_t
    i_t = ct * in_rows_t * p.in_cols * a_b
    w_t = kt * ct * p.r * p.s * w_per
    o_t = rt * p.w * kt * acc_b
    # Sweeps use exact tensor sizes, so edge tiles are not counted as full ones.
    reps = p.reps
    i_sweep = p.cr * in_rows_sweep * p.in_cols * a_b * reps
    w_all = p.kf * p.cr * p.r * p.s * w_per * reps
    o_final = rows_total * p.w * p.kf * a_b * reps
    o_psum = rows_total * p.w * p.kf * acc_b * reps
    # Each tensor misses exactly one of the three loops (ifmap: K, weights: R, outputs: C), so by
    # Timeloop's refetch rule only the innermost loop matters: the tensor it does not index stays
    # resident, the other two are refetched by the loop they do not index.
    spill = (nC - 1) * o_psum
    zero = np.zeros_like(rt)
    ifm = np.stack([i_sweep * nK, i_sweep + zero, i_sweep * nK])          # innermost R, K, C
    wts = np.stack([w_all + zero, w_all * nR, w_all * nR])
    spills = np.stack([spill, spill, zero])
    rd = ifm + wts + spills
    wr = o_final + spills
    return _Grid(rt, kt, ct, i_t, w_t, o_t, ifm, wts, rd, wr)


def _capacities(accel: Accelerator) -> tuple[float, float, float, float]:
    if accel.unified:
        return float(accel.glb_bytes), math.inf, math.inf, math.inf
    return math.inf, float(accel.ifmap_sram_bytes), float(accel.filter_sram_bytes), float(accel.ofmap_sram_bytes)


# Mappings within this share of the fastest count as equally fast; among them the one moving the
# fewest DRAM bytes wins (a few cycles of first-tile load are not worth megabytes of refetches).
LATENCY_SLACK = 0.02


def tile_search(layers: list[LayerSpec], accel: Accelerator, compute_cycles: list[int], objective: str = "latency",
                base_pj: list[float] | None = None, pj_per_dram_byte: float = 0.0) -> list[Tiling]:
    """Best tiling and innermost loop at the buffer level for each layer, all candidates of all
    layers costed in one set of array operations.

    ``objective="edp"`` minimises latency x (``base_pj`` + DRAM bytes x ``pj_per_dram_byte``),
    ``"energy"`` the energy term alone.
    """
    if objective not in OBJECTIVES:
        raise SpecError(f"mapping objective {objective!r} is unknown; use one of {', '.join(OBJECTIVES)}")
    grids = [_grid(layer, stored_weight_bytes_per_weight(layer, accel)) for layer in layers]
    sizes = np.array([g.rt.size for g in grids])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    seg = np.repeat(np.arange(len(grids)), sizes)
    cat = lambda name, axis=0: np.concatenate([getattr(g, name) for g in grids], axis=axis)  # noqa: E731
    i_t, w_t, o_t = cat("i_t"), cat("w_t"), cat("o_t")
    rd, wr = cat("rd", 1), cat("wr", 1)
    cap_g, cap_i, cap_w, cap_o = _capacities(accel)
    if accel.dataflow in ("rs", "ws"):
        # Weight-holding dataflows keep a weight tile that fits (double-buffered) in the PEs' register
        # files there (Eyeriss' filter scratchpads), so it takes no buffer space.
        rf_total = accel.rf_bytes * accel.num_pes
        w_buf = np.where(2 * w_t <= rf_total, 0.0, w_t)
    else:
        w_buf = w_t
    need = i_t + w_buf + o_t
    fit2 = (2 * need <= cap_g) & (2 * i_t <= cap_i) & (2 * w_buf <= cap_w) & (2 * o_t <= cap_o)
    fit1 = (need <= cap_g) & (i_t <= cap_i) & (w_buf <= cap_w) & (o_t <= cap_o)
    fits_any = np.maximum.reduceat(fit1, starts)
    if not fits_any.all():
        j = int(np.flatnonzero(~fits_any)[0])
        smallest = float(need[seg == j].min())
        where = "global buffer" if accel.unified else "ifmap/filter/ofmap SRAMs"
        raise SpecError(
            f"accelerator {accel.name!r}: the {where} ({accel.buffer_bytes} bytes) cannot hold even the "
            f"smallest tile of layer {layers[j].name or layers[j].key!r} ({smallest:.0f} bytes); enlarge the buffers"
        )
    bw = accel.dram_bw
    cc = np.asarray(compute_cycles, dtype=np.float64)[seg]
    traffic = rd + wr
    dram = traffic / bw
    prologue = (i_t + w_t) / bw
    lat = np.where(fit2, np.maximum(cc, dram) + prologue, cc + dram)
    lat = np.where(fit1, lat, np.inf)
    if objective in ("edp", "energy"):
        base = np.asarray(base_pj if base_pj is not None else [0.0] * len(layers), dtype=np.float64)[seg]
        energy = base + traffic * pj_per_dram_byte
        score, slack = (lat * energy if objective == "edp" else np.where(np.isfinite(lat), energy, np.inf)), 1e-12
    else:
        score, slack = lat, LATENCY_SLACK
    best = np.minimum.reduceat(score.min(axis=0), starts)
    ok = score <= best[seg] * (1 + slack)
    masked = np.where(ok, traffic, np.inf)
    least = np.minimum.reduceat(masked.min(axis=0), starts)
    hit = masked == least[seg]
    # First hit of each layer, found for all layers at once.
    cols = np.flatnonzero(hit.any(axis=0))
    _, first = np.unique(seg[cols], return_index=True)
    ks = cols[first]
    os_ = hit[:, ks].argmax(axis=0)
    rows = starts.tolist()
    out = []
    for j, (g, k, o) in enumerate(zip(grids, ks.tolist(), os_.tolist(), strict=True)):
        i = k - rows[j]
        out.append(Tiling(
            rows=int(g.rt[i]), filters=int(g.kt[i]), channels=int(g.ct[i]), order="RKC"[o],
            double_buffered=bool(fit2[k]), dram_read=float(rd[o, k]), dram_write=float(wr[o, k]),
            dram_ifmap=float(g.ifm[o, i]), dram_weight=float(g.wts[o, i]),
            prologue_cycles=float(prologue[k]), latency_cycles=float(lat[o, k]),
            buffer_bytes=tuple(float(x) * (2 if fit2[k] else 1) for x in (i_t[k], w_buf[k], o_t[k])),
        ))
    return out
