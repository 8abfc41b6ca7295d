"""A run killed before Tune's first save (while loading data, training a supernet, fitting a predictor)
resumes by starting again in its own folder, and a searcher's write-ahead state is not stranded."""

from __future__ import annotations

import json

from hwsearch.search.engine.config import parse_config
from hwsearch.search.engine.driver import resume_experiment
from hwsearch.search.engine.rundir import RunDir
from hwsearch.search.naas.evolution import NaasEvolution, OuterSettings
from hwsearch.search.naas.plugin import NaasSearcher
from hwsearch.spaces.accelerator import AcceleratorSpace


def test_a_run_killed_before_tunes_first_save_resumes_from_its_saved_config(ray_local, tmp_path, tiny_experiment):
    cfg = parse_config(tiny_experiment(tmp_path, name="early", budget={"trials": 2}, ray={"workers": 1}))
    run = RunDir.create(tmp_path / "early", cfg)
    run.set_state("stopped")  # what a kill -9 during set-up leaves: the folder, its config, no Tune state
    resumed = resume_experiment(run.path, quiet=True)
    df = resumed.trials()
    assert resumed.state == "finished" and len(df) == 2 and df["trial_id"].is_unique


def test_naas_proposals_made_before_tunes_first_save_go_to_the_restarted_runs_trials(problem, tmp_path):
    settings = OuterSettings(population=2, generations=1, parents=1, top_k=1)
    first = NaasSearcher(NaasEvolution(AcceleratorSpace(), settings, 3, problem.reference), str(tmp_path),
                         "accuracy", "max")
    a, b = first.suggest("a"), first.suggest("b")  # written ahead; then killed before Tune saved anything
    again = NaasSearcher(NaasEvolution(AcceleratorSpace(), settings, 3, problem.reference), str(tmp_path),
                         "accuracy", "max")
    assert again.suggest("x") == a and again.suggest("y") == b  # the same designs, under the new trials' ids
    assert again.suggest("z") is None  # the generation waits for them, not for the dead "a" and "b"
    state = json.loads(again.state_path.read_text())
    assert list(state["evolution"]["proposals"]) == ["x", "y"]
