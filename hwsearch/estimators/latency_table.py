"""Latency/energy lookup tables keyed by `LayerSpec.key`, for an accelerator model or a measured device.

A table says what its numbers are for (``source`` and ``fingerprint``: an accelerator's ``to_dict``,
or a device's CPU/GPU, library versions, threads and dtype) and is saved as JSON with a format version
and a sha256 checksum of its payload. Loading verifies all three, so a truncated, edited, stale or
foreign file raises `CorruptTable` instead of being used; `load_or_build` turns that into a warning and
a rebuild. Tables are data (JSON), never pickles, so they survive library upgrades.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwsearch.errors import CorruptTable, HwsearchError
from hwsearch.hwmodel import MODEL_VERSION, Accelerator, cost, costs
from hwsearch.io import atomic_write_text
from hwsearch.ir import LayerSpec, NetSpec

FORMAT_VERSION = 1


class MissingEntry(HwsearchError, KeyError):
    """A network holds a layer the lookup table has no entry for."""

    def __str__(self) -> str:  # KeyError would otherwise quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class TableEntry:
    """One layer's cost: seconds, optionally picojoules, run-to-run spread and anything else."""

    latency_s: float
    energy_pj: float | None = None
    spread: float | None = None           # relative run-to-run spread of a measurement (IQR / median)
    extra: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not math.isfinite(self.latency_s) or self.latency_s < 0:
            raise HwsearchError(f"table entry latency_s={self.latency_s!r} must be a finite non-negative number")
        object.__setattr__(self, "extra", dict(self.extra))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (None fields left out)."""
        d: dict[str, Any] = {"latency_s": self.latency_s}
        if self.energy_pj is not None:
            d["energy_pj"] = self.energy_pj
        if self.spread is not None:
            d["spread"] = self.spread
        if self.extra:
            d["extra"] = dict(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TableEntry:
        """Inverse of `to_dict`."""
        return cls(float(d["latency_s"]), d.get("energy_pj"), d.get("spread"), dict(d.get("extra", {})))


class LatencyTable:
    """Per-layer costs for one target (``source`` + ``fingerprint``), keyed by `LayerSpec.key`."""

    def __init__(self, source: str, fingerprint: Mapping[str, Any], entries: dict[str, TableEntry] | None = None):
        self.source = source
        self.fingerprint = _canonical(fingerprint)
        self.entries: dict[str, TableEntry] = dict(entries or {})

    # ---- contents -------------------------------------------------------------------------------
    def add(self, layer: LayerSpec, entry: TableEntry) -> None:
        """Store ``entry`` for ``layer`` (replacing any earlier one)."""
        self.entries[layer.key] = entry

    def __contains__(self, layer: object) -> bool:
        key = layer.key if isinstance(layer, LayerSpec) else layer
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, layer: LayerSpec) -> TableEntry:
        try:
            return self.entries[layer.key]
        except KeyError:
            raise MissingEntry(
                f"{self.source} table has no entry for layer {layer.name or layer.op!r} ({layer.key}); "
                f"build or fill the table for this network first"
            ) from None

    def missing(self, layers: Iterable[LayerSpec]) -> list[LayerSpec]:
        """Distinct layers (first seen) that have no entry yet."""
        seen: dict[str, LayerSpec] = {}
        for layer in layers:
            if layer.key not in self.entries:
                seen.setdefault(layer.key, layer)
        return list(seen.values())

    def fill(self, layers: Iterable[LayerSpec], fn: Callable[[LayerSpec], TableEntry], progress: bool = False) -> int:
        """Cost (or measure) only the layers missing from the table; returns how many were added."""
        todo = self.missing(layers)
        it: Iterable[LayerSpec] = todo
        if progress and todo:
            from tqdm import tqdm

            it = tqdm(todo, desc=f"filling {self.source} table", unit="layer")
        for layer in it:
            self.add(layer, fn(layer))
        return len(todo)

    def predict(self, net: NetSpec | Iterable[LayerSpec]) -> float:
        """Seconds: the sum of the layers' entries, in layer order."""
        total = 0.0
        for layer in _layers(net):
            total += self[layer].latency_s
        return total

    def predict_energy(self, net: NetSpec | Iterable[LayerSpec]) -> float:
        """Picojoules: the sum of the layers' energies (an entry without energy is an error)."""
        total = 0.0
        for layer in _layers(net):
            e = self[layer].energy_pj
            if e is None:
                raise MissingEntry(f"{self.source} table has no energy for layer {layer.name or layer.op!r}")
            total += e
        return total

    # ---- files ----------------------------------------------------------------------------------
    def _payload(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "fingerprint": self.fingerprint,
            "entries": {k: self.entries[k].to_dict() for k in sorted(self.entries)},
        }

    def save(self, path: str | Path) -> None:
        """Write JSON with the format version and a sha256 of the payload, atomically."""
        payload = self._payload()
        doc = {"format_version": FORMAT_VERSION, "sha256": _digest(payload), **payload}
        atomic_write_text(path, json.dumps(doc, indent=0, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path, fingerprint: Mapping[str, Any] | None = None) -> LatencyTable:
        """Read a saved table, verifying version, checksum and (when given) the expected fingerprint."""
        path = Path(path)
        try:
            doc = json.loads(path.read_text())
        except FileNotFoundError:
            raise CorruptTable(f"lookup table {str(path)!r} does not exist") from None
        except (ValueError, UnicodeDecodeError) as e:
            raise CorruptTable(f"lookup table {path.name!r} is not valid JSON (truncated or corrupt): {e}") from None
        if not isinstance(doc, dict):
            raise CorruptTable(f"lookup table {path.name!r} does not hold a table object")
        version = doc.get("format_version")
        if version != FORMAT_VERSION:
            raise CorruptTable(
                f"lookup table {path.name!r} has format_version {version!r}; this hwsearch reads {FORMAT_VERSION}; rebuild it"
            )
        try:
            payload = {k: doc[k] for k in ("source", "fingerprint", "entries")}
        except KeyError as e:
            raise CorruptTable(f"lookup table {path.name!r} lacks {e.args[0]!r}") from None
        if doc.get("sha256") != _digest(payload):
            raise CorruptTable(f"lookup table {path.name!r} fails its checksum (edited or corrupt); rebuild it")
        if fingerprint is not None and _canonical(fingerprint) != payload["fingerprint"]:
            raise CorruptTable(
                f"lookup table {path.name!r} was built for another target (fingerprint differs); rebuild it"
            )
        try:
            entries = {k: TableEntry.from_dict(v) for k, v in payload["entries"].items()}
        except (KeyError, TypeError, ValueError, HwsearchError) as e:
            raise CorruptTable(f"lookup table {path.name!r} has a malformed entry: {e}") from None
        return cls(payload["source"], payload["fingerprint"], entries)

    @classmethod
    def load_or_build(
        cls,
        path: str | Path,
        fingerprint: Mapping[str, Any],
        layers: Iterable[LayerSpec],
        fn: Callable[[LayerSpec], TableEntry],
        source: str = "model",
        progress: bool = False,
    ) -> LatencyTable:
        """The table at ``path`` completed for ``layers``; a corrupt or stale file is reported with a
        warning and rebuilt, never used. The file is rewritten when entries were added."""
        layers = list(layers)
        path = Path(path)
        table: LatencyTable | None = None
        if path.exists():
            try:
                table = cls.load(path, fingerprint)
            except CorruptTable as e:
                warnings.warn(f"{e}; rebuilding", stacklevel=2)
        if table is None:
            table = cls(source, fingerprint)
            table.fill(layers, fn, progress)
            table.save(path)
            return table
        if table.fill(layers, fn, progress):
            table.save(path)
        return table


def _layers(net: NetSpec | Iterable[LayerSpec]) -> Iterable[LayerSpec]:
    return net.layers if isinstance(net, NetSpec) else net


def _canonical(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The fingerprint as it reads back from JSON (tuples become lists), so comparisons are exact."""
    return json.loads(json.dumps(dict(obj), sort_keys=True))


def _digest(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# ---- tables built from the accelerator model --------------------------------------------------------
def model_fingerprint(accel: Accelerator) -> dict[str, Any]:
    """What a model-built table's numbers depend on: the cost model's version and the accelerator."""
    return {"model": "hwsearch.hwmodel", "model_version": MODEL_VERSION, "accelerator": accel.to_dict()}


def model_entry(layer: LayerSpec, accel: Accelerator) -> TableEntry:
    """A table entry from the accelerator model (latency, energy, cycles, utilisation, energy by level)."""
    c = cost(layer, accel)
    extra = {"compute_cycles": float(c.compute_cycles), "stall_cycles": float(c.stall_cycles),
             "utilization": c.utilization, "dram_bytes": c.dram_bytes}
    extra.update({f"energy_{k}_pj": v for k, v in c.energy_pj.items()})
    return TableEntry(latency_s=c.latency_s, energy_pj=c.total_energy_pj, extra=extra)


def space_layers(space: Any, bases: int = 4, seed: int = 0, bits: Iterable[int] = (), patience: int = 100,
                 max_samples: int = 2000) -> list[LayerSpec]:
    """Distinct layers a search space produces: from its reference choices and ``bases`` random
    ones, every single-gene change of each (a gene's layers depend on its own value and on the shapes
    flowing into it, which the bases vary); then random choices until ``patience`` in a row add no new
    layer (at most ``max_samples``). Spaces are too large to enumerate, so a rare layer may still be
    missing: `LatencyTable.fill` costs it when a network needs it. A space that can list its layers
    exactly (a ``layer_specs()`` method) is asked instead. Each layer is also added at every width in
    ``bits``."""
    lister = getattr(space, "layer_specs", None)
    if callable(lister):
        found = {layer.key: layer for layer in lister()}
    else:
        rng = np.random.default_rng(seed)
        choices = [space.reference(r) for r in space.references()] + [space.sample(rng) for _ in range(bases)]
        found = {}
        for base in choices:
            for d in space.dims:
                for option in d.options:
                    net = space.to_netspec({**base, d.name: option})
                    for layer in net.layers:
                        found.setdefault(layer.key, layer)
        quiet = 0
        for _ in range(max_samples):
            before = len(found)
            for layer in space.to_netspec(space.sample(rng)).layers:
                found.setdefault(layer.key, layer)
            quiet = quiet + 1 if len(found) == before else 0
            if quiet >= patience:
                break
    layers = list(found.values())
    for b in bits:
        for layer in list(found.values()):
            v = layer.with_(w_bits=b, a_bits=b) if layer.has_weights else layer.with_activation_bits(b)
            found.setdefault(v.key, v)
    return list(found.values()) if bits else layers


def build_model_table(space: Any, accel: Accelerator, path: str | Path | None = None, bases: int = 4,
                      seed: int = 0, bits: Iterable[int] = (), patience: int = 100) -> LatencyTable:
    """The model-built table of a (space, accelerator) pair, loaded from ``path`` when valid and
    complete, rebuilt (with a warning) when corrupt or stale, and saved there."""
    layers = space_layers(space, bases, seed, tuple(bits), patience=patience)
    costs(layers, accel)  # one batched mapping pass; model_entry then reads the cache
    fp = model_fingerprint(accel)
    if path is None:
        table = LatencyTable("model", fp)
        table.fill(layers, lambda layer: model_entry(layer, accel))
        return table
    return LatencyTable.load_or_build(path, fp, layers, lambda layer: model_entry(layer, accel), source="model")
