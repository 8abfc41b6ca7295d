"""A run folder written before `hwsearch.search` was split into sub-packages still resumes and exports.

Ray Tune pickles the searcher, the callbacks and the trainable into the run folder by module path, so
the fixture's pickles name the old flat modules (``hwsearch.search.random_search.RandomSearcher``,
``hwsearch.search.driver.RecordCallback``). The fixture is a real run of the tiny random-searcher
experiment (budget 3) killed after two trials, its second trial's weights dropped to keep it small.
"""

from __future__ import annotations

import importlib
import json
import pickle
import shutil
from pathlib import Path

import pytest

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "pre_restructure_run"
KEPT = "082c40e8"  # the trial whose weights the fixture keeps

# Old module path -> names other code or old pickles reach through it.
OLD_PATHS = {
    "hwsearch.search.naas_tune": ["NaasSearcher", "NaasEvaluator"],
    "hwsearch.search.trial": ["trainable", "evaluate_trial"],
    "hwsearch.search.optuna_search": ["JournalOptunaSearch"],
    "hwsearch.search.random_search": ["RandomSearcher"],
    "hwsearch.search.driver": ["RecordCallback", "run_experiment", "resume_experiment", "finished_row",
                               "record_saved_trials", "tune_trial_states"],
    "hwsearch.search.evolution_tune": ["EvolutionSearcher"],
    "hwsearch.search.compression_search": ["CompressionSearcher", "CompressionEvaluator", "CompressionSettings"],
    "hwsearch.search.supernet_eval": ["SupernetEvaluator"],
}


@pytest.mark.parametrize("module", sorted(OLD_PATHS))
def test_old_module_paths_still_import_the_classes_old_pickles_name(module):
    mod = importlib.import_module(module)
    for name in OLD_PATHS[module]:
        obj = getattr(mod, name)
        assert getattr(obj, "__name__", name) == name
        if isinstance(obj, type):  # the pickled path resolves to the class the code uses now
            assert getattr(importlib.import_module(obj.__module__), name) is obj


def test_the_fixtures_pickles_name_old_paths_and_load():
    raw = (FIXTURE / "tuner.pkl").read_bytes()
    assert b"hwsearch.search.random_search" in raw and b"hwsearch.search.driver" in raw
    import ray.cloudpickle  # noqa: F401  (Tune pickles with Ray's cloudpickle)

    state = pickle.loads(raw)
    from hwsearch.search.random_search import RandomSearcher

    searcher = state["_tune_config"].search_alg
    assert isinstance(getattr(searcher, "searcher", searcher), RandomSearcher)


def test_a_run_killed_before_the_restructure_resumes_inspects_and_exports(ray_local, tmp_path):
    from hwsearch.search.driver import resume_experiment
    from hwsearch.search.export import export_trial
    from hwsearch.search.inspection import summary
    from hwsearch.search.rundir import RunDir

    path = tmp_path / "pre-restructure"
    shutil.copytree(FIXTURE, path)
    before = set(RunDir(path).trials()["trial_id"])
    assert len(before) == 2 and KEPT in before
    run = resume_experiment(path, quiet=True)
    after = run.trials()
    # Tune's saved state still held the second trial as pending when the run was killed, so Tune runs it
    # again and the record keeps one row per trial id; the resume must neither fail nor lose a trial.
    assert before <= set(after["trial_id"]) and after["trial_id"].is_unique and run.state != "running"
    assert summary(run)["finished"] == len(after)
    out = export_trial(run, KEPT, tmp_path / "export")
    report = json.loads((tmp_path / "export" / "report.json").read_text())
    assert report["trial_id"] == KEPT and (tmp_path / "export" / "model.onnx").is_file()
    assert out is not None
