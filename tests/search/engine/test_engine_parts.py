"""Engine parts that need no Ray: searcher state, Pareto front, run directories, trial folders, export."""

from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from hwsearch.errors import RunError
from hwsearch.search.engine import evaluators, metrics, searchers
from hwsearch.search.engine.bundle import export_trial, find_trial
from hwsearch.search.engine.config import parse_config
from hwsearch.search.engine.rundir import MARKER, RunDir, best_trial, pareto_front
from hwsearch.search.engine.trial import evaluate_trial
from hwsearch.search.generic.random_search import RandomSearcher


def test_random_searcher_continues_its_stream_after_save_and_restore(tmp_path):
    genes = [("a", 3), ("b", 4), ("c", 2)]
    straight = RandomSearcher(genes, seed=7, metric="val_acc", mode="max")
    expected = [straight.suggest(f"t{i}") for i in range(10)]
    first = RandomSearcher(genes, seed=7, metric="val_acc", mode="max")
    got = [first.suggest(f"t{i}") for i in range(4)]
    first.save(str(tmp_path / "state.json"))
    second = RandomSearcher([], seed=0, metric="val_acc", mode="max")
    second.restore(str(tmp_path / "state.json"))
    got += [second.suggest(f"t{i}") for i in range(4, 10)]
    assert got == expected
    assert json.loads((tmp_path / "state.json").read_text())["kind"] == "random"  # JSON, not a pickle


def test_random_searcher_never_repeats_while_unseen_choices_remain():
    searcher = RandomSearcher([("a", 3), ("b", 4)], seed=0, metric="val_acc", mode="max")
    proposals = [json.dumps(searcher.suggest(f"t{i}"), sort_keys=True) for i in range(12)]
    assert len(set(proposals)) == 12


def test_random_searcher_gives_a_restarted_trial_its_old_proposal():
    searcher = RandomSearcher([("a", 5), ("b", 5)], seed=3, metric="val_acc", mode="max")
    first = searcher.suggest("t0")
    searcher.suggest("t1")
    assert searcher.suggest("t0") == first


def test_optuna_searcher_reopens_its_journal_study_on_restore(tiny_experiment, tmp_path):
    from hwsearch.search.generic.optuna_search import open_study

    cfg = parse_config(tiny_experiment(tmp_path, searcher={"name": "optuna", "seed": 1}))
    space = evaluators.build_space(cfg, evaluators.cached_data("digits", 0))
    s1 = searchers.build(space, cfg, tmp_path)
    s1.set_search_properties(None, None, {})
    for i in range(3):
        s1.suggest(f"t{i}")
        s1.on_trial_complete(f"t{i}", {"val_acc": 0.1 * i, "macs": 1000.0 - i})
    s1.suggest("t3")  # still running when the state is saved
    s1.save(str(tmp_path / "searcher-state.json"))
    s2 = searchers.build(space, cfg, tmp_path)
    s2.restore(str(tmp_path / "searcher-state.json"))
    s2.on_trial_complete("t3", {"val_acc": 0.5, "macs": 10.0})
    s2.suggest("t4")
    study = open_study(tmp_path / "optuna.journal", cfg.name)
    states = [t.state.name for t in study.trials]
    assert states[:4] == ["COMPLETE"] * 4 and len(states) == 5
    assert study.trials[3].values == [0.5, 10.0]


@pytest.mark.parametrize("sampler", ["nsga2", "tpe"])
def test_optuna_searcher_pickles_as_tune_pickles_it_and_goes_on_with_its_study(tiny_experiment, tmp_path, sampler):
    import ray.cloudpickle

    from hwsearch.search.generic.optuna_search import open_study

    cfg = parse_config(tiny_experiment(tmp_path, searcher={"name": "optuna", "seed": 1,
                                                           "settings": {"sampler": sampler}}))
    space = evaluators.build_space(cfg, evaluators.cached_data("digits", 0))
    s1 = searchers.build(space, cfg, tmp_path)
    s1.set_search_properties(None, None, {})
    s1.suggest("t0")
    s1.on_trial_complete("t0", {"val_acc": 0.5, "macs": 100.0})
    s1.suggest("t1")  # running while Tune pickles the searcher
    s2 = ray.cloudpickle.loads(ray.cloudpickle.dumps(s1))  # as `tune.Tuner` does with its search algorithm
    s2.on_trial_complete("t1", {"val_acc": 0.6, "macs": 90.0})
    assert s2.suggest("t2")["choice"].keys() == s1.suggest("t3")["choice"].keys()
    study = open_study(tmp_path / "optuna.journal", cfg.name)
    assert [t.values for t in study.trials[:2]] == [[0.5, 100.0], [0.6, 90.0]]


def _frame(rows):
    base = {"status": "ok", "feasible": True, "error": None, "choice": "{}", "started_at": 0.0, "finished_at": 0.0,
            "duration_s": 0.0, "artifacts": None}
    return pd.DataFrame([{**base, **r} for r in rows])


def test_pareto_front_keeps_only_feasible_non_dominated_trials(tiny_experiment, tmp_path):
    cfg = parse_config(tiny_experiment(tmp_path, constraints=["macs <= 100"]))
    df = _frame([
        {"trial_id": "a", "val_acc": 0.9, "macs": 50.0},
        {"trial_id": "b", "val_acc": 0.8, "macs": 60.0},   # dominated by a
        {"trial_id": "c", "val_acc": 0.7, "macs": 10.0},
        {"trial_id": "d", "val_acc": 0.99, "macs": 500.0, "feasible": False},
        {"trial_id": "e", "val_acc": 0.95, "macs": 90.0},
        {"trial_id": "f", "status": "failed", "feasible": False, "val_acc": np.nan, "macs": np.nan},
    ])
    assert [r["trial_id"] for r in pareto_front(df, cfg)] == ["e", "a", "c"]
    assert best_trial(df, cfg)["trial_id"] == "e"


def test_netspec_metric_provider_reports_counts_at_batch_one(tiny_experiment, tmp_path):
    cfg = parse_config(tiny_experiment(tmp_path))
    space = evaluators.build_space(cfg, evaluators.cached_data("digits", 0))
    net = space.to_netspec(space.reference("smallest"), batch=4)
    m = metrics.measure(net, cfg)
    assert m["macs"] == net.with_batch(1).macs and m["params"] == net.params
    assert m["peak_activation_bytes"] == net.with_batch(1).peak_activation_bytes


def test_opening_a_run_checks_its_marker_and_format(tiny_experiment, tmp_path):
    with pytest.raises(RunError, match="does not exist"):
        RunDir.open(tmp_path / "missing")
    (tmp_path / "plain").mkdir()
    with pytest.raises(RunError, match="not an hwsearch run directory"):
        RunDir.open(tmp_path / "plain")
    run = RunDir.create(tmp_path / "r", parse_config(tiny_experiment(tmp_path)))
    (run.path / MARKER).write_text(json.dumps({"format": 99}))
    with pytest.raises(RunError, match="format 99"):
        RunDir.open(run.path)
    with pytest.raises(RunError, match="already holds a run"):
        RunDir.create(run.path, parse_config(tiny_experiment(tmp_path)))


@pytest.fixture(scope="module")
def exported_run(tmp_path_factory, tiny_experiment):
    """A run directory holding one trained trial, recorded the way the engine records it."""
    root = tmp_path_factory.mktemp("runs")
    cfg = parse_config(tiny_experiment(root, evaluation={"epochs": 2, "seed": 0,
                                                          "recipe": {"batch_size": 64, "lr": 0.01, "threads": 1}}))
    run = RunDir.create(root / "tiny", cfg)
    report = evaluate_trial({"choice": {d: 0 for d in _dims(cfg)}}, cfg, run.trial_dir("t0"))
    run.write_trials([{**report, "trial_id": "t0", "status": "ok", "error": None, "artifacts": "trials/t0"}])
    return run, report


def _dims(cfg):
    return evaluators.build_space(cfg, evaluators.cached_data("digits", 0)).dim_names


def test_a_trial_folder_holds_choice_netspec_report_and_weights(exported_run):
    run, report = exported_run
    saved = evaluators.SavedTrial(run.trial_dir("t0"))
    assert saved.report["val_acc"] == report["val_acc"]
    assert saved.netspec.macs == report["macs"]
    assert set(saved.state_dict())


def test_export_reproduces_the_reported_accuracy_in_torchscript_and_onnx(exported_run, tmp_path):
    run, report = exported_run
    res = export_trial(run, "best", tmp_path / "bundle")
    files = {p.name for p in (tmp_path / "bundle").iterdir()}
    assert {"state_dict.pt", "model.torchscript.pt", "model.onnx", "choice.json", "netspec.json",
            "report.json"} <= files
    assert abs(res.torchscript_test_acc - report["test_acc"]) <= 0.005
    assert abs(res.onnx_test_acc - report["test_acc"]) <= 0.005
    assert res.max_logit_diff < 1e-4
    exported = json.loads((tmp_path / "bundle" / "report.json").read_text())
    assert exported["val_acc"] == report["val_acc"] and exported["export_check"]["max_logit_diff"] < 1e-4


def test_export_of_an_unknown_trial_names_the_finished_ones(exported_run):
    run, _ = exported_run
    with pytest.raises(RunError, match="finished: t0"):
        find_trial(run, "nope")


@pytest.mark.parametrize("env, enabled, mode", [
    ({"RAY_AUTH_TOKEN": "t0ken"}, True, "token"),            # the user's token: sent to the cluster
    ({"RAY_AUTH_TOKEN_PATH": "/some/file"}, True, "token"),
    ({}, False, None),                                        # no token: Ray's own default
    ({"RAY_AUTH_TOKEN": "t0ken", "RAY_AUTH_MODE": "disabled"}, False, "disabled"),  # the user's choice stands
])
def test_a_cluster_token_in_the_environment_turns_on_ray_token_auth_for_the_client(monkeypatch, env, enabled, mode):
    from hwsearch.search.engine import driver

    # a plain dict for os.environ: what the call sets must not leak into this process's later Ray starts
    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")} | env)
    reloads = []
    monkeypatch.setattr(driver, "_reload_ray_config", lambda: reloads.append(1) or True)  # not this process's Ray
    assert driver.use_cluster_token() is enabled
    assert os.environ.get("RAY_AUTH_MODE") == mode
    assert len(reloads) == (1 if enabled else 0)



def test_nondominated_all_keeps_exactly_the_rows_no_other_row_dominates():
    from hwsearch.search.pareto import nondominated_all

    rng = np.random.default_rng(0)
    for _ in range(300):
        p = rng.integers(0, 4, size=(int(rng.integers(0, 25)), int(rng.integers(1, 4)))).astype(float)
        if len(p) and rng.random() < 0.3:
            p[rng.integers(len(p)), rng.integers(p.shape[1])] = rng.choice([np.inf, -np.inf, np.nan])
        dominated = [any(np.all(q <= r) and np.any(q < r) for q in p) for r in p]
        assert nondominated_all(p).tolist() == [not d for d in dominated]


def test_what_tune_restores_of_a_moved_run_points_at_the_folder_it_is_resumed_in(tmp_path):
    import pickle

    from hwsearch.search.engine.driver import RecordCallback
    from hwsearch.search.engine.rundir import resuming
    from hwsearch.search.naas.plugin import NaasSearcher

    old, new = tmp_path / "old", tmp_path / "new"
    callback = pickle.dumps(RecordCallback(str(old)))
    searcher = NaasSearcher.__new__(NaasSearcher)  # only its folder matters here
    searcher.__dict__.update(run_dir=str(old), reported=False)
    saved = pickle.dumps(searcher)
    assert pickle.loads(callback).run_path == str(old)  # outside a resume: as saved
    assert pickle.loads(saved).run_dir == str(old)
    with resuming(new):
        assert pickle.loads(callback).run_path == str(new)
        restored = pickle.loads(saved)
        assert restored.run_dir == str(new) and restored.state_path.parent == new / "naas"
    assert pickle.loads(callback).run_path == str(old)  # the block ended: nothing left pointing elsewhere
