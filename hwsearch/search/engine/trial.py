"""One Ray Tune trial: evaluate the searcher's proposal, add provider metrics, save, report.

A trial writes its folder ``trials/<trial_id>/`` in the run directory (choice, NetSpec, report,
``state_dict.pt`` and the evaluator's extra documents) into a temporary folder first and renames
it into place, so a folder that exists is complete. If Tune restarts a trial that had already
finished (a ``kill -9`` between the trial's end and Tune's next state save), the trial reports the
saved result instead of training again: no finished trial is evaluated twice.

The report names the Ray node that evaluated the trial (``node``: its IP and node id), so that a run
on a cluster shows where each trial ran and a lost node's trials can be traced.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from hwsearch.io import atomic_write_json
from hwsearch.search.engine import evaluators
from hwsearch.search.engine import metrics as providers
from hwsearch.search.engine.config import ExperimentConfig


class ObjectiveMissing(RuntimeError):
    """A trial finished without reporting one of the objectives."""


def evaluate_trial(params: dict[str, Any], config: ExperimentConfig, trial_dir: Path,
                   node: str | None = None) -> dict[str, Any]:
    """Evaluate one proposal, save its folder at ``trial_dir`` and return its report (``node``: where it ran)."""
    if (trial_dir / "report.json").is_file():
        return json.loads((trial_dir / "report.json").read_text())
    started = time.time()
    data = evaluators.cached_data(config.data.source, config.data.seed)
    space = evaluators.build_space(config, data)
    threads = max(1, int(config.ray.cpus_per_trial))
    ctx = evaluators.TrialContext(config=config, space=space, data=data, threads=threads,
                                  run_path=trial_dir.parent.parent)  # <run>/trials/<id>
    ev = evaluators.get(config.evaluation.evaluator).evaluate(params, ctx)
    metrics = {**ev.metrics, **providers.measure(ev.netspec, config)}
    missing = [o.metric for o in config.objectives if o.metric not in metrics]
    if missing:
        raise ObjectiveMissing(f"objective(s) {missing} were not reported; the trial reported {sorted(metrics)}")
    for o in config.objectives:
        v = metrics[o.metric]
        if not isinstance(v, (int, float)) or not math.isfinite(float(v)):
            raise ObjectiveMissing(f"objective {o.metric!r} is {v!r}, not a finite number")
    finished = time.time()
    report = {
        **{k: float(v) for k, v in metrics.items()},
        "feasible": bool(config.feasible(metrics)),
        "choice": json.dumps(ev.choice, sort_keys=True),
        "started_at": started,
        "finished_at": finished,
        "duration_s": finished - started,
        "node": node,
    }
    save_trial(trial_dir, ev, report)
    return report


def save_trial(trial_dir: Path, ev: evaluators.Evaluation, report: dict[str, Any]) -> None:
    """Write the trial folder atomically (temporary sibling folder, then rename)."""
    trial_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{trial_dir.name}.", dir=trial_dir.parent))
    try:
        atomic_write_json(tmp / "choice.json", ev.choice)
        atomic_write_json(tmp / "netspec.json", ev.netspec.to_dict())
        for name, doc in ev.documents.items():
            atomic_write_json(tmp / f"{name}.json", doc)
        if ev.model is not None:
            torch.save(ev.model.state_dict(), tmp / "state_dict.pt")
        atomic_write_json(tmp / "report.json", {**report, "choice": ev.choice})  # last: marks completeness
        if trial_dir.exists():
            shutil.rmtree(trial_dir)
        tmp.rename(trial_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def this_node() -> str:
    """``IP/node id`` of the Ray node this process runs on (a cluster may run several nodes on one IP)."""
    import ray

    return f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()}"


def trainable(params: dict[str, Any], *, run_path: str, config: dict[str, Any]) -> None:
    """The Ray Tune function trainable: evaluate and report once."""
    from ray import tune

    cfg = ExperimentConfig.model_validate(config)
    trial_id = tune.get_context().get_trial_id()
    report = evaluate_trial(params, cfg, Path(run_path) / "trials" / trial_id, node=this_node())
    if isinstance(report.get("choice"), dict):
        report = {**report, "choice": json.dumps(report["choice"], sort_keys=True)}
    tune.report(report)


__all__ = ["ObjectiveMissing", "evaluate_trial", "save_trial", "this_node", "trainable"]
