"""Run SCALE-Sim on the comparison case set and store its cycles and run times (side venv only).

SCALE-Sim 3.0.0 needs numpy<2, so it cannot share hwsearch's environment; this script imports nothing
from hwsearch and runs in its own venv:

    python3 -m venv .venv-scalesim
    .venv-scalesim/bin/pip install scalesim==3.0.0 'numpy<2' 'pandas<2.3'
    .venv-scalesim/bin/python benchmarks/hwmodel_scalesim_ref.py
    # or in parallel: --shard 0 2 & --shard 1 2, then --merge

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


def _load_done() -> dict[str, dict]:
    """Finished cases from the reference file and from any shard files beside it."""
    done: dict[str, dict] = {}
    for path in [OUT, *sorted(OUT.parent.glob("scalesim_reference.shard*.json"))]:
        if path.exists():
            done.update({c["id"]: c for c in json.loads(path.read_text())["cases"]})
    return done


def main(shard: int = 0, shards: int = 1) -> None:
    """Run every case (or every ``shards``-th from ``shard``, for parallel workers), reusing finished
    ones, and save after every few cases so a stopped run loses nothing."""
    import scalesim

    done = _load_done()
    path = OUT if shards == 1 else OUT.with_name(f"scalesim_reference.shard{shard}.json")
    out = []
    all_cases = cases()
    t0 = time.perf_counter()
    for i, case in enumerate(all_cases):
        if case["id"] in done:
            out.append(done[case["id"]])
            continue
        if i % shards != shard:
            continue
        with tempfile.TemporaryDirectory() as d:
            case = {**case, "scalesim": run_case(case, Path(d))}
        out.append(case)
        print(f"{i + 1}/{len(all_cases)} {case['id']} {case['scalesim']['compute_cycles']} cycles "
              f"{case['scalesim']['wall_s']:.2f}s", flush=True)
        _save(path, out, done, scalesim)
    _save(path, out, done, scalesim)
    print(f"{len(out)} cases in {time.perf_counter() - t0:.0f}s")


def merge() -> None:
    """Fold the shard files into the reference file, in case order, and remove them."""
    import scalesim

    done = _load_done()
    out = [done[c["id"]] for c in cases() if c["id"] in done]
    _save(OUT, out, {}, scalesim)
    for path in OUT.parent.glob("scalesim_reference.shard*.json"):
        path.unlink()
    print(f"{len(out)} of {len(cases())} cases in {OUT.name}")


def _save(path: Path, out: list[dict], done: dict[str, dict], scalesim_mod) -> None:
    """Write the cases run so far, keeping earlier results not reached yet."""
    ids = {c["id"] for c in out}
    out = out + [c for k, c in done.items() if k not in ids]
    path.parent.mkdir(parents=True, exist_ok=True)
    version = getattr(scalesim_mod, "__version__", None)
    if version is None:
        from importlib.metadata import version as v

        version = v("scalesim")
    doc = {"scalesim_version": version, "python": sys.version.split()[0], "cases": out}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=0))
    os.replace(tmp, path)


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
    elif len(sys.argv) == 4 and sys.argv[1] == "--shard":
        main(int(sys.argv[2]), int(sys.argv[3]))
    elif len(sys.argv) == 2 and sys.argv[1] == "--merge":
        merge()
    else:
        main()
