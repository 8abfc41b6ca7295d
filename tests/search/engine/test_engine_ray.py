"""The engine end to end on a local Ray: parallel trials, records, failures, inspect, and resume after kill -9.

One Ray instance serves the whole module (start-up costs seconds); every search is tiny (an 8x8
ofa-mbv3 with at most one epoch).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hwsearch.search.engine.config import parse_config

ROOT = Path(__file__).resolve().parents[3]  # the repository
METRICS = ["val_acc", "test_acc", "macs", "params", "peak_activation_bytes", "choice"]


@pytest.fixture(scope="module")
def parallel_run(ray_local, tmp_path_factory, tiny_experiment):
    from hwsearch.search.engine.driver import run_experiment

    root = tmp_path_factory.mktemp("runs")
    cfg = parse_config(tiny_experiment(root, name="parallel", evaluation={"epochs": 1, "seed": 0}))
    return run_experiment(cfg, quiet=True)


def test_a_run_records_every_trial_pareto_and_plots(parallel_run):
    df = parallel_run.trials()
    assert len(df) == 4 and df["trial_id"].is_unique and set(df["status"]) == {"ok"}
    for col in METRICS + ["started_at", "finished_at", "artifacts"]:
        assert df[col].notna().all(), col
    import ray

    here = f"{ray.util.get_node_ip_address()}/{ray.get_runtime_context().get_node_id()}"
    assert set(df["node"]) == {here} and set(df["failures"]) == {0}  # the one local node, no failed attempt
    pareto = json.loads(parallel_run.pareto_path.read_text())
    assert pareto["trials"] and {t["trial_id"] for t in pareto["trials"]} <= set(df["trial_id"])
    assert (parallel_run.plots_dir / "pareto_val_acc_vs_macs.png").is_file()
    assert parallel_run.state == "finished"
    assert yaml.safe_load((parallel_run.path / "config.yaml").read_text())["budget"]["trials"] == 4


def test_two_workers_run_two_trials_at_the_same_time(parallel_run):
    df = parallel_run.trials().sort_values("started_at")
    spans = list(zip(df["started_at"], df["finished_at"], strict=True))
    overlaps = [(a, b) for i, a in enumerate(spans) for b in spans[i + 1:] if b[0] < a[1] and a[0] < b[1]]
    assert overlaps


def test_inspect_lists_trials_best_first_and_export_picks_the_best(parallel_run):
    from typer.testing import CliRunner

    from hwsearch.cli import app

    out = CliRunner().invoke(app, ["inspect", str(parallel_run.path), "--format", "json"])
    assert out.exit_code == 0, out.output
    s = json.loads(out.output)
    accs = [t["val_acc"] for t in s["trials"]]
    assert accs == sorted(accs, reverse=True) and s["best"]["trial_id"] == s["trials"][0]["trial_id"]
    assert s["state"] == "finished" and s["finished"] == 4
    csv = CliRunner().invoke(app, ["inspect", str(parallel_run.path), "--format", "csv"])
    assert csv.output.splitlines()[0].startswith("trial_id,status,pareto")


def test_a_diverging_trial_is_recorded_failed_and_the_search_goes_on(ray_local, tmp_path, tiny_experiment):
    from hwsearch.search.engine.driver import run_experiment

    cfg = parse_config(tiny_experiment(tmp_path, name="diverge", budget={"trials": 2},
                                       evaluation={"epochs": 1, "seed": 0,
                                                   "recipe": {"lr": 1e9, "grad_clip": 0, "batch_size": 128}}))
    run = run_experiment(cfg, quiet=True)
    df = run.trials()
    assert len(df) == 2 and set(df["status"]) == {"failed"}
    assert all("TrainingDiverged" in e and "nan" in e for e in df["error"])
    assert json.loads(run.pareto_path.read_text())["trials"] == []
    assert set(df["failures"]) == {1}  # ray.max_failures is 0 by default: no second attempt


def test_ray_max_failures_gives_a_failed_trial_more_attempts(ray_local, tmp_path, tiny_experiment):
    from hwsearch.search.engine.driver import run_experiment

    cfg = parse_config(tiny_experiment(tmp_path, name="again", budget={"trials": 1},
                                       ray={"workers": 1, "cpus_per_trial": 1, "max_failures": 2},
                                       evaluation={"epochs": 1, "seed": 0,
                                                   "recipe": {"lr": 1e9, "grad_clip": 0, "batch_size": 128}}))
    df = run_experiment(cfg, quiet=True).trials()
    assert len(df) == 1 and df["status"].iloc[0] == "failed" and df["failures"].iloc[0] == 3  # 1 + 2 retries


def test_resume_after_kill_9_loses_no_trial_and_repeats_none(ray_local, tmp_path, tiny_experiment,
                                                               killed_run):
    from hwsearch.search.engine.driver import resume_experiment
    from hwsearch.search.generic.optuna_search import open_study

    budget = 5
    raw = tiny_experiment(tmp_path, name="killed", budget={"trials": budget}, ray={"workers": 1, "cpus_per_trial": 1},
                          searcher={"name": "optuna", "seed": 0, "settings": {"population_size": 2}})
    (tmp_path / "killed.yaml").write_text(yaml.safe_dump(raw))
    run_path = tmp_path / "killed"
    before = killed_run(tmp_path / "killed.yaml", run_path)
    assert 2 <= len(before) < budget

    run = resume_experiment(run_path, quiet=True)
    after = run.trials()
    assert len(after) == budget and after["trial_id"].is_unique
    kept = after.set_index("trial_id").loc[before["trial_id"], METRICS]
    assert kept.equals(before.set_index("trial_id")[METRICS])
    study = open_study(run_path / "optuna.journal", "killed")
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == budget  # the study kept the pre-kill trials and learnt the new ones
    assert run.state == "finished"


def test_a_run_moved_after_kill_9_resumes_in_its_new_folder(ray_local, tmp_path, tiny_experiment, killed_run):
    from hwsearch.search.engine.driver import resume_experiment
    from hwsearch.search.generic.optuna_search import open_study

    budget = 4
    raw = tiny_experiment(tmp_path, name="moving", budget={"trials": budget}, ray={"workers": 1, "cpus_per_trial": 1},
                          searcher={"name": "optuna", "seed": 0, "settings": {"population_size": 2}})
    (tmp_path / "moving.yaml").write_text(yaml.safe_dump(raw))
    old = tmp_path / "moving"
    before = killed_run(tmp_path / "moving.yaml", old)
    new = tmp_path / "elsewhere" / "moved"
    new.parent.mkdir()
    old.rename(new)

    run = resume_experiment(new, quiet=True)
    assert not old.exists()  # nothing of the run went back to where it was
    after = run.trials()
    assert len(after) == budget and after["trial_id"].is_unique
    assert set(before["trial_id"]) <= set(after["trial_id"])
    assert all((new / "trials" / t).is_dir() for t in after["trial_id"])
    study = open_study(new / "optuna.journal", "moving")
    assert len([t for t in study.trials if t.state.name == "COMPLETE"]) == budget
    assert run.state == "finished"
