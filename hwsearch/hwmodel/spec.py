"""The accelerator description: a frozen, hashable spec whose every knob is a plain, validated field.

One `Accelerator` keys the cost caches and is what the NAAS search varies (PE rows/cols, register
file, buffers, DRAM bandwidth, dataflow, precisions, sparsity support), so each field is checked here
with an error that names it. YAML/JSON go through `to_dict`/`from_dict`; SCALE-Sim `.cfg` files
through `hwsearch.hwmodel.scalesim_cfg`.

The modules that build accelerators import this one, never the reverse: named presets register
their factories in `PRESETS` here, whose built-ins (`hwsearch.hwmodel.presets`) are imported on the
first lookup; the energy tables and the ``.cfg`` reader import nothing from the model.

Precision semantics (documented once, used by the mapper):

- ``native_bits`` is the width of one PE's multiplier; ``precisions`` the operand widths a PE can
  run, each dividing ``native_bits``. A layer operand of ``b <= native_bits`` bits runs at the
  smallest supported width ``p >= b``, and a PE then does ``(native/p_w) * (native/p_a)`` MACs per
  cycle (Bit Fusion's fusible bit-bricks). Only ``bitfusion``-like specs list widths below native.
- An operand wider than ``native_bits`` (the default 32-bit float layer, or 16 bits on an 8-bit
  array) is computed in ``ceil(b / native)`` passes per operand, as a fixed-point multi-precision
  multiply would be: a 32-bit x 32-bit layer on an 8-bit array takes 16 passes. Storage and traffic
  always use the layer's own bit-widths.

Fold pipelining (``pipelined_folds``, systolic dataflows only): by default every fold of the array
pays its fill and drain, as SCALE-Sim counts (and as `.cfg` files are always read). An array that
double-buffers its stationary operand, as the TPU does for its weights (Jouppi et al., ISCA 2017:
the matrix unit holds a second weight tile so that shifting it in is hidden behind the first's
computation), starts the next fold while the last one drains, so the fill and drain are paid once per layer; each fold still takes at least one
cycle per PE row, the time a tile needs to shift in.

Attention and vector sparsity (`hwsearch.hwmodel.sparse` prices them): ``sparse_attention`` declares
that the array skips the masked scores and probabilities of a static attention mask and the vector
unit the masked softmax entries (as ViTCoD does); ``vector_sparsity`` (``row``, ``col`` or ``both``)
with ``vector_length`` declares that the array skips pruned weight vectors of that length and
direction in a linear layer (as TF-MVP does). Hardware that declares neither prices every layer
dense, whatever its ``density``.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from hwsearch.errors import SpecError
from hwsearch.hwmodel import energy
from hwsearch.hwmodel.scalesim_cfg import cfg_fields
from hwsearch.io import atomic_write_text
from hwsearch.registry import Registry

DATAFLOWS = ("ws", "os", "is", "rs")
SPARSITY = ("none", "zero_skip", "nm")
VECTOR_SPARSITY = ("none", "row", "col", "both")
ALLOWED_BITS = (1, 2, 4, 8, 16, 32)
# Fields added after accelerators were first fingerprinted: `to_dict` writes them only when set.
_LATER_OPTIONS = ("pipelined_folds", "sparse_attention", "vector_sparsity", "vector_length")


@dataclass(frozen=True)
class Accelerator:
    """A spatial DNN accelerator: PE array, register files, on-chip buffers, DRAM link, dataflow."""

    pe_rows: int
    pe_cols: int
    rf_bytes: int = 64                  # register file per PE
    glb_bytes: int = 0                  # one unified global buffer; 0 when the three SRAMs are separate
    ifmap_sram_bytes: int = 0           # SCALE-Sim style separate SRAMs (all three, or none)
    filter_sram_bytes: int = 0
    ofmap_sram_bytes: int = 0
    dram_bw: float = 16.0               # bytes per cycle between DRAM and the buffers
    clock_hz: float = 1.0e9
    dataflow: str = "ws"
    native_bits: int = 8
    precisions: tuple[int, ...] = (8,)
    sparsity: str = "none"              # none | zero_skip (fine-grained) | nm (N:M structured)
    vector_lanes: int = 16              # element operations per cycle of the softmax/norm/eltwise unit
    tech: str = "45nm"                  # per-access energy and area table (see hwsearch.hwmodel.energy)
    pipelined_folds: bool = False       # systolic arrays: fill and drain overlap the next fold (see above)
    sparse_attention: bool = False      # skips masked attention scores/probabilities (see above)
    vector_sparsity: str = "none"       # none | row | col | both: directions of prunable weight vectors
    vector_length: int = 0              # weights per hardware vector (0 with vector_sparsity "none")
    name: str = field(default="custom", compare=False)

    def __post_init__(self) -> None:
        where = f"accelerator {self.name!r}"
        for f in ("pe_rows", "pe_cols", "rf_bytes", "vector_lanes", "native_bits"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise SpecError(f"{where}: {f}={v!r} must be a positive integer (an array needs at least one PE)")
        for f in ("glb_bytes", "ifmap_sram_bytes", "filter_sram_bytes", "ofmap_sram_bytes"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise SpecError(f"{where}: {f}={v!r} must be a non-negative integer number of bytes")
        split = (self.ifmap_sram_bytes, self.filter_sram_bytes, self.ofmap_sram_bytes)
        if self.glb_bytes > 0 and any(split):
            raise SpecError(f"{where}: give either glb_bytes or the three separate SRAM sizes, not both")
        if self.glb_bytes == 0 and not all(split):
            raise SpecError(
                f"{where}: on-chip buffers missing: set glb_bytes > 0, or all of ifmap_sram_bytes, "
                f"filter_sram_bytes and ofmap_sram_bytes > 0 (got {split})"
            )
        for f in ("dram_bw", "clock_hz"):
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise SpecError(f"{where}: {f}={v!r} must be a positive finite number")
            object.__setattr__(self, f, float(v))
        if self.dataflow not in DATAFLOWS:
            raise SpecError(f"{where}: dataflow {self.dataflow!r} is unknown; expected one of {', '.join(DATAFLOWS)}")
        if self.sparsity not in SPARSITY:
            raise SpecError(f"{where}: sparsity {self.sparsity!r} is unknown; expected one of {', '.join(SPARSITY)}")
        if self.native_bits not in ALLOWED_BITS:
            raise SpecError(f"{where}: native_bits={self.native_bits} must be one of {ALLOWED_BITS}")
        precs = tuple(sorted({int(p) for p in self.precisions})) if self.precisions else ()
        if not precs or any(p not in ALLOWED_BITS or self.native_bits % p for p in precs):
            raise SpecError(
                f"{where}: precisions={self.precisions!r} must be non-empty widths from {ALLOWED_BITS} "
                f"that divide native_bits={self.native_bits}"
            )
        if precs[-1] != self.native_bits:
            raise SpecError(f"{where}: precisions={precs} must include native_bits={self.native_bits}")
        object.__setattr__(self, "precisions", precs)
        word = self.native_bits / 8
        if self.rf_bytes < 3 * word:
            raise SpecError(
                f"{where}: rf_bytes={self.rf_bytes} is smaller than one word of each operand "
                f"({3 * word:g} bytes at {self.native_bits} bits)"
            )
        if not isinstance(self.pipelined_folds, bool):
            raise SpecError(f"{where}: pipelined_folds={self.pipelined_folds!r} must be true or false")
        if not isinstance(self.sparse_attention, bool):
            raise SpecError(f"{where}: sparse_attention={self.sparse_attention!r} must be true or false")
        if self.vector_sparsity not in VECTOR_SPARSITY:
            raise SpecError(f"{where}: vector_sparsity {self.vector_sparsity!r} is unknown; expected one of "
                            f"{', '.join(VECTOR_SPARSITY)}")
        vl = self.vector_length
        if not isinstance(vl, int) or isinstance(vl, bool) or vl < 0 or (vl == 0) != (self.vector_sparsity == "none"):
            raise SpecError(f"{where}: vector_length={vl!r} must be a positive integer when vector_sparsity is "
                            f"row, col or both, and 0 when it is none (got vector_sparsity={self.vector_sparsity!r})")
        if self.tech not in energy.TABLES:
            raise SpecError(f"{where}: tech {self.tech!r} is unknown; known energy tables: "
                            f"{', '.join(energy.TABLES.names())}")
        self._set_hash()

    # Hashed once, since every cost lookup keys on the accelerator. String hashes differ between
    # processes, so the cached hash is left out of pickles (Ray ships accelerators to workers) and
    # recomputed on arrival.
    def _set_hash(self) -> None:
        object.__setattr__(self, "_hash", hash(tuple(getattr(self, f.name) for f in fields(self) if f.compare)))

    def __hash__(self) -> int:
        return self._hash

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_hash", None)
        return state

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        # Pickles written before a field existed get its default.
        for f in fields(self):
            if f.name not in state:
                object.__setattr__(self, f.name, f.default)
        for k, v in state.items():
            object.__setattr__(self, k, v)
        self._set_hash()

    # ---- derived ----------------------------------------------------------------------------------
    @property
    def num_pes(self) -> int:
        """PEs in the array."""
        return self.pe_rows * self.pe_cols

    @property
    def unified(self) -> bool:
        """Whether the on-chip storage is one global buffer (else separate ifmap/filter/ofmap SRAMs)."""
        return self.glb_bytes > 0

    @property
    def buffer_bytes(self) -> int:
        """Total on-chip buffer capacity (register files excluded)."""
        return self.glb_bytes + self.ifmap_sram_bytes + self.filter_sram_bytes + self.ofmap_sram_bytes

    @property
    def peak_macs_per_cycle(self) -> float:
        """Native-precision MACs the array completes per cycle."""
        return float(self.num_pes)

    @property
    def key(self) -> str:
        """Short stable fingerprint of every field that changes a cost (``name`` excluded)."""
        d = self.to_dict()
        d.pop("name", None)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    @property
    def area_mm2(self) -> float:
        """Silicon area of the PEs, register files and buffers (see `hwsearch.hwmodel.energy`)."""
        return energy.area_mm2(self)

    @property
    def peak_power_w(self) -> float:
        """Power with every PE busy each cycle and the buffer and DRAM links at full rate."""
        return energy.peak_power_w(self)

    def with_(self, **changes: Any) -> Accelerator:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    # ---- serialisation ----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-able (precisions as a list; the options added later only when set)."""
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["precisions"] = list(self.precisions)
        # Left out at their defaults, so that the fingerprints (`key`, latency tables) of every
        # accelerator described before an option existed stay what they were.
        for f in fields(self):
            if f.name in _LATER_OPTIONS and d[f.name] == f.default:
                del d[f.name]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Accelerator:
        """Inverse of `to_dict`; unknown keys are an error naming the known ones."""
        known = {f.name for f in fields(cls)}
        extra = sorted(set(d) - known)
        if extra:
            raise SpecError(f"unknown accelerator field(s) {extra}; known: {sorted(known)}")
        missing = [f for f in ("pe_rows", "pe_cols") if f not in d]
        if missing:
            raise SpecError(f"an accelerator needs {missing}")
        kw = dict(d)
        if "precisions" in kw:
            p = kw["precisions"]
            kw["precisions"] = tuple(p) if isinstance(p, (list, tuple)) else (p,)
        return cls(**kw)

    def to_file(self, path: str | Path) -> None:
        """Write as JSON or YAML (by extension), atomically."""
        path = Path(path)
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))
        else:
            atomic_write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def from_file(cls, path: str | Path) -> Accelerator:
        """Read a JSON/YAML spec, or a SCALE-Sim ``.cfg`` file."""
        path = Path(path)
        if not path.is_file():
            raise SpecError(f"accelerator file {str(path)!r} does not exist")
        suffix = path.suffix.lower()
        if suffix == ".cfg":
            return cls.from_scalesim_cfg(path)
        text = path.read_text()
        try:
            if suffix in (".yaml", ".yml"):
                import yaml

                d = yaml.safe_load(text)
            else:
                d = json.loads(text)
        except ValueError as e:
            raise SpecError(f"accelerator file {path.name!r} is not valid {suffix[1:] or 'JSON'}: {e}") from None
        if not isinstance(d, Mapping):
            raise SpecError(f"accelerator file {path.name!r} must hold a mapping of fields")
        if "accelerator" in d and isinstance(d["accelerator"], Mapping):
            d = d["accelerator"]
        return cls.from_dict(d)

    @classmethod
    def from_scalesim_cfg(cls, path: str | Path) -> Accelerator:
        """An accelerator from a SCALE-Sim ``.cfg`` file (array, SRAM sizes, dataflow, bandwidth)."""
        return cls(**cfg_fields(path))

    @classmethod
    def preset(cls, name: str) -> Accelerator:
        """A named preset (see `hwsearch.hwmodel.presets`)."""
        return PRESETS.get(name)()

    @classmethod
    def resolve(cls, spec: str | Path | Accelerator) -> Accelerator:
        """A preset name, a JSON/YAML/.cfg file path, or an `Accelerator` itself."""
        if isinstance(spec, Accelerator):
            return spec
        s = str(spec)
        if s in PRESETS:
            return cls.preset(s)
        if Path(s).suffix.lower() in (".json", ".yaml", ".yml", ".cfg") or Path(s).exists():
            return cls.from_file(s)
        return cls.preset(s)  # raises UnknownName listing the presets


# Preset factories by name (``@hwsearch.hwmodel.presets.register(name, source)`` adds one); the
# built-in presets are registered by `hwsearch.hwmodel.presets`, imported on the first lookup.
PRESETS: Registry[Callable[[], Accelerator]] = Registry("accelerator preset", builtins="hwsearch.hwmodel.presets")
