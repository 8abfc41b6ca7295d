"""Reading a SCALE-Sim ``.cfg`` architecture file into the fields of an `Accelerator`.

Kept apart from `hwsearch.hwmodel.scalesim_io` (topologies) because it returns plain fields and
imports nothing from the model: `Accelerator.from_file` reads ``.cfg`` files through it, so the spec
depends on this module and never the other way round.

SCALE-Sim counts words, not bytes, and has no clock, no bit-widths and no padding; the conversion
takes a word as one 8-bit byte, the clock as 1 GHz, and in CALC bandwidth mode (where SCALE-Sim
sizes the DRAM link itself) 10 bytes per cycle.
"""

from __future__ import annotations

import configparser
from pathlib import Path
from typing import Any

from hwsearch.errors import SpecError

DEFAULT_CLOCK_HZ = 1e9
CALC_BANDWIDTH = 10.0


def cfg_fields(path: str | Path) -> dict[str, Any]:
    """The `Accelerator` fields a SCALE-Sim ``.cfg`` file gives (array, SRAM sizes, dataflow, bandwidth)."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"SCALE-Sim config {str(path)!r} does not exist")
    cp = configparser.ConfigParser()
    try:
        cp.read(path)
        arch = cp["architecture_presets"]
    except (configparser.Error, KeyError) as e:
        raise SpecError(f"SCALE-Sim config {path.name!r} is unreadable or lacks [architecture_presets]: {e}") from None

    def num(key: str) -> int:
        try:
            return int(str(arch[key]).strip())
        except KeyError:
            raise SpecError(f"SCALE-Sim config {path.name!r}: [architecture_presets] lacks {key!r}") from None
        except ValueError:
            raise SpecError(f"SCALE-Sim config {path.name!r}: {key} = {arch[key]!r} is not an integer") from None

    bw = CALC_BANDWIDTH
    mode = cp.get("run_presets", "InterfaceBandwidth", fallback="CALC").strip().upper()
    if mode == "USER" and "Bandwidth" in arch:
        try:
            bw = float(min(float(x) for x in str(arch["Bandwidth"]).split(",") if x.strip()))
        except ValueError:
            raise SpecError(f"SCALE-Sim config {path.name!r}: Bandwidth = {arch['Bandwidth']!r} is not a number") from None
    name = cp.get("general", "run_name", fallback=path.stem).strip().strip('"') or path.stem
    return dict(
        pe_rows=num("ArrayHeight"), pe_cols=num("ArrayWidth"), rf_bytes=4,
        ifmap_sram_bytes=num("IfmapSramSzkB") * 1024, filter_sram_bytes=num("FilterSramSzkB") * 1024,
        ofmap_sram_bytes=num("OfmapSramSzkB") * 1024, dram_bw=bw, clock_hz=DEFAULT_CLOCK_HZ,
        dataflow=str(arch.get("Dataflow", "os")).strip().lower(), native_bits=8, precisions=(8,), name=name,
    )


__all__ = ["CALC_BANDWIDTH", "DEFAULT_CLOCK_HZ", "cfg_fields"]
