"""Run SCALE-Sim on the comparison case set and store its cycles and run times (side venv only).

SCALE-Sim 3.0.0 needs numpy<2, so it cannot share hwsearch's environment; this script imports nothing
from hwsearch and runs in its own venv:

    python3 -m venv .venv-scalesim
    .venv-scalesim/bin/pip install scalesim==3.0.0 'numpy<2' 'pandas<2.3'
    .venv-scalesim/bin/python benchmarks/hwmodel_scalesim_ref.py

It writes ``benchmarks/data/scalesim_reference.json``: per case SCALE-Sim's compute cycles (total
minus stalls), stall cycles and the wall-clock seconds of the simulation. `hwmodel_scalesim.py`
compares the accelerator model against that file; it calls ``--time ID...`` to time a few cases
again in its own run.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from hwmodel_cases import cases  # noqa: E402

OUT = HERE / "data" / "scalesim_reference.json"

CFG = """[general]
run_name = {name}

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: 1024
FilterSramSzkB: 1024
OfmapSramSzkB: 1024
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Bandwidth : 10
Dataflow : {df}
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport : false
SparseRep : ellpack_block
OptimizedMapping : false
BlockSize : 8
RandomNumberGeneratorSeed : 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""

CONV_HEADER = "Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, Num Filter, Strides,\n"
GEMM_HEADER = "Layer, M, N, K,\n"


def run_case(case: dict, work: Path) -> dict:
    """Simulate one case; return SCALE-Sim's cycle counts and the seconds the simulation took."""
    from scalesim.scale_sim import scalesim

    name = "c"
    cfg = work / "arch.cfg"
    topo = work / "topo.csv"
    cfg.write_text(CFG.format(name=name, rows=case["rows"], cols=case["cols"], df=case["dataflow"]))
    header = CONV_HEADER if case["kind"] == "conv" else GEMM_HEADER
    topo.write_text(header + ", ".join(str(x) for x in case["layer"]) + ",\n")
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        sim = scalesim(save_disk_space=True, verbose=False, config=str(cfg), topology=str(topo),
                       layout=str(topo), input_type_gemm=case["kind"] == "gemm")
        sim.run_scale(top_path=str(work))
    wall = time.perf_counter() - start
    lines = (work / name / "COMPUTE_REPORT.csv").read_text().strip().splitlines()
    vals = [x.strip() for x in lines[1].split(",")]
    total, stall = int(vals[2]), int(vals[3])
    return {"compute_cycles": total - stall, "stall_cycles": stall, "total_cycles": total,
            "mapping_efficiency": float(vals[5]) / 100, "wall_s": wall}


def main() -> None:
    """Run every case (reusing finished ones from an earlier partial file) and save the reference."""
    import scalesim

    done = {}
    if OUT.exists():
        done = {c["id"]: c for c in json.loads(OUT.read_text())["cases"]}
    out = []
    all_cases = cases()
    t0 = time.perf_counter()
    for i, case in enumerate(all_cases):
        if case["id"] in done:
            out.append(done[case["id"]])
            continue
        with tempfile.TemporaryDirectory() as d:
            case = {**case, "scalesim": run_case(case, Path(d))}
        out.append(case)
        print(f"{i + 1}/{len(all_cases)} {case['id']} {case['scalesim']['compute_cycles']} cycles "
              f"{case['scalesim']['wall_s']:.2f}s", flush=True)
        if (i + 1) % 10 == 0:
            _save(out, done, scalesim)
    _save(out, done, scalesim)
    print(f"{len(out)} cases in {time.perf_counter() - t0:.0f}s")


def _save(out: list[dict], done: dict[str, dict], scalesim_mod) -> None:
    """Write the cases run so far, keeping earlier results not reached yet (a stopped run loses nothing)."""
    ids = {c["id"] for c in out}
    out = out + [c for k, c in done.items() if k not in ids]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    version = getattr(scalesim_mod, "__version__", None)
    if version is None:
        from importlib.metadata import version as v

        version = v("scalesim")
    doc = {"scalesim_version": version, "python": sys.version.split()[0], "cases": out}
    tmp = OUT.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=0))
    os.replace(tmp, OUT)


def time_only(ids: list[str]) -> None:
    """Simulate the named cases again and print their results as JSON (nothing saved): lets the
    comparison benchmark time SCALE-Sim in the same run as the model."""
    by_id = {c["id"]: c for c in cases()}
    out = []
    for i in ids:
        with tempfile.TemporaryDirectory() as d:
            out.append({**by_id[i], "scalesim": run_case(by_id[i], Path(d))})
    print(json.dumps(out))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--time":
        time_only(sys.argv[2:])
    else:
        main()
