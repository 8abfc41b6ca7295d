"""Reading SCALE-Sim's files: ``.cfg`` architecture files and topology CSVs (conv or GEMM).

SCALE-Sim counts words, not bytes, and has no clock, no bit-widths and no padding; the conversion
takes a word as one 8-bit byte, the clock as 1 GHz, and in CALC bandwidth mode (where SCALE-Sim
sizes the DRAM link itself) 10 bytes per cycle. A topology row becomes an unpadded `LayerSpec`; note
that SCALE-Sim rounds the output size up (``ceil((H - FH + S) / S)``) where a `LayerSpec` rounds it
down, so the two agree when ``(H - FH)`` is a multiple of the stride.
"""

from __future__ import annotations

import configparser
import csv
from pathlib import Path

from hwsearch.errors import SpecError
from hwsearch.hwmodel.spec import Accelerator
from hwsearch.ir import LayerSpec

DEFAULT_CLOCK_HZ = 1e9
CALC_BANDWIDTH = 10.0


def read_cfg(path: str | Path) -> Accelerator:
    """An `Accelerator` from a SCALE-Sim ``.cfg`` file."""
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
    return Accelerator(
        pe_rows=num("ArrayHeight"), pe_cols=num("ArrayWidth"), rf_bytes=4,
        ifmap_sram_bytes=num("IfmapSramSzkB") * 1024, filter_sram_bytes=num("FilterSramSzkB") * 1024,
        ofmap_sram_bytes=num("OfmapSramSzkB") * 1024, dram_bw=bw, clock_hz=DEFAULT_CLOCK_HZ,
        dataflow=str(arch.get("Dataflow", "os")).strip().lower(), native_bits=8, precisions=(8,), name=name,
    )


def read_topology(path: str | Path, gemm: bool | None = None, bits: int = 8) -> list[LayerSpec]:
    """LayerSpecs from a SCALE-Sim topology CSV; ``gemm=None`` tells conv from GEMM by column count."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"topology file {str(path)!r} does not exist")
    with open(path, newline="") as f:
        rows = [[x.strip() for x in row if x.strip()] for row in csv.reader(f)]
    rows = [r for r in rows if r]
    if len(rows) < 2:
        raise SpecError(f"topology file {path.name!r} has no layer rows after its header")
    body = rows[1:]
    if gemm is None:
        gemm = len(rows[0]) == 4 or all(len(r) in (4, 5) for r in body)
    out = []
    for i, r in enumerate(body, start=2):
        want = 4 if gemm else 8
        if len(r) < want:
            raise SpecError(f"{path.name}:{i}: expected {want} columns for a {'GEMM' if gemm else 'conv'} row, got {r}")
        try:
            vals = [int(x) for x in r[1:want]]
        except ValueError:
            raise SpecError(f"{path.name}:{i}: non-integer shape in {r}") from None
        name = r[0]
        if gemm:
            m, n, k = vals
            out.append(LayerSpec("linear", m=m, c=k, k=n, w_bits=bits, a_bits=bits, name=name))
            continue
        h, w, fh, fw, c, k, s = vals
        if "DP" in name:  # SCALE-Sim's depthwise rows: each channel convolved with its own filters
            out.append(LayerSpec("dwconv", c=c, k=c * k, groups=c, in_h=h, in_w=w, r=fh, s=fw, stride=s,
                                 w_bits=bits, a_bits=bits, name=name))
        else:
            out.append(LayerSpec("conv", c=c, k=k, in_h=h, in_w=w, r=fh, s=fw, stride=s,
                                 w_bits=bits, a_bits=bits, name=name))
    return out
