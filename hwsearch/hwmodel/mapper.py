"""Mapping search: the spatial unrollings an accelerator's array allows for one layer, costed at once.

`hwsearch.hwmodel.mapping.array_map` (the ``fast`` mode) maps every layer one fixed way per
dataflow. This module enumerates the alternatives the same hardware could run and keeps the few
worth a buffer-level tiling search (`hwsearch.hwmodel.cost` does the rest and picks the winner for
the objective, never one worse than ``fast``):

- *Row-stationary* (Eyeriss): the height of a PE set (filter rows, folded when a tall filter would
  leave rows idle: a 7-row filter as 4 + 3 rows lets three sets share 12 PE rows instead of one)
  and the output rows per set (strip width), so that several sets sit side by side and serve other
  filters, channels and strips, as Eyeriss replicates its sets for small layers (Chen et al., ISCA
  2016, section V). Each PE keeps as many filters as its register file holds (the filter row split
  into chunks when one row does not fit).
- *Weight- and input-stationary systolic arrays*: groups of a grouped or depthwise convolution
  packed block-diagonally, when one group's reduction leaves rows idle.
- *Output-stationary systolic arrays*: output pixels on rows and filters on columns, or the
  transpose, which differs on non-square arrays.

All candidates of a layer are costed as numpy arrays. Written by hand because Timeloop and ZigZag
are not Python libraries one can call per layer inside a search, and a general loop-nest mapper
costs seconds per layer where co-search needs milliseconds: the space here is only the unrollings
this model's dataflows can express, pruned to the (cycles, on-chip energy) Pareto front.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hwsearch.hwmodel.mapping import (
    ArrayMap,
    Problem,
    fold_cycles,
    kept_share,
    macs_per_pe_cycle,
    problem,
    run_width,
)
from hwsearch.hwmodel.spec import Accelerator
from hwsearch.ir import LayerSpec

# Candidates kept per layer for the buffer-level search: the fastest, the leanest and a few between.
KEEP = 4


def _ceil(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    return -(-np.asarray(a) // np.asarray(b))


def run_bytes(layer: LayerSpec, accel: Accelerator) -> tuple[float, float]:
    """Bytes of one weight and one activation word as a PE holds them (one pass of a wide operand)."""
    wbits = layer.w_bits if layer.has_weights else layer.a_bits
    return run_width(wbits, accel)[0] / 8, run_width(layer.a_bits, accel)[0] / 8


def rs_register_plan(s: int, kf: int, rf_bytes: int, wb: float, ab: float) -> tuple[int, int, float]:
    """(filters per PE, filter-row chunk, bytes used): the most filters whose rows, one ifmap row and
    one partial sum per filter fit a PE's register file; a row too long for it is split in chunks."""
    if s * (wb + ab) + ab <= rf_bytes:
        s_t = s
        pf = int(min(kf, max(1, (rf_bytes - s * ab) // (s * wb + ab))))
    else:
        s_t = int(max(1, (rf_bytes - ab) // (wb + ab)))
        pf = 1
    return pf, s_t, pf * s_t * wb + s_t * ab + pf * ab


def _balanced(n: int, most: int) -> list[int]:
    """Distinct widths that split ``n`` into equal-as-possible parts of at most ``most``."""
    return sorted({-(-n // k) for k in range(max(1, -(-n // most)), n + 1) if -(-n // k) <= most})


def _rs(p: Problem, layer: LayerSpec, accel: Accelerator, rho: float, f: float) -> dict[str, Any]:
    R, C = accel.pe_rows, accel.pe_cols
    gemm = p.r == 1 and p.s == 1 and layer.op in ("linear", "matmul")
    if gemm:
        n, cr, r, s, h, w = 1, 1, 1, p.window, p.pixels, 1
    else:
        n, cr, r, s, h, w = p.n, p.cr, p.r, p.s, p.h, p.w
    set_hs = _balanced(r, R)
    widths = _balanced(h, C)
    sh, e = (g.ravel() for g in np.meshgrid(np.array(set_hs), np.array(widths), indexing="ij"))
    r_fold, strips = _ceil(r, sh), _ceil(h, e)
    sets = (R // sh) * (C // e)
    jobs = p.reps * n * p.kf * cr * strips * r_fold
    per_job = max(1, math.ceil(s * w * rho / f))
    passes = _ceil(jobs, sets)
    cycles = passes * per_job + R + C - 2
    wb, ab = run_bytes(layer, accel)
    pf, _, rf_used = rs_register_plan(s, p.kf, accel.rf_bytes, wb, ab)
    q = R // sh
    weights = p.reps * p.kf * p.window * rho
    if gemm:
        wts = weights * strips
        ifm = p.reps * p.pixels * p.window * -(-p.kf // pf) / np.maximum(1, C // e)
    else:
        wts = weights * n * strips
        rows_in = np.minimum(p.in_rows, (e - 1) * p.stride + r)
        ifm = p.reps * n * cr * strips * rows_in * p.in_cols * -(-p.kf // pf)
    outs = p.reps * p.n * p.kf * p.h * p.w
    chunks = _ceil(cr, q) * r_fold

    def label(i: int) -> str:
        a, b = int(sh[i]), int(e[i])
        return f"rs: sets of {a} filter rows x {b} output rows, {(R // a) * (C // b)} sets, {pf} filters per PE"

    return {"cycles": cycles, "ifm": ifm.astype(float), "wts": wts.astype(float), "outw": (outs * chunks).astype(float),
            "psr": (outs * (chunks - 1)).astype(float), "folds": passes, "rows": q * sh, "cols": (C // e) * e,
            "rf": np.full(sh.shape, rf_used), "label": label}


def _systolic(p: Problem, layer: LayerSpec, accel: Accelerator, rho: float, f: float) -> dict[str, Any]:
    R, C = accel.pe_rows, accel.pe_cols
    red_t = max(1, math.ceil(p.window * rho / f))
    red_e = max(1, math.ceil(p.window * rho))
    df = accel.dataflow
    wb, ab = run_bytes(layer, accel)
    if df == "os":
        # Orientation 0: pixels on rows, filters on columns; 1: the transpose.
        sr = np.array([p.pixels, p.kf])
        sc = np.array([p.kf, p.pixels])
        u = np.ones(2, dtype=np.int64)
        t, t_e, fill = red_t, red_e, R + C - 2
        names = ["os: output pixels on rows, filters on columns", "os: filters on rows, output pixels on columns"]
    else:
        # Reduction chunks of ``c`` rows (``k`` per group), ``u`` of them side by side on the diagonal:
        # each chunk has its own column block, so the array's idle rows and columns take other chunks
        # of the same group or other groups, whose partial sums meet in the output buffer.
        grid = [(c, u) for c in _balanced(red_t, R) for u in range(1, min(R // c, p.reps * -(-red_t // c)) + 1)]
        cc, u = (np.array(x, dtype=np.int64) for x in zip(*grid, strict=True))
        k = _ceil(red_t, cc)
        base_c, t, t_e = (p.kf, p.pixels, p.pixels) if df == "ws" else (p.pixels, p.kf, p.kf)
        sr, sc = u * cc, u * base_c
        fill = 2 * R + C - 2
        names = lambda i: f"{df}: reduction in chunks of {cc[i]} rows, {u[i]} chunk(s) side by side"  # noqa: E731
        cf = _ceil(sc, C)
        rounds = _ceil(p.reps * k, u)
        cycles = fold_cycles(rounds * cf, t, fill, accel)
        scale = red_e / red_t
        stat = np.full(u.shape, p.reps * red_t * scale * base_c)
        stream = rounds * cf * u * cc * scale * t
        outw = (p.reps * k * base_c * t).astype(float)
        psr = (p.reps * (k - 1) * base_c * t).astype(float)
        ifm, wts = (stream, stat) if df == "ws" else (stat, stream)
        return {"cycles": cycles, "ifm": ifm.astype(float), "wts": wts.astype(float), "outw": outw, "psr": psr,
                "folds": rounds * cf, "rows": np.minimum(sr, R), "cols": np.minimum(sc, C),
                "rf": np.full(u.shape, wb + 2 * ab), "label": names}
    rf, cf = _ceil(sr, R), _ceil(sc, C)
    folds = rf * cf
    rounds = _ceil(p.reps, u)
    cycles = fold_cycles(rounds * folds, t, fill, accel)
    # The operand on rows is read once per column fold, the one on columns once per row fold.
    pix_on_rows = np.array([True, False])
    ifm = np.where(pix_on_rows, cf, rf) * p.pixels * t_e * p.reps
    wts = np.where(pix_on_rows, rf, cf) * p.kf * t_e * p.reps
    outw = np.full(2, float(p.pixels * p.kf * p.reps))
    psr = np.zeros(2)
    rows, cols = np.minimum(sr, R), np.minimum(sc, C)
    return {"cycles": cycles, "ifm": ifm.astype(float), "wts": wts.astype(float), "outw": outw.astype(float),
            "psr": psr.astype(float), "folds": rounds * folds, "rows": rows, "cols": cols,
            "rf": np.full(u.shape, wb + 2 * ab), "label": names.__getitem__}


def array_candidates(layer: LayerSpec, accel: Accelerator, buffer_pj: tuple[float, float, float, float],
                     noc_pj: float, w_store: float) -> list[ArrayMap]:
    """The array-level mappings of a MAC layer worth a tiling search: the (cycles, on-chip access
    energy) Pareto front, at most `KEEP` of them. ``buffer_pj`` are the per-byte energies of ifmap
    reads, weight reads, output reads and output writes."""
    p = problem(layer)
    rho, f = kept_share(layer, accel), macs_per_pe_cycle(layer, accel)
    # Each candidate's arrays by name; "label" gives a candidate's description, made only for those kept.
    c = (_rs if accel.dataflow == "rs" else _systolic)(p, layer, accel, rho, f)
    a_b = layer.a_bits / 8
    e_i, e_w, e_or, e_ow = buffer_pj
    moved = c["ifm"] * a_b + c["wts"] * w_store + c["psr"] * a_b + c["outw"] * a_b
    energy = (c["ifm"] * a_b * e_i + c["wts"] * w_store * e_w + c["psr"] * a_b * e_or + c["outw"] * a_b * e_ow
              + moved * noc_pj)
    order = np.lexsort((energy, c["cycles"]))
    front, best_e = [], np.inf
    for i in order.tolist():
        if energy[i] < best_e * (1 - 1e-12):
            front.append(i)
            best_e = energy[i]
    if len(front) > KEEP:
        picks = np.unique(np.round(np.linspace(0, len(front) - 1, KEEP)).astype(int))
        front = [front[k] for k in picks.tolist()]
    return [ArrayMap(int(c["cycles"][i]), float(c["ifm"][i]), float(c["wts"][i]), float(c["outw"][i]),
                     float(c["psr"][i]), int(c["folds"][i]), int(c["rows"][i]), int(c["cols"][i]),
                     float(c["rf"][i]), c["label"](i)) for i in front]
