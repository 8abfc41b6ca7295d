"""How well measured layer tables predict whole-network latency on this machine (BENCHMARKS.md).

For each space: fill the measured layer table, measure ``--fit`` sampled networks end to end and fit
the learned correction (its train/test split is reported), then sample ``--n`` further networks from
another seed (none of them used for fitting), predict and measure each, and report the share of
predictions within ±10% of measured, RMSPE and Kendall tau — beside the same figures for the plain
table sum and for the measurement noise floor (every network measured a second time, after all first
measurements, against its first measurement). The machine's load average is recorded at start and
end: on a shared machine the noise floor is what limits every other figure.

Rerun when the machine is quiet:

    .venv/bin/python benchmarks/latency_measured.py                 # ofa-mbv3 and vit, cpu (+ cuda if present)
    .venv/bin/python benchmarks/latency_measured.py --n 20 --fit 20 --spaces vit --no-write   # smoke run

Tables and predictors go to ``--cache-dir`` (default: a fresh folder under the hwsearch cache, so
the figures never reuse a table measured under other conditions).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.report import write_section  # noqa: E402
from hwsearch.estimators.measured import MeasuredLatency, cache_root  # noqa: E402
from hwsearch.io import atomic_write_json  # noqa: E402


def run_space(space: str, device: str, n: int, n_fit: int, profile_nets: int, check_seed: int,
              cache_dir: Path, statistic: str, log) -> dict:
    """Profile, fit and check one space on one device; the figures as a dict."""
    t0 = time.time()
    est = MeasuredLatency(space, device, cache_dir=cache_dir, statistic=statistic)
    if profile_nets:
        est.profile_space(profile_nets, seed=0)
    log(f"[{space}/{device}] table: {len(est.table)} layers after profiling ({time.time() - t0:.0f} s)")

    def progress(stage: str, total: int):
        def report(i: int, row: dict) -> None:
            if (i + 1) % 10 == 0:
                log(f"[{space}/{device}] {stage} {i + 1}/{total}: predicted {row['predicted_s'] * 1e3:.2f} ms, "
                    f"measured {row['measured_s'] * 1e3:.2f} ms")
        return report

    pred = est.fit(n_fit, seed=0, on_network=progress("fit (table sum)", n_fit))
    log(f"[{space}/{device}] fit: {json.dumps({k: pred.report[k] for k in ('train', 'test', 'test_lut_sum')})}")

    load0 = os.getloadavg()[0]
    res = est.check(n, seed=check_seed, noise_floor=True, on_network=progress("checked", n))
    res["fit"] = {k: pred.report[k] for k in ("n_train", "n_test", "train", "test", "test_lut_sum")}
    res["table_layers"] = len(est.table)
    res["load_avg"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    res["minutes"] = round((time.time() - t0) / 60, 1)
    res["fingerprint"] = est.fingerprint.to_dict()
    log(f"[{space}/{device}] {json.dumps(res)}")
    return res


def fmt(r: dict, sep: str = " | ") -> str:
    return sep.join([f"{100 * r['within_10pct']:.0f}%", f"{r['rmspe']:.1f}%", f"{r['kendall_tau']:.3f}"])


def markdown(results: list[dict], gpu_note: str) -> str:
    r0 = results[0]
    n_fit = r0["fit"]["n_train"] + r0["fit"]["n_test"]
    statistic = r0.get("statistic", "median")
    lines = [
        f"## Measured latency tables: whole-network prediction on this machine ({statistic} of repeated runs)",
        "",
        f"Per space: a layer table of real kernels (fp32, batch 1, one thread, noise-controlled, the "
        f"{statistic} of repeated runs after outlier rejection), "
        f"a learned correction fitted on {n_fit} networks measured end to end (seed stream 0; its own "
        f"train/test split in the 'fit test' column), and {r0['n']} further networks from seed {r0['seed']} "
        "that were never used for fitting. 'Noise floor' is each of those networks measured a second time "
        "(after all first measurements) against its first measurement: no predictor can be more accurate "
        "than the measurement is repeatable.",
        "",
        "| space | device | n | within ±10% | RMSPE | Kendall τ | table sum alone: within ±10% / RMSPE / τ "
        "| noise floor: within ±10% / RMSPE / τ | fit test (n): within ±10% / RMSPE | median latency | load avg start→end |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        t = r["fit"]["test"]
        lines.append(
            f"| {r['space']} | {r['fingerprint']['device']} ({r['fingerprint']['clock']} clock) | {r['n']} | "
            f"{fmt(r)} | {fmt(r['lut_sum'], ' / ')} | {fmt(r['noise_floor'], ' / ')} | "
            f"{100 * t['within_10pct']:.0f}% / {t['rmspe']:.1f}% ({r['fit']['n_test']}) | "
            f"{r['median_measured_ms']:.2f} ms | {r['load_avg'][0]}→{r['load_avg'][1]} |"
        )
    met = [r["space"] for r in results if r["within_10pct"] >= 0.95 and r["kendall_tau"] >= 0.9]
    ratios = ", ".join(f"{r['space']} {r['rmspe'] / max(r['noise_floor']['rmspe'], 1e-9):.2f}x" for r in results)
    fp = r0["fingerprint"]
    lines += [
        "",
        f"Goals from the issue: within ±10% >= 95% (nn-Meter reports 99.0% on a mobile CPU), Kendall τ >= 0.9 — "
        f"met for: {', '.join(met) if met else 'none'} in this run. Prediction RMSPE as a multiple of the "
        f"noise floor's RMSPE: {ratios} (about 1x or below means the predictor is as close to a measurement "
        "as a second measurement is; then the machine's noise, not the predictor, limits the figures). "
        f"Device: {fp.get('model', '?')}, torch {fp.get('torch', '?')}, {fp.get('threads', '?')} thread, "
        f"{fp.get('dtype', '?')}, clock `{fp.get('clock', '?')}` (the measuring thread's CPU time, which on "
        "a shared machine leaves out time the scheduler gave to other processes; on a quiet machine it "
        "equals wall time). The load average is the 1-minute average of runnable processes on this "
        f"{os.cpu_count()}-CPU machine while the checked networks were measured.",
        "",
        gpu_note,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spaces", nargs="+", default=["ofa-mbv3", "vit"])
    ap.add_argument("--n", type=int, default=100, help="networks checked per space (never used for fitting)")
    ap.add_argument("--fit", type=int, default=100, help="networks measured to fit the correction")
    ap.add_argument("--profile-nets", type=int, default=0,
                    help="networks whose layers are profiled up front (the rest are measured on demand)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the checked networks")
    ap.add_argument("--cache-dir", type=Path, default=None)
    ap.add_argument("--devices", nargs="+", default=None, help="default: cpu, plus cuda when a GPU is present")
    ap.add_argument("--statistic", default="median", choices=["median", "min"],
                    help="per-measurement statistic (min repeats better on a busy machine)")
    ap.add_argument("--no-write", action="store_true", help="print figures, leave BENCHMARKS.md alone")
    ap.add_argument("--render", type=Path, default=None,
                    help="re-render the section from a results.json an earlier run saved (no measuring)")
    args = ap.parse_args(argv)

    import torch

    def log(msg: str) -> None:
        print(time.strftime("%H:%M:%S"), msg, flush=True)

    if args.render:
        results = json.loads(args.render.read_text())
        devices = sorted({r["fingerprint"]["device"] for r in results})
        args.statistic = results[0].get("statistic", "median")
        cache = args.render.parent
    else:
        devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
        cache = args.cache_dir or cache_root() / "benchmarks" / time.strftime("latency-%Y%m%d-%H%M%S")
        results = [run_space(s, d, args.n, args.fit, args.profile_nets, args.seed, cache, args.statistic, log)
                   for d in devices for s in args.spaces]
    gpu_note = ("CUDA: measured above." if "cuda" in devices else
                "CUDA: no GPU was at hand when this ran, so there are no CUDA figures; the CUDA paths "
                "(CUDA-event timing, fp16/bf16, int8 `torch._int_mm`, 2:4 semi-structured linear) are "
                "untested on hardware.")
    body = markdown(results, gpu_note)
    if not args.render:
        atomic_write_json(cache / "results.json", results)
    print(body)
    log(f"figures as JSON: {cache / 'results.json'}")
    if not args.no_write:
        used = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--render" and not a.endswith(".json")]
        cmd = "python benchmarks/latency_measured.py " + " ".join(used)
        name = "latency_measured" if args.statistic == "median" else f"latency_measured_{args.statistic}"
        write_section(name, body, cmd.strip())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
