"""The accelerator design space that NAAS evolves: PE array, register file, buffer, DRAM link,
dataflow, supported precisions and sparsity support, under area and peak-power limits.

A choice is a flat gene dict like a network space's, so sampling, mutation, crossover and the
option-index encoding (what Optuna and the joint baselines use) come from `SearchSpace`. What a
choice becomes is an `hwsearch.hwmodel.Accelerator`, not a network: `to_netspec` and `build` raise.

NAAS (Lin, Yang, Han, DAC 2021) evolves accelerators as real-valued vectors: sized parameters as
their position along an ordered list, and connectivity (which dimensions are spatial, in what
order) by *importance* scores that are sorted to decode. `to_vector` / `from_vector` give that
encoding here: ordered genes become one number in [0, 1], categorical genes (dataflow, precision
set, sparsity support) one importance score per option, decoded by taking the highest.

With ``sparse_options`` the space also searches attention and vector sparsity support
(`SPARSE_GENES`: ``sparse_attention``, ``vector_sparsity``, ``vector_length``), whose area
`hwsearch.hwmodel.energy.area_mm2` charges; without it (the default) those genes do not exist and
every design is what it was before they did. Gaussian
steps in this space move sizes to neighbouring values and switch a dataflow only when another
option's score overtakes, which is what makes evolution over categorical genes smooth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hwsearch.errors import ConfigError, SpecError
from hwsearch.hwmodel import Accelerator
from hwsearch.hwmodel.energy import TABLES
from hwsearch.ir import NetSpec
from hwsearch.spaces.base import Choice, Dim, SearchSpace, _py

if TYPE_CHECKING:
    import torch

KiB = 1024

# Precision sets a PE may support, by name: native multiplier width first, then the fused widths.
PRECISION_SETS: dict[str, tuple[int, tuple[int, ...]]] = {
    "8": (8, (8,)),
    "4-8": (8, (4, 8)),
    "2-4-8": (8, (2, 4, 8)),
    "16": (16, (16,)),
    "8-16": (16, (8, 16)),
}

DEFAULT_GENES: dict[str, tuple[Any, ...]] = {
    "pe_rows": (4, 8, 12, 16, 24, 32),
    "pe_cols": (4, 8, 12, 16, 24, 32),
    "rf_bytes": (16, 32, 64, 128, 256, 512),
    "glb_kib": (16, 32, 64, 128, 256, 512),
    "dram_bw": (4, 8, 16, 32),
    "dataflow": ("ws", "os", "is", "rs"),
    "precisions": ("8", "4-8", "2-4-8", "16", "8-16"),
    "sparsity": ("none", "zero_skip", "nm"),
}
# Attention and vector sparsity support (`hwsearch.hwmodel.sparse`), searched only when the space is
# built with ``sparse_options``: without it the genes, the vector layout and every sampled design stay
# as they were, so existing runs and their seeds reproduce.
SPARSE_GENES: dict[str, tuple[Any, ...]] = {
    "sparse_attention": (False, True),
    "vector_sparsity": ("none", "row", "col", "both"),
    "vector_length": (2, 4, 8),
}
CATEGORICAL = ("dataflow", "precisions", "sparsity")
SPARSE_CATEGORICAL = ("sparse_attention", "vector_sparsity")  # categorical genes of `SPARSE_GENES`
_CATEGORICAL = CATEGORICAL + SPARSE_CATEGORICAL


class AcceleratorSpace(SearchSpace):
    """Accelerators as gene dicts, with NAAS's vector encoding and area / peak-power limits."""

    name = "accelerator"

    def __init__(
        self,
        genes: Mapping[str, Sequence[Any]] | None = None,
        clock_hz: float = 500e6,
        tech: str = "45nm",
        max_area_mm2: float | None = 4.0,
        max_power_w: float | None = 2.0,
        sparse_options: bool = False,
    ) -> None:
        if not isinstance(sparse_options, bool):
            raise ConfigError(f"accelerator space: sparse_options={sparse_options!r} must be true or false")
        self.sparse_options = sparse_options
        known = {**DEFAULT_GENES, **SPARSE_GENES} if sparse_options else dict(DEFAULT_GENES)
        options = dict(known)
        for k, v in dict(genes or {}).items():
            if k in SPARSE_GENES and not sparse_options:
                raise ConfigError(f"accelerator space: gene {k!r} is searched only with sparse_options: true")
            if k not in known:
                raise ConfigError(f"accelerator space: gene {k!r} is unknown; known: {', '.join(known)}")
            v = tuple(v) if isinstance(v, (list, tuple)) else (v,)
            if not v or len(set(v)) != len(v):
                raise ConfigError(f"accelerator space: gene {k!r} needs a non-empty list without repeats, got {list(v)}")
            options[k] = v
        for p in options["precisions"]:
            if p not in PRECISION_SETS:
                raise ConfigError(f"accelerator space: precision set {p!r} is unknown; known: {', '.join(PRECISION_SETS)}")
        if tech not in TABLES:
            raise ConfigError(f"accelerator space: tech {tech!r} is unknown; known: {', '.join(sorted(TABLES))}")
        for f, v in (("max_area_mm2", max_area_mm2), ("max_power_w", max_power_w)):
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0):
                raise ConfigError(f"accelerator space: {f}={v!r} must be a positive number or null (no limit)")
        if isinstance(clock_hz, bool) or not isinstance(clock_hz, (int, float)) or clock_hz <= 0:
            raise ConfigError(f"accelerator space: clock_hz={clock_hz!r} must be a positive number")
        self.clock_hz, self.tech = float(clock_hz), tech
        self.max_area_mm2 = None if max_area_mm2 is None else float(max_area_mm2)
        self.max_power_w = None if max_power_w is None else float(max_power_w)
        for k, ok in (("sparse_attention", lambda o: isinstance(o, bool)),
                      ("vector_sparsity", lambda o: o in SPARSE_GENES["vector_sparsity"]),
                      ("vector_length", lambda o: isinstance(o, int) and not isinstance(o, bool) and o >= 1)):
            bad = [o for o in options.get(k, ()) if not ok(o)]
            if bad:
                raise ConfigError(f"accelerator space: gene {k!r} has invalid option(s) {bad}; "
                                  f"e.g. {list(SPARSE_GENES[k])}")
        self.dims = tuple(Dim(k, options[k]) for k in known)
        # Every option must give a valid accelerator on its own (e.g. rf_bytes vs a 16-bit word).
        for d in self.dims:
            for o in d.options:
                base = {x.name: x.options[-1] for x in self.dims}
                base[d.name] = o
                self.to_accelerator(base)
        self._slices = self._vector_layout()

    # ---- choice <-> Accelerator ------------------------------------------------------------------
    def to_accelerator(self, choice: Mapping[str, Any], name: str = "searched") -> Accelerator:
        """The `Accelerator` a choice describes (vector lanes follow the PE columns)."""
        c = self.validate(choice)
        native, precs = PRECISION_SETS[c["precisions"]]
        sparse: dict[str, Any] = {}
        if self.sparse_options:
            vs = c["vector_sparsity"]
            # The length gene means nothing without vector support (the spec wants 0 there).
            sparse = {"sparse_attention": bool(c["sparse_attention"]), "vector_sparsity": vs,
                      "vector_length": 0 if vs == "none" else int(c["vector_length"])}
        return Accelerator(
            pe_rows=int(c["pe_rows"]), pe_cols=int(c["pe_cols"]), rf_bytes=int(c["rf_bytes"]),
            glb_bytes=int(c["glb_kib"]) * KiB, dram_bw=float(c["dram_bw"]), clock_hz=self.clock_hz,
            dataflow=c["dataflow"], native_bits=native, precisions=precs, sparsity=c["sparsity"],
            vector_lanes=max(4, int(c["pe_cols"])), tech=self.tech, name=name, **sparse,
        )

    def violations(self, choice: Mapping[str, Any]) -> list[str]:
        """The limits ``choice`` breaks, as sentences (empty when it is feasible)."""
        a = self.to_accelerator(choice)
        out = []
        if self.max_area_mm2 is not None and a.area_mm2 > self.max_area_mm2:
            out.append(f"area {a.area_mm2:.3g} mm^2 exceeds max_area_mm2={self.max_area_mm2:g}")
        if self.max_power_w is not None and a.peak_power_w > self.max_power_w:
            out.append(f"peak power {a.peak_power_w:.3g} W exceeds max_power_w={self.max_power_w:g}")
        return out

    def feasible(self, choice: Mapping[str, Any]) -> bool:
        """Whether ``choice`` meets the area and peak-power limits."""
        return not self.violations(choice)

    def sample_feasible(self, rng: np.random.Generator, tries: int = 1000) -> Choice:
        """A uniformly random choice among those meeting the limits (rejection sampling)."""
        for _ in range(tries):
            c = self.sample(rng)
            if self.feasible(c):
                return c
        raise ConfigError(
            f"accelerator space: no feasible design in {tries} random samples; raise max_area_mm2 "
            f"({self.max_area_mm2}) or max_power_w ({self.max_power_w}), or offer smaller genes")

    def nearest(self, accel: Accelerator) -> Choice:
        """The choice closest to ``accel`` gene by gene (a preset seeds a population this way)."""
        want = {"pe_rows": accel.pe_rows, "pe_cols": accel.pe_cols, "rf_bytes": accel.rf_bytes,
                "glb_kib": accel.buffer_bytes / KiB, "dram_bw": accel.dram_bw}
        out: Choice = {}
        for d in self.dims:
            if d.name in want:
                v = want[d.name]
                out[d.name] = _py(min(d.options, key=lambda o: abs(np.log(float(o) / v))))
            elif d.name == "precisions":
                same = [p for p in d.options if PRECISION_SETS[p] == (accel.native_bits, accel.precisions)]
                wide = [p for p in d.options if PRECISION_SETS[p][0] == accel.native_bits]
                out[d.name] = (same or wide or list(d.options))[0]
            elif d.name == "vector_length" and accel.vector_length:
                out[d.name] = _py(min(d.options, key=lambda o: abs(np.log(o / accel.vector_length))))
            else:
                v = getattr(accel, d.name)
                out[d.name] = v if v in d.options else d.options[0]
        return out

    # ---- NAAS vector encoding --------------------------------------------------------------------
    def _vector_layout(self) -> dict[str, slice]:
        out, at = {}, 0
        for d in self.dims:
            width = len(d.options) if d.name in _CATEGORICAL else 1
            out[d.name] = slice(at, at + width)
            at += width
        return out

    @property
    def vector_size(self) -> int:
        """Length of the NAAS encoding."""
        return max(s.stop for s in self._slices.values())

    def gene_slices(self) -> dict[str, slice]:
        """Where each gene sits in the vector (crossover swaps whole genes)."""
        return dict(self._slices)

    def to_vector(self, choice: Mapping[str, Any]) -> np.ndarray:
        """NAAS encoding: ordered genes as position in [0, 1], categorical ones as importance scores."""
        c = self.validate(choice)
        x = np.zeros(self.vector_size)
        for d in self.dims:
            i, sl = d.index(c[d.name]), self._slices[d.name]
            if d.name in _CATEGORICAL:
                x[sl] = 0.25
                x[sl.start + i] = 0.75
            else:
                x[sl.start] = i / max(1, len(d.options) - 1)
        return x

    def from_vector(self, x: Sequence[float]) -> Choice:
        """Decode a NAAS vector (any real values): round positions, take the most important option."""
        x = np.asarray(x, dtype=float)
        if x.shape != (self.vector_size,):
            raise SpecError(f"accelerator vector must have {self.vector_size} entries, got shape {x.shape}")
        out: Choice = {}
        for d in self.dims:
            sl = self._slices[d.name]
            if d.name in _CATEGORICAL:
                i = int(np.argmax(x[sl]))
            else:
                i = int(np.clip(np.rint(x[sl.start] * (len(d.options) - 1)), 0, len(d.options) - 1))
            out[d.name] = _py(d.options[i])
        return out

    # ---- the network-space contract, which hardware does not have --------------------------------
    def to_netspec(self, choice: Mapping[str, Any], batch: int = 1) -> NetSpec:
        """Not a network space: raises `SpecError` (use `to_accelerator`)."""
        raise SpecError("the accelerator space describes hardware, not a network; use to_accelerator(choice)")

    def build(self, choice: Mapping[str, Any]) -> torch.nn.Module:
        """Not a network space: raises `SpecError` (use `to_accelerator`)."""
        raise SpecError("the accelerator space describes hardware, not a network; there is no module to build")

    def _refs(self) -> dict[str, Choice]:
        return {"largest": {d.name: d.options[-1] if d.name not in _CATEGORICAL else d.options[0] for d in self.dims},
                "smallest": {d.name: d.options[0] for d in self.dims}}

    def references(self) -> list[str]:
        """``largest`` (every size at its top option) and ``smallest``."""
        return list(self._refs())

    def reference(self, name: str) -> Choice:
        """A named reference design."""
        return self.reference_or_error(name, self._refs())


def accelerator_space(options: Mapping[str, Any] | None = None, sparse_options: bool = False) -> AcceleratorSpace:
    """An `AcceleratorSpace` from a config section (``genes``, ``clock_hz``, ``tech``, limits), with the
    sparsity-support genes when ``sparse_options`` (the NAAS searcher's setting of that name)."""
    opts = dict(options or {})
    known = {"genes", "clock_hz", "tech", "max_area_mm2", "max_power_w"}
    if "sparse_options" in opts:
        raise ConfigError("accelerator space: sparse_options is a setting of the naas searcher "
                          "(searcher.settings.sparse_options), not of its accelerator section")
    extra = sorted(set(opts) - known)
    if extra:
        raise ConfigError(f"accelerator space: unknown option(s) {extra}; known: {sorted(known)}")
    return AcceleratorSpace(**opts, sparse_options=sparse_options)


__all__ = ["AcceleratorSpace", "CATEGORICAL", "DEFAULT_GENES", "PRECISION_SETS", "SPARSE_CATEGORICAL", "SPARSE_GENES", "accelerator_space"]
