"""A spatial unrolling the user fixes: which loop dimensions, and how many of each, sit on PE rows and columns.

The mapper (`hwsearch.hwmodel.mapper`) chooses the unrolling itself; this module costs a layer
under one given from outside: the unrolling a design is known to run (a TPU keeps filters on its
columns and input channels on its rows), or the one a peer tool's mapping states, so that a cost
can be compared with that tool's on the same mapping. The dimensions are those of the layer's
conv-like view (`hwsearch.hwmodel.mapping.Problem`), in `LayerSpec`'s letters.

The array level follows the same rules as the model's own dataflows. On a systolic array (ws, os,
is) the tensor the dataflow keeps in the PEs (weights, outputs, inputs) is loaded once per fold,
the dimensions that do not index it stream through every fold, and every fold pays the fill of
`hwsearch.hwmodel.mapping.fold_cycles`. On a row-stationary array each PE runs a 1-D convolution of
a filter-row chunk over an output-row segment, as in Eyeriss. Either way a tensor is fetched again
from the buffer for every temporal step of a dimension that does not index it and is not kept in
the PEs. The buffer-level tiling is then searched as in every mode (`hwsearch.hwmodel.cost`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from hwsearch.errors import SpecError
from hwsearch.hwmodel.mapper import rs_register_plan, run_bytes
from hwsearch.hwmodel.mapping import ArrayMap, fold_cycles, kept_share, macs_per_pe_cycle, problem
from hwsearch.hwmodel.spec import Accelerator
from hwsearch.ir import LayerSpec

# g: groups (a matmul's batch of products); n: samples; k: filters (output channels per group);
# c: input channels per group; r, s: filter rows and columns; h, w: output rows and columns. A
# linear or matmul layer's rows of tokens (LayerSpec's m, times n for a linear) are h.
DIMS = ("g", "n", "k", "c", "r", "s", "h", "w")

Side = tuple[tuple[str, int], ...]


def _side(entries: Mapping[str, int] | Iterable[tuple[str, int]], which: str) -> Side:
    items = tuple(entries.items() if isinstance(entries, Mapping) else entries)
    out = []
    for dim, factor in items:
        if dim not in DIMS:
            raise SpecError(f"unrolling {which}: dimension {dim!r} is unknown; use {', '.join(DIMS)}")
        if not isinstance(factor, int) or isinstance(factor, bool) or factor < 1:
            raise SpecError(f"unrolling {which}: {dim}={factor!r} must be a positive integer")
        out.append((dim, factor))
    return tuple(out)


@dataclass(frozen=True)
class Unrolling:
    """Loop dimensions and factors side by side on the PE rows and on the PE columns, each side a
    sequence of (dimension, factor) pairs, outermost first (a dict is accepted too).

    A factor larger than the layer's dimension is cut to it, and a dimension the layer lacks has
    size 1, so one unrolling serves every layer of a network (the PEs left over sit idle)."""

    rows: Side = ()
    cols: Side = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "rows", _side(self.rows, "rows"))
        object.__setattr__(self, "cols", _side(self.cols, "cols"))

    @classmethod
    def parse(cls, text: str) -> Unrolling:
        """Read ``"rows=c:3,r:3 cols=k:8"`` (either side may be left out)."""
        sides: dict[str, list[tuple[str, int]]] = {"rows": [], "cols": []}
        for part in text.split():
            side, _, body = part.partition("=")
            if side not in sides or not body:
                raise SpecError(f"unrolling {text!r}: expected 'rows=DIM:FACTOR,...' and/or 'cols=DIM:FACTOR,...'")
            for item in body.split(","):
                dim, _, factor = item.partition(":")
                if not factor.isdigit():
                    raise SpecError(f"unrolling {text!r}: {item!r} must be DIM:FACTOR, e.g. k:8")
                sides[side].append((dim, int(factor)))
        return cls(tuple(sides["rows"]), tuple(sides["cols"]))

    def __str__(self) -> str:
        show = lambda side: ",".join(f"{d}:{f}" for d, f in side) or "-"  # noqa: E731
        return f"rows={show(self.rows)} cols={show(self.cols)}"

    @property
    def pes(self) -> tuple[int, int]:
        """PE rows and columns the unrolling asks for (before cutting factors to a layer)."""
        return math.prod(f for _, f in self.rows), math.prod(f for _, f in self.cols)

    def factor(self, dim: str) -> int:
        """How many of ``dim`` sit side by side, over both sides."""
        return math.prod(f for d, f in self.rows + self.cols if d == dim)

    def check(self, accel: Accelerator) -> None:
        """Raise `SpecError` when the array has fewer PE rows or columns than the unrolling needs."""
        rows, cols = self.pes
        if rows > accel.pe_rows or cols > accel.pe_cols:
            raise SpecError(f"unrolling {self} needs {rows} x {cols} PEs; accelerator {accel.name!r} has "
                            f"{accel.pe_rows} rows x {accel.pe_cols} columns")


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def unrolled_map(layer: LayerSpec, accel: Accelerator, unroll: Unrolling) -> ArrayMap:
    """Cycles and buffer accesses of a MAC layer on the accelerator's array under ``unroll``."""
    unroll.check(accel)
    p = problem(layer)
    gemm_rs = accel.dataflow == "rs" and layer.op in ("linear", "matmul")
    size = {"g": p.reps, "n": p.n, "k": p.kf, "c": p.cr, "r": p.r, "s": p.s, "h": p.h, "w": p.w}
    # The PEs a dimension occupies on each side: factors cut to what is left of the dimension.
    used, left = {"rows": 1, "cols": 1}, dict(size)
    spatial = dict.fromkeys(DIMS, 1)
    for side, entries in (("rows", unroll.rows), ("cols", unroll.cols)):
        for dim, factor in entries:
            take = min(factor, left[dim])
            used[side] *= take
            spatial[dim] *= take
            left[dim] = _ceil(left[dim], take)
    t = {d: _ceil(size[d], spatial[d]) for d in DIMS}
    rho, f = kept_share(layer, accel), macs_per_pe_cycle(layer, accel)
    red_t = max(1, math.ceil(t["c"] * t["r"] * t["s"] * rho / f))   # temporal reduction steps, in PE-cycles
    red_e = max(1, math.ceil(p.window * rho))                        # reduction elements actually moved
    pix = t["n"] * t["h"] * t["w"]
    wb, ab = run_bytes(layer, accel)
    i_view = p.reps * p.pixels * red_e            # the operands as the array sees them (im2col view)
    w_all = p.reps * p.kf * red_e
    o_all = p.reps * p.pixels * p.kf
    R, C = accel.pe_rows, accel.pe_cols
    df = accel.dataflow
    if df == "rs":
        # One PE job: a filter-row chunk slid over an output-row segment; partial sums of the
        # channels and filter rows on the array meet in it, the temporal ones spill to the buffer.
        per_job = max(1, math.ceil(t["s"] * t["w"] * rho / f))
        passes = t["g"] * t["n"] * t["k"] * t["c"] * t["r"] * t["h"]
        cycles, folds = passes * per_job + R + C - 2, passes
        pf, _, rf_used = rs_register_plan(t["s"], t["k"], accel.rf_bytes, wb, ab)
        raw_in = p.reps * p.n * p.cr * p.in_rows * p.in_cols if not gemm_rs else p.reps * p.pixels * p.window
        ifm = raw_in * _ceil(t["k"], pf)
        wts = w_all * t["n"] * t["h"]
        chunks = t["c"] * t["r"]
    else:
        if df == "ws":
            folds, stream, fill = t["g"] * t["k"] * red_t, pix, 2 * R + C - 2
            ifm, wts, chunks = i_view * t["k"], w_all, red_t
        elif df == "os":
            folds, stream, fill = t["g"] * t["k"] * pix, red_t, R + C - 2
            ifm, wts, chunks = i_view * t["k"], w_all * pix, 1
        else:  # "is"
            folds, stream, fill = t["g"] * pix * red_t, t["k"], 2 * R + C - 2
            ifm, wts, chunks = i_view, w_all * pix, red_t
        cycles = int(fold_cycles(folds, stream, fill, accel))
        rf_used = wb + 2 * ab
    return ArrayMap(int(cycles), float(ifm), float(wts), float(o_all * chunks), float(o_all * (chunks - 1)),
                    int(folds), used["rows"], used["cols"], float(rf_used), f"given: {unroll}")
