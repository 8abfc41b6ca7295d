"""OFA's evolutionary search: feasibility, progress over random search, resumable state, Tune searcher."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hwsearch import spaces
from hwsearch.errors import ConfigError
from hwsearch.search.ofa.evolution import (
    Constraints,
    Evolution,
    EvolutionSettings,
    Feasibility,
    evolve,
    random_sampling,
)

OPTIONS = {"in_channels": 1, "resolutions": [8, 12], "stem_width": 8, "first_width": 8,
           "widths": [8, 16, 24, 32, 48], "head_width": 96}


@pytest.fixture(scope="module")
def space():
    return spaces.get("ofa-mbv3", **OPTIONS)


def index_sum(space):
    """A score every gene contributes to: the sum of option indices (larger networks score higher)."""
    def score(choices):
        return np.array([float(space.encode(c).sum()) for c in choices])
    return score


def test_every_proposal_meets_the_macs_and_memory_limits(space):
    largest = space.to_netspec(space.reference("largest"))
    limits = Constraints(max_macs=largest.macs * 0.4, max_peak_activation_bytes=largest.peak_activation_bytes)
    feasible = Feasibility(space, limits)
    evo = Evolution(space, EvolutionSettings(population=10), feasible, seed=0)
    for _ in range(30):
        c = evo.ask()
        assert space.to_netspec(c).macs <= limits.max_macs
        evo.tell(c, float(space.encode(c).sum()))


def test_evolution_finds_a_better_feasible_choice_than_random_search_at_equal_queries(space):
    largest = space.to_netspec(space.reference("largest")).macs
    feasible = Feasibility(space, Constraints(max_macs=largest * 0.5))
    settings = EvolutionSettings(population=20, generations=10)
    evo = evolve(space, index_sum(space), settings, feasible, seed=0, budget=200)
    rnd = random_sampling(space, index_sum(space), 200, feasible, seed=0)
    assert evo.queries == rnd.queries == 200
    assert evo.best_score > rnd.best_score
    assert evo.best_costs["macs"] <= largest * 0.5
    assert list(evo.history) == sorted(evo.history)



def test_the_old_name_random_search_still_runs_random_sampling(space):
    from hwsearch.search import ofa
    from hwsearch.search.ofa.evolution import random_search

    assert random_search is random_sampling and ofa.random_search is random_sampling
    res = random_search(space, index_sum(space), 30, seed=1)
    assert res.queries == 30 and space.validate(res.best_choice) == res.best_choice
    assert res.best_score == max(res.history) == float(space.encode(res.best_choice).sum())
    assert res == random_sampling(space, index_sum(space), 30, seed=1)

def test_saved_state_resumes_the_same_proposals_after_a_json_round_trip(space):
    feasible = Feasibility(space, Constraints(max_macs=space.to_netspec(space.reference("largest")).macs * 0.6))
    a = Evolution(space, EvolutionSettings(population=6), feasible, seed=3)
    for _ in range(9):  # part-way through the second generation
        c = a.ask()
        a.tell(c, float(space.encode(c).sum()))
    b = Evolution(space, EvolutionSettings(population=6), feasible, seed=99)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    assert [a.ask() for _ in range(8)] == [b.ask() for _ in range(8)]
    assert a.best() == b.best()


def test_a_latency_limit_without_a_latency_model_is_a_config_error(space):
    with pytest.raises(ConfigError, match="latency model"):
        Feasibility(space, Constraints(max_latency_s=1e-3))


def test_a_latency_model_is_any_object_with_predict(space):
    class MacsAsSeconds:
        def predict(self, net):
            return net.macs * 1e-9

    limit = space.to_netspec(space.reference("smallest")).macs * 2e-9
    feasible = Feasibility(space, Constraints(max_latency_s=limit), MacsAsSeconds())
    res = random_sampling(space, index_sum(space), 50, feasible, seed=0)
    assert res.best_costs["latency_s"] <= limit


def test_tune_searcher_restores_its_population_and_pending_trials(space, tmp_path):
    from hwsearch.search.ofa.searcher import EvolutionSearcher

    def searcher():
        return EvolutionSearcher(space, EvolutionSettings(population=4), "val_acc", "max", seed=0)

    s = searcher()
    params = {}
    for i in range(6):
        params[f"t{i}"] = s.suggest(f"t{i}")
    for i in range(5):
        s.on_trial_complete(f"t{i}", {"val_acc": 0.1 * i})
    s.save(str(tmp_path / "state.json"))
    r = searcher()
    r.restore(str(tmp_path / "state.json"))
    assert r.suggest("t5") == params["t5"]  # a restored pending trial gets the same proposal
    assert [s.suggest(f"n{i}") for i in range(5)] == [r.suggest(f"n{i}") for i in range(5)]
    assert r.evolution.best()[1] == pytest.approx(0.4)
    decoded = space.decode([params["t0"]["choice"][d.name] for d in space.dims])
    assert decoded == s.proposed["t0"]
