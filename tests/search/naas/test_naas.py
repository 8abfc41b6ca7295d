"""NAAS co-search: Pareto/hypervolume maths, joint space, vectorised costs, inner search, outer evolution."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsearch.hwmodel import Accelerator, hardware_metrics
from hwsearch.search.naas.accuracy import BitsPenalty
from hwsearch.search.naas.assets import OneHotRidge
from hwsearch.search.naas.baselines import edp_at_accuracy, run_baseline
from hwsearch.search.naas.evolution import FINISHED, WAIT, NaasEvolution, OuterSettings
from hwsearch.search.naas.problem import (
    CoSearchProblem,
    InnerSettings,
    Triple,
    front_of,
    inner_search,
    layer_group,
)
from hwsearch.search.pareto import hypervolume, nondominated
from hwsearch.spaces.accelerator import AcceleratorSpace


@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=12))
@settings(max_examples=60, deadline=None)
def test_nondominated_rows_are_exactly_those_no_other_row_beats(rows):
    p = np.array(rows)
    mask = nondominated(p)
    for i, a in enumerate(p):
        beaten = any(np.all(b <= a) and np.any(b < a) for b in p)
        if beaten:
            assert not mask[i]
    kept = {tuple(r) for r in p[mask]}
    assert kept == {tuple(r) for r in p if not any(np.all(b <= r) and np.any(b < r) for b in p)}


def test_hypervolume_of_boxes_is_their_union_volume():
    assert hypervolume(np.array([[0.5, 0.5, 0.5]]), np.ones(3)) == pytest.approx(0.125)
    # two boxes overlapping in a 0.5 x 0.5 x 0.5 cube
    two = np.array([[0.0, 0.5, 0.5], [0.5, 0.0, 0.5]])
    assert hypervolume(two, np.ones(3)) == pytest.approx(0.25 + 0.25 - 0.125)
    assert hypervolume(np.array([[2.0, 0.0, 0.0]]), np.ones(3)) == 0.0


@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)), min_size=1, max_size=8))
@settings(max_examples=40, deadline=None)
def test_adding_a_point_never_lowers_the_hypervolume(rows):
    p = np.array(rows)
    assert hypervolume(p, np.ones(3)) >= hypervolume(p[:-1], np.ones(3)) - 1e-12 if len(p) > 1 else True


def test_layer_groups_follow_stage_names():
    assert layer_group("stages.2.1.dw.conv") == "stages.2"
    assert layer_group("stem.conv") == "stem"
    assert layer_group("classifier") == "classifier"


def test_quantized_netspec_matches_what_the_compressed_model_runs(problem):
    from hwsearch.compress import compressed_netspec

    q = problem.space
    choice = q.sample(np.random.default_rng(3))
    model = q.build(choice)
    traced = compressed_netspec(model, q.input_shape(choice))
    assert [layer.key for layer in traced.layers] == [layer.key for layer in q.to_netspec(choice).layers]


def test_layers_between_quantized_ones_run_at_their_width_not_at_float_width(problem):
    q = problem.space
    layers = q.to_netspec(q.join(q.net.reference("largest"), {g: 4 for g in q.groups})).layers
    assert any(not x.has_weights for x in layers)
    assert {x.a_bits for x in layers} == {4}


def test_vectorised_costs_equal_the_accelerator_model_on_the_whole_netspec(problem):
    rng = np.random.default_rng(0)
    accel = AcceleratorSpace().to_accelerator(AcceleratorSpace().sample_feasible(rng))
    choices = [problem.space.sample(rng) for _ in range(5)]
    rows = problem.evaluate(accel, choices)
    for c, r in zip(choices, rows, strict=True):
        hw = hardware_metrics(problem.space.to_netspec(c), accel)
        assert r[1] == pytest.approx(hw["latency_ms"], rel=1e-9)
        assert r[2] == pytest.approx(hw["energy_mj"], rel=1e-9)


def test_lower_bits_cost_no_more_and_lose_predicted_accuracy(problem):
    q = problem.space
    net = q.net.reference("largest")
    hi = q.join(net, {g: 8 for g in q.groups})
    lo = q.join(net, {g: 4 for g in q.groups})
    accel = Accelerator.preset("bitfusion")
    r = problem.evaluate(accel, [hi, lo])
    assert r[1, 0] < r[0, 0]
    assert r[1, 1] <= r[0, 1] and r[1, 2] <= r[0, 2]


def test_inner_search_returns_a_nondominated_front_better_than_its_random_start(problem):
    accel = Accelerator.preset("edge-systolic")
    rng = np.random.default_rng(1)
    res = inner_search(problem, accel, InnerSettings(population=12, generations=3, front=100), rng)
    assert res.evaluations == 48
    pts = np.array([[-t.accuracy, t.latency_ms, t.energy_mj] for t in res.front])
    assert nondominated(pts).all()
    start = problem.evaluate(accel, [problem.space.sample(np.random.default_rng(1)) for _ in range(12)])
    assert res.hypervolume >= problem.reference.hypervolume(start[:, 0], start[:, 1], start[:, 2])
    assert all(t.accel == accel.to_dict() for t in res.front)


def _run(evo: NaasEvolution, problem: CoSearchProblem, trials: list[str], stop_after: int | None = None) -> list:
    """Drive ``evo`` sequentially with cheap fitness (inner search of 8 candidates)."""
    asked = []
    for k in itertools.count(len(evo.proposals)):
        if stop_after is not None and len(asked) >= stop_after:
            break
        tid = f"t{k}"
        p = evo.ask(tid)
        if p == FINISHED:
            break
        assert p != WAIT
        asked.append(p)
        if "accel" in p:
            accel = evo.space.to_accelerator(p["accel"])
            res = inner_search(problem, accel, InnerSettings(population=8, generations=0, front=8),
                               np.random.default_rng(p["seed"]))
            evo.tell(tid, res.hypervolume, [t.to_dict() for t in res.front])
        else:
            evo.tell(tid, 0.9, [])
        trials.append(tid)
    return asked


def test_evolution_seeds_presets_breeds_feasible_children_then_refines_top_k(problem):
    space = AcceleratorSpace()
    evo = NaasEvolution(space, OuterSettings(population=4, generations=2, parents=2, top_k=2), 5, problem.reference)
    trials: list[str] = []
    asked = _run(evo, problem, trials)
    accel = [p for p in asked if "accel" in p]
    refine = [p for p in asked if "refine" in p]
    assert len(accel) == 8 and len(refine) == 2
    assert accel[0]["accel"] == space.nearest(Accelerator.preset("eyeriss"))
    assert all(space.feasible(p["accel"]) for p in accel)
    assert len({tuple(p["accel"].values()) for p in accel}) == 8
    assert refine[0]["refine"]["accuracy"] == max(t.accuracy for t in evo.triples())


def test_a_front_smaller_than_top_k_is_topped_up_from_the_next_layers(problem):
    evo = NaasEvolution(AcceleratorSpace(), OuterSettings(population=2, generations=1, parents=1, top_k=3), 0,
                        problem.reference)
    choice = problem.space.sample(np.random.default_rng(0))
    best = Triple(choice, {"pe_rows": 8}, 0.97, 1.0, 1.0, 1.0)  # dominates every other triple
    runners = [Triple(choice, {"pe_rows": 8}, 0.96, 2.0, 1.5, 1.0), Triple(choice, {"pe_rows": 16}, 0.95, 1.5, 2.0, 1.0),
               Triple(choice, {"pe_rows": 4}, 0.90, 3.0, 3.0, 1.0)]
    evo.ask("a"), evo.ask("b")
    evo.tell("a", 0.5, [best.to_dict(), runners[0].to_dict(), runners[2].to_dict()])
    evo.tell("b", 0.4, [runners[1].to_dict()])
    refines = [evo.ask(t) for t in ("c", "d", "e")]
    assert [r["refine"]["accuracy"] for r in refines] == [0.97, 0.96, 0.95]  # the third layer stays out
    assert evo.ask("f") == WAIT and not evo.complete()


def test_a_generation_waits_for_its_last_trial():
    space = AcceleratorSpace()
    evo = NaasEvolution(space, OuterSettings(population=2, generations=2, parents=1, top_k=0), 0)
    a, b = evo.ask("a"), evo.ask("b")
    assert evo.ask("c") == WAIT
    evo.tell("a", 0.5, [])
    assert evo.ask("c") == WAIT
    evo.tell("b", None, [])  # a failed trial still completes its generation
    assert "accel" in evo.ask("c")
    assert evo.ask("a") == a and evo.ask("b") == b


def test_saved_and_restored_evolution_continues_exactly_as_an_uninterrupted_one(problem, tmp_path):
    space = AcceleratorSpace()
    s = OuterSettings(population=3, generations=3, parents=2, top_k=1)
    whole = NaasEvolution(space, s, 11, problem.reference)
    all_asked = _run(whole, problem, [])
    first = NaasEvolution(space, s, 11, problem.reference)
    head = _run(first, problem, [], stop_after=5)
    first.save(tmp_path / "state.json")
    second = NaasEvolution(space, s, 11, problem.reference)
    second.restore(tmp_path / "state.json")
    tail = _run(second, problem, [])
    assert head + tail == all_asked


def _answer(evo: NaasEvolution, problem: CoSearchProblem, p: dict) -> tuple[float, list]:
    """Fitness (rounded, so that designs tie) and front of one accelerator proposal."""
    res = inner_search(problem, evo.space.to_accelerator(p["accel"]), InnerSettings(population=8, generations=0, front=8),
                       np.random.default_rng(p["seed"]), p["seeds"])
    return round(res.hypervolume, 1), [t.to_dict() for t in res.front]


def test_proposals_do_not_depend_on_trial_ids_or_the_order_trials_finish(problem):
    s = OuterSettings(population=4, generations=3, parents=2, top_k=2)
    one_by_one = NaasEvolution(AcceleratorSpace(), s, 3, problem.reference)
    serial = []
    for k in itertools.count():
        p = one_by_one.ask(f"t{k}")
        if p == FINISHED:
            break
        serial.append(p)
        one_by_one.tell(f"t{k}", *(_answer(one_by_one, problem, p) if "accel" in p else (0.9, [])))
    # All trials of a generation at once, under other ids, finishing last-asked first.
    batched = NaasEvolution(AcceleratorSpace(), s, 3, problem.reference)
    parallel, k = [], 0
    while True:
        pending = []
        while (p := batched.ask(f"x{k:03d}")) not in (WAIT, FINISHED):
            pending.append((f"x{k:03d}", p))
            parallel.append(p)
            k += 1
        if not pending:
            break
        for tid, p in reversed(pending):
            batched.tell(tid, *(_answer(batched, problem, p) if "accel" in p else (0.9, [])))
    assert len(serial) == 4 * 3 + 2
    assert parallel == serial


def test_baselines_spend_their_budget_and_edp_lookup_respects_accuracy(problem):
    space = AcceleratorSpace()
    rnd = run_baseline("random", problem, space, 6, seed=0)
    assert len(rnd) == 6
    ns = run_baseline("nsga2", problem, space, 6, seed=0)
    assert len(ns) <= 6
    pre = run_baseline("presets", problem, space, 96, seed=0)
    assert {t.accel["name"] for t in pre} <= {"eyeriss", "nvdla-small", "edge-systolic", "bitfusion"}
    t = [Triple({}, {}, 0.9, 1.0, 1.0, 1.0), Triple({}, {}, 0.8, 0.1, 0.1, 1.0)]
    assert edp_at_accuracy(t, 0.85) == 1.0 and edp_at_accuracy(t, 0.5) == pytest.approx(0.01)
    assert edp_at_accuracy(t, 0.95) == float("inf")
    assert len(front_of(t)) == 2


def test_final_front_holds_only_measured_nondominated_triples_and_best_is_most_accurate():
    import pandas as pd

    from hwsearch.search.naas.report import best_pair, final_front

    df = pd.DataFrame([
        {"trial_id": "a", "status": "ok", "measured": 0.0, "accuracy": 0.99, "latency_ms": 0.1, "energy_mj": 0.1,
         "area_mm2": 1.0, "edp": 0.01},
        {"trial_id": "b", "status": "ok", "measured": 1.0, "accuracy": 0.95, "latency_ms": 1.0, "energy_mj": 1.0,
         "area_mm2": 1.0, "edp": 1.0},
        {"trial_id": "c", "status": "ok", "measured": 1.0, "accuracy": 0.93, "latency_ms": 0.5, "energy_mj": 0.5,
         "area_mm2": 1.0, "edp": 0.25},
        {"trial_id": "d", "status": "ok", "measured": 1.0, "accuracy": 0.92, "latency_ms": 0.6, "energy_mj": 0.6,
         "area_mm2": 1.0, "edp": 0.36},
    ])
    assert list(final_front(df)["trial_id"]) == ["b", "c"]
    assert best_pair(df)["trial_id"] == "b"


def test_tune_searcher_reads_fronts_from_trial_folders_and_resumes_from_its_json(problem, tmp_path):
    import json as _json

    from ray.tune.search import Searcher

    from hwsearch.search.engine.searchers import searcher_done
    from hwsearch.search.naas.plugin import NaasSearcher

    space = AcceleratorSpace()
    s = OuterSettings(population=2, generations=1, parents=1, top_k=1)
    searcher = NaasSearcher(NaasEvolution(space, s, 3, problem.reference), str(tmp_path), "accuracy", "max")
    first = searcher.suggest("a")
    second = searcher.suggest("b")
    assert first["assets"].endswith("naas") and "accel" in second
    assert searcher.suggest("c") is None  # the generation is still running
    triple = Triple(problem.space.sample(np.random.default_rng(0)), {"pe_rows": 8}, 0.9, 1.0, 1.0, 1.0)
    folder = tmp_path / "trials" / "a"
    folder.mkdir(parents=True)
    (folder / "front.json").write_text(_json.dumps({"triples": [triple.to_dict()]}))
    searcher.on_trial_complete("a", {"hypervolume": 0.3, "evaluations": 8})
    searcher.save(str(tmp_path / "searcher.json"))
    again = NaasSearcher(NaasEvolution(space, s, 3, problem.reference), str(tmp_path), "accuracy", "max")
    again.restore(str(tmp_path / "searcher.json"))
    assert again.suggest("b") == second
    again.on_trial_complete("b", None, error=True)
    refine = again.suggest("c")
    assert refine["refine"]["accuracy"] == 0.9
    again.reported = True  # the final report needs a whole run directory; its parts are tested apart
    again.on_trial_complete("c", {"accuracy": 0.91, "latency_ms": 1.0, "energy_mj": 1.0})
    assert again.evolution.complete()
    assert not searcher_done(tmp_path)
    assert again.suggest("d") == Searcher.FINISHED
    assert searcher_done(tmp_path)  # the driver calls such a run finished even below its trial budget


def test_bits_penalty_adds_each_groups_measured_drop_to_the_offset():
    p = BitsPenalty(("a", "b"), (4, 8), 0.01, ((0.05, 0.0), (0.02, 0.0)), 0.9)
    assert p.penalty(np.array([[1, 1], [0, 1], [0, 0]])) == pytest.approx([0.01, 0.06, 0.08])
    assert BitsPenalty.from_dict(p.to_dict()) == p


def _additive_accuracies(net, rng, n: int, scale: float, base: float):
    """``n`` sampled choices and their accuracies under a random additive gene model, and that model."""
    w = rng.normal(0, scale, size=len(net.one_hot(net.reference("smallest"))))

    def truth(choices):
        return np.array([base + net.one_hot(c) @ w for c in choices])

    choices = [net.sample(rng) for _ in range(n)]
    return choices, truth(choices), truth


def test_one_hot_ridge_recovers_an_additive_accuracy_model(problem):
    net = problem.space.net
    rng = np.random.default_rng(0)
    choices, acc, truth_of = _additive_accuracies(net, rng, 300, 0.01, 0.7)
    model = OneHotRidge.fit(net, choices, acc, alpha=1e-6)
    test = [net.sample(rng) for _ in range(20)]
    truth = truth_of(test)
    assert np.abs(model(test) - truth).max() < 1e-3
    again = OneHotRidge.from_dict(net, model.to_dict())
    assert np.allclose(again(test), model(test))


def test_one_hot_ridge_never_predicts_beyond_the_measured_accuracies(problem):
    net = problem.space.net
    rng = np.random.default_rng(1)
    choices, acc, _ = _additive_accuracies(net, rng, 40, 0.05, 0.8)
    acc = np.clip(acc, 0.0, 0.95)
    model = OneHotRidge.fit(net, choices, acc)
    pred = model([net.sample(rng) for _ in range(500)])
    assert pred.max() <= acc.max() and pred.min() >= acc.min()
    assert OneHotRidge.from_dict(net, model.to_dict()).ceiling == acc.max()


def test_one_hot_ridge_shrinks_hard_on_noise_and_barely_on_an_exact_additive_model(problem):
    net = problem.space.net
    rng = np.random.default_rng(2)
    choices, exact, _ = _additive_accuracies(net, rng, 120, 0.01, 0.8)
    noise = 0.9 + rng.normal(0, 0.01, size=len(choices))
    assert OneHotRidge.fit(net, choices, exact).alpha <= 0.01
    noisy = OneHotRidge.fit(net, choices, noise)
    assert noisy.alpha >= 100
    assert OneHotRidge.from_dict(net, noisy.to_dict()).alpha == noisy.alpha


class _DoneEvolution:
    """An evolution whose every trial is in (the state a run killed during its final report left)."""

    proposals: dict = {}
    results: dict = {}

    def complete(self) -> bool:
        return True

    def state(self) -> dict:
        return {}

    def load_state(self, state: dict) -> None:
        self.loaded = state

    def front(self) -> list:
        return []

    def pending(self) -> list:
        return []


@pytest.mark.parametrize("front", [None, {"best": "t1"}, {"best": "t1", "export": {}}, {"best": None}])
def test_resumed_searcher_writes_a_final_report_the_kill_left_unfinished(tmp_path, monkeypatch, front):
    from hwsearch.search.engine.searchers import searcher_done
    from hwsearch.search.naas.plugin import NaasSearcher

    if front is not None:
        (tmp_path / "naas").mkdir()
        (tmp_path / "naas" / "front.json").write_text(json.dumps(front))
    NaasSearcher(_DoneEvolution(), str(tmp_path), "accuracy", "max").save(str(tmp_path / "searcher.json"))
    started = []
    monkeypatch.setattr(NaasSearcher, "_start_final_report", lambda self: started.append(True))
    NaasSearcher(_DoneEvolution(), str(tmp_path), "accuracy", "max").restore(str(tmp_path / "searcher.json"))
    unfinished = front is None or ("export" not in front and front["best"] is not None)
    assert started == ([True] if unfinished else [])
    assert searcher_done(tmp_path)  # Tune asks a restored finished searcher nothing: done is marked on restore
