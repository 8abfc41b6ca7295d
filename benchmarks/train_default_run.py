"""An experiment end to end: how long `hwsearch run CONFIG` takes, and whether its export reproduces it.

Runs ``hwsearch run CONFIG`` (default: configs/optuna.yaml, the plain trained-per-trial search; pass
configs/default.yaml for the NAAS flagship) into a temporary run root, then ``hwsearch inspect`` and
``hwsearch export --trial best``, and writes to BENCHMARKS.md: wall time of the run, trials finished
and failed, the best trial, the Pareto front size, and the exported TorchScript / ONNX Runtime test
accuracies against the reported one with their largest logit difference. When the export holds a
``hardware.json`` (the NAAS flagship), it also prices the exported NetSpec on that hardware with
``hwsearch hw cost`` and compares latency and energy with the reported ones. For a NAAS run it also
trains each refined triple's network from scratch in full precision (the space's default recipe,
``--scratch-seeds``) and sets the refined triple's measured test accuracy (after final training) beside
it. Each config has its own section (``run:<config stem>``).

    python -m benchmarks.train_default_run [--config configs/optuna.yaml] [--set budget.trials=12 ...]
        [--scratch-seeds 0 1 2] [--run RUN_DIR]

``--run`` measures a finished run folder instead of running the config (e.g. the one ``make run``
wrote); its wall time is then the run's own record (started to last update).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.report import ROOT, write_section


def _cli(*args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "hwsearch.cli", *args], cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"hwsearch {' '.join(args)} failed:\n{proc.stderr[-2000:]}")
    return proc.stdout


def refined_vs_scratch(run: Path, seeds: list[int]) -> list[dict]:
    """Each refined triple of a NAAS run: its measured test accuracy and its network's from scratch."""
    import torch

    from hwsearch.data import load_data
    from hwsearch.search.engine.evaluators import build_space
    from hwsearch.search.engine.rundir import RunDir
    from hwsearch.train import Recipe, train_and_evaluate

    rd = RunDir(run)
    cfg, df = rd.config(), rd.trials()
    if "measured" not in df.columns or not seeds:
        return []
    data = load_data(cfg.data.source, seed=cfg.data.seed)
    space = build_space(cfg, data)
    rows = []
    for _, r in df[df["measured"] == 1.0].sort_values("rank").iterrows():
        choice = json.loads(r["choice"]) if isinstance(r["choice"], str) else dict(r["choice"])
        net = {d.name: choice[d.name] for d in space.dims}
        scratch = []
        for seed in seeds:
            torch.manual_seed(seed)
            res = train_and_evaluate(space.build(net), data, seed=seed, recipe=Recipe(threads=torch.get_num_threads()),
                                     resolution=space.input_shape(net)[1])
            scratch.append(res.test_acc)
        rows.append({"trial": r["trial_id"], "rank": int(r["rank"]), "n_test": len(data.y_test),
                     "refined": float(r["test_acc"]), "predicted": float(r["predicted_acc"]),
                     "epochs_run": float(r.get("finetune_epochs_run", float("nan"))),
                     "macs": float(r["macs"]), "scratch": scratch})
        print(f"refined {rows[-1]}", flush=True)
    return rows


def main(argv: list[str] | None = None) -> None:
    """Run, inspect, export, and write the section."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", default="configs/optuna.yaml", help="experiment config to run")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--scratch-seeds", type=int, nargs="*", default=[0, 1, 2],
                   help="seeds of the from-scratch trainings a NAAS run's refined triples are compared with "
                        "(none: no comparison)")
    p.add_argument("--run", default=None, help="a finished run folder to measure instead of running --config")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        if args.run:
            run = Path(args.run)
            record = json.loads((run / "hwsearch-run.json").read_text())
            if record.get("state") != "finished":
                raise SystemExit(f"{run} has not finished (state {record.get('state')!r})")
            wall = record["updated"] - record["created"]
        else:
            sets = [a for o in [f"output.root={tmp}", *args.overrides] for a in ("--set", o)]
            start = time.perf_counter()
            _cli("run", args.config, *sets, "--quiet")
            wall = time.perf_counter() - start
            run = next(d for d in Path(tmp).iterdir() if d.is_dir())
        s = json.loads(_cli("inspect", str(run), "--format", "json", "--plot"))
        _cli("export", str(run), "--trial", "best", "--out", str(Path(tmp) / "bundle"))
        bundle = Path(tmp) / "bundle"
        report = json.loads((bundle / "report.json").read_text())
        refined = refined_vs_scratch(run, args.scratch_seeds)
        from hwsearch.search.engine.rundir import RunDir

        cfg = RunDir(run).config()
        source = cfg.data.source
        # the searched accelerator when the run co-searched one, else the one the config priced on
        accel = str(bundle / "hardware.json") if (bundle / "hardware.json").is_file() else cfg.hardware.get("accelerator")
        hw = None
        if accel and "latency_ms" in report:
            hw = json.loads(_cli("hw", "cost", "--accel", accel, "--layers", str(bundle / "netspec.json"),
                                 "--mapper", "fast", "--format", "json"))["total"]
    check = report["export_check"]
    best = s["best"]
    lm = check.get("torchscript_test_perplexity") is not None  # a language model: judged by perplexity
    body = (
        f"## An experiment end to end (`hwsearch run {args.config}`)\n\n"
        f"{args.config}: {s['space']} on `{source}`, searcher {s['searcher']}, objectives "
        f"{', '.join(o['metric'] + ' ' + o['mode'] for o in s['objectives'])}, constraints "
        f"{', '.join(s['constraints']) or 'none'}.\n\n"
        "| measure | value |\n|---|---|\n"
        f"| wall time of `hwsearch run` ({'the run folder' + chr(39) + 's own record' if args.run else 'Ray start-up included'}) "
        f"| {wall:.0f} s |\n"
        f"| trials finished / failed / budget | {s['finished']} / {s['failed']} / {s['budget']} |\n"
        f"| Pareto front size | {len(s['pareto'])} |\n"
        + (f"| best trial val / test perplexity | {best['val_perplexity']:.3f} / {best['test_perplexity']:.3f} "
           f"at {best['macs'] / 1e6:.2f} MMACs |\n"
           f"| exported TorchScript / ONNX Runtime test perplexity | {check['torchscript_test_perplexity']:.4f} / "
           f"{check['onnx_test_perplexity']:.4f} (reported {check['reported_test_perplexity']:.4f}) |\n" if lm else
           f"| best trial val / test top-1 | {100 * best['val_acc']:.1f}% / {100 * best['test_acc']:.1f}% "
           f"at {best['macs'] / 1e6:.2f} MMACs |\n"
           f"| exported TorchScript / ONNX Runtime test top-1 | {100 * check['torchscript_test_acc']:.2f}% / "
           f"{100 * check['onnx_test_acc']:.2f}% (reported {100 * check['reported_test_acc']:.2f}%) |\n")
        + f"| max abs logit difference TorchScript vs ONNX | {check['max_logit_diff']:.1e} |\n"
    )
    if hw is not None:
        where = "the exported hardware.json" if accel.endswith(".json") else f"`{accel}`"
        body += (f"| reported latency / energy | {report['latency_ms']:.6g} ms / {report['energy_mj']:.6g} mJ |\n"
                 f"| `hwsearch hw cost --mapper fast` on {where} + the exported netspec.json | "
                 f"{hw['latency_s'] * 1e3:.6g} ms / {hw['energy_pj'] * 1e-9:.6g} mJ |\n")
    if refined:
        n_test = refined[0]["n_test"]
        body += ("\nEach refined triple (sub-network, bit-widths, accelerator) after final training, against its "
                 f"network trained from scratch in full precision with the space's default recipe (seeds "
                 f"{', '.join(map(str, args.scratch_seeds))}; median, range in brackets). Test split: "
                 f"{n_test} images (one image = {100 / n_test:.2f} pt).\n\n"
                 "| rank | MMACs | predicted | refined test % (final-training epochs) | from scratch, float % | "
                 "refined - scratch |\n|---|---|---|---|---|---|\n")
        for r in refined:
            med = statistics.median(r["scratch"])
            body += (f"| {r['rank']} | {r['macs'] / 1e6:.2f} | {100 * r['predicted']:.1f} | "
                     f"{100 * r['refined']:.1f} ({r['epochs_run']:.0f}) | {100 * med:.1f} "
                     f"[{100 * min(r['scratch']):.1f}, {100 * max(r['scratch']):.1f}] | "
                     f"{100 * (r['refined'] - med):+.1f} pt |\n")
    cmd = "python -m benchmarks.train_default_run " + " ".join(argv if argv is not None else sys.argv[1:])
    write_section(f"run:{Path(args.config).stem}", body, cmd.strip())
    print(body)


if __name__ == "__main__":
    main()
