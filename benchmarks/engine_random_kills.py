"""Random kill -9 on the local engine: a search killed at seeded random moments and resumed each time.

For each searcher (random, optuna, naas) a small search first runs uninterrupted, to learn its run time
T and its trials. Then the same search is started again and killed with SIGKILL (driver, Ray and
trials, as in a power cut) ``--kills`` times, at moments drawn uniformly over [0, T] from a seeded
generator (sorted, each measured from the search's first start, resume time included); after each
kill ``hwsearch run --resume`` continues it, and after the last one the resume runs to the end.

What must hold, and is reported per searcher: no trial finished before a kill is lost or changed, no
trial id is recorded twice, and the final count equals the budget; for the deterministic searchers
(random, naas) the final trials are also the uninterrupted run's trials. Writes the BENCHMARKS.md
section ``engine_random_kills``.

    python -m benchmarks.engine_random_kills [--kills 5] [--seed 0] [--searchers random optuna naas]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from benchmarks.report import ROOT, write_section
from hwsearch.search.rundir import RunDir

METRICS = ["choice", "val_acc", "macs"]


def _config(searcher: str, root: Path, budget: int) -> dict[str, Any]:
    """A search of about a second per trial (the test suite's tiny experiment), or the tiny NAAS run."""
    if searcher == "naas":
        raw = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
        raw["searcher"]["settings"].update(
            supernet_schedule="tiny", predictor_samples=16, population=3, generations=3, parents=1,
            inner_population=8, inner_generations=1, top_k=2, agent_episodes=1, finetune_epochs=0,
            penalty_reference="smallest")
        raw.update(name="killed", budget={"trials": 3 * 3 + 2}, ray={"workers": 2, "cpus_per_trial": 1},
                   output={"root": str(root)})
        return raw
    settings = {"population_size": 4} if searcher == "optuna" else {}
    return {
        "name": "killed",
        "space": {"name": "ofa-mbv3", "options": {
            "resolutions": [8], "widths": [8, 8, 16, 16, 16], "head_width": 32, "expand_ratios": [3],
            "kernels": [3, 5, 7], "depths": [2, 3]}},
        "data": {"source": "digits", "seed": 0},
        "objectives": [{"metric": "val_acc", "mode": "max"}, {"metric": "macs", "mode": "min"}],
        "searcher": {"name": searcher, "seed": 0, "settings": settings},
        "evaluation": {"epochs": 1, "seed": 0, "recipe": {"batch_size": 128}},
        "budget": {"trials": budget},
        "ray": {"workers": 2, "cpus_per_trial": 1},
        "output": {"root": str(root)},
    }


def _start(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hwsearch.cli", *args, "--quiet"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _trials(run_path: Path) -> dict[str, dict[str, Any]]:
    run = RunDir(run_path)
    if not run.trials_path.is_file():
        return {}
    return {str(r["trial_id"]): r for r in run.trials().to_dict("records")}


def _signature(row: dict[str, Any]) -> str:
    """What a trial evaluated and measured, independent of its id."""
    return json.dumps({k: row.get(k) for k in ("choice", "accuracy", "val_acc", "macs", "latency_ms")},
                      sort_keys=True, default=str)


def run_killed(searcher: str, kills: int, seed: int, budget: int, work: Path) -> dict[str, Any]:
    """The uninterrupted run, then the killed-and-resumed one; their figures."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HWSEARCH_CACHE": str(work / "cache")}
    whole_root = work / f"{searcher}-whole"
    (work / "whole.yaml").write_text(yaml.safe_dump(_config(searcher, whole_root, budget)))
    t0 = time.monotonic()
    proc = _start(["run", str(work / "whole.yaml")], env)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"{searcher}: the uninterrupted run failed:\n{err[-2000:]}")
    span = time.monotonic() - t0
    whole = _trials(whole_root / "killed")

    root = work / f"{searcher}-killed"
    (work / "killed.yaml").write_text(yaml.safe_dump(_config(searcher, root, budget)))
    run_path = root / "killed"
    moments = np.sort(np.random.default_rng(seed).uniform(0.0, span, size=kills))
    lost, changed, landed = 0, 0, []
    start = time.monotonic()
    proc = _start(["run", str(work / "killed.yaml")], env)
    for moment in moments:
        while time.monotonic() - start < moment and proc.poll() is None:
            time.sleep(0.05)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        before = _trials(run_path)
        landed.append(len(before))
        if not (run_path / "hwsearch-run.json").is_file():  # killed before the run folder existed
            proc = _start(["run", str(work / "killed.yaml")], env)
            continue
        if RunDir(run_path).state == "finished":
            break
        proc = _start(["run", "--resume", str(run_path)], env)
        if proc.poll() is None:
            time.sleep(0.5)  # let the resume start before the next moment can land
        after = _trials(run_path)
        lost += sum(t not in after for t in before)
        changed += sum(_signature(after[t]) != _signature(r) for t, r in before.items() if t in after)
    _, err = proc.communicate()
    final = _trials(run_path)
    state = RunDir(run_path).state if (run_path / "hwsearch-run.json").is_file() else "missing"
    deterministic = searcher != "optuna"
    same = sorted(map(_signature, final.values())) == sorted(map(_signature, whole.values()))
    return {
        "searcher": searcher, "budget": budget if searcher != "naas" else len(whole), "span_s": span,
        "moments": [round(float(m), 1) for m in moments], "trials_at_kill": landed, "final": len(final),
        "unique": len(set(final)) == len(final), "lost": lost, "changed": changed, "state": state,
        "same_as_uninterrupted": same if deterministic else None, "resume_error": err.strip()[-300:] or None,
        "total_s": time.monotonic() - start,
    }


def main(argv: list[str] | None = None) -> None:
    """Run every searcher killed and resumed, and write the section."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--budget", type=int, default=12, help="trials of the random and optuna searches")
    p.add_argument("--searchers", nargs="+", default=["random", "optuna", "naas"])
    args = p.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory(prefix="hwsearch-kills-") as tmp:
        for s in args.searchers:
            work = Path(tmp) / s
            work.mkdir()
            r = run_killed(s, args.kills, args.seed, args.budget, work)
            print(json.dumps(r), flush=True)
            rows.append(r)
    lines = [
        f"{args.kills} kill -9 of driver, Ray and trials at moments drawn uniformly over the uninterrupted run's "
        f"time (numpy seed {args.seed}, sorted, measured from the first start), each followed by "
        "`hwsearch run --resume`; the last resume runs to the end. 2 workers, 1 CPU a trial.",
        "",
        "| searcher | budget | uninterrupted s | kill moments s | trials recorded at each kill | final trials | "
        "ids unique | finished trials lost / changed | same trials as uninterrupted | state |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        same = "n/a (not seeded per trial)" if r["same_as_uninterrupted"] is None else \
            ("yes" if r["same_as_uninterrupted"] else "**no**")
        lines.append(f"| {r['searcher']} | {r['budget']} | {r['span_s']:.0f} | {r['moments']} | {r['trials_at_kill']} "
                     f"| {r['final']} | {'yes' if r['unique'] else '**no**'} | {r['lost']} / {r['changed']} | {same} "
                     f"| {r['state']} |")
    write_section("engine_random_kills", "## Random kill -9 on the local engine\n\n" + "\n".join(lines),
                  "python -m benchmarks.engine_random_kills " + " ".join(argv or sys.argv[1:]))


if __name__ == "__main__":
    main()
