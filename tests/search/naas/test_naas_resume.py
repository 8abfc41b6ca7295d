"""A NAAS run resumed after a kill -9 at any moment does exactly what an uninterrupted run does.

Tune, the trial folders and the run table are simulated in one process so that the kill can land on
purpose at every point of a run: a trial in flight, between its folder and its table row, between
generations, between the last accelerator trial and the refinements, during a refinement, and between
Tune's two state files (trial list, then searcher). The searcher, its write-ahead state, the trial
folders, the run table and Tune's experiment-state file are the real ones.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from hwsearch.search.engine.config import parse_config
from hwsearch.search.engine.driver import finished_row
from hwsearch.search.engine.rundir import RunDir
from hwsearch.search.naas.evolution import NaasEvolution, OuterSettings
from hwsearch.search.naas.plugin import NaasSearcher
from hwsearch.search.naas.problem import InnerSettings, inner_search
from hwsearch.spaces.accelerator import AcceleratorSpace

ROOT = Path(__file__).resolve().parents[3]  # the repository
SETTINGS = OuterSettings(population=2, generations=2, parents=1, top_k=2)
BUDGET = SETTINGS.trials + SETTINGS.top_k
_IDS = itertools.count()


class Killed(Exception):
    """The simulated kill -9."""


class FakeTune:
    """Tune as far as a searcher can tell: trials asked for up to ``workers`` at once, finished oldest
    first, each saving its folder, then its table row, then telling the searcher; every ``period`` steps
    the experiment state (trial list, then searcher state) is saved. ``kill_at`` ends it at that point."""

    def __init__(self, run: RunDir, searcher: NaasSearcher, problem, workers: int, period: int,
                 kill_at: int | None = None, restored: dict | None = None) -> None:
        self.run, self.searcher, self.problem = run, searcher, problem
        self.workers, self.period, self.kill_at = workers, period, kill_at
        self.points = 0
        self.trials: dict[str, dict] = {}       # id -> {"config", "status"}, as in Tune's memory
        self.counter = 0
        self.evaluated: list[str] = []          # designs whose evaluation ran to a saved folder
        for tid, t in (restored or {}).items():  # Tune requeues what it restored, unfinished ones as pending
            status = t["status"] if t["status"] in ("TERMINATED", "ERROR") else "PENDING"
            self.trials[tid] = {"config": t["config"], "status": status}
            self.counter += 1

    def point(self) -> None:
        self.points += 1
        if self.kill_at is not None and self.points >= self.kill_at:
            raise Killed

    def run_to_end(self) -> None:
        steps = 0
        finished = False
        while True:
            live = [t for t, v in self.trials.items() if v["status"] in ("PENDING", "RUNNING")]
            for t in live[: self.workers]:
                self.trials[t]["status"] = "RUNNING"
            while not finished and len(live) < self.workers and self.counter < BUDGET:
                tid = f"t{next(_IDS):04d}"
                p = self.searcher.suggest(tid)
                if p is None:
                    break
                if p == "FINISHED":
                    finished = True
                    break
                self.trials[tid] = {"config": p, "status": "RUNNING"}
                self.counter += 1
                live.append(tid)
                self.point()  # proposed, not yet in Tune's saved state
            running = [t for t, v in self.trials.items() if v["status"] == "RUNNING"]
            if not running:
                return
            self.finish(running[0])
            steps += 1
            if steps % self.period == 0:
                self.checkpoint()

    def finish(self, tid: str) -> None:
        p = self.trials[tid]["config"]
        folder = self.run.path / "trials" / tid
        if (folder / "report.json").is_file():  # the trainable reports a saved trial without evaluating it
            report = json.loads((folder / "report.json").read_text())
        else:
            self.point()  # in flight
            report = self.evaluate(p, folder)
            self.point()  # folder saved, not yet in the table
        rows = {r["trial_id"]: r for r in self.run.trials().to_dict("records")}
        rows[tid] = finished_row(tid, report)
        self.run.write_trials(list(rows.values()))
        self.point()  # recorded, the searcher not yet told
        self.searcher.on_trial_complete(tid, report)
        self.trials[tid]["status"] = "TERMINATED"
        self.point()

    def evaluate(self, p: dict, folder: Path) -> dict:
        if "accel" in p:
            accel = self.searcher.evolution.space.to_accelerator(p["accel"])
            res = inner_search(self.problem, accel, InnerSettings(population=8, generations=0, front=8),
                               np.random.default_rng(p["seed"]), p["seeds"])
            # the design is the trial's "choice" here, so that the run table shows which one it evaluated
            report = {"hypervolume": res.hypervolume, "evaluations": 8.0, "accuracy": res.front[0].accuracy,
                      "measured": 0.0, "choice": p["accel"]}
            docs = {"front.json": {"triples": [t.to_dict() for t in res.front]}}
            self.evaluated.append(json.dumps(p["accel"], sort_keys=True))
        else:
            report = {"accuracy": 0.5 + 0.01 * p["rank"], "latency_ms": 1.0, "energy_mj": 1.0, "measured": 1.0,
                      "choice": {"rank": p["rank"], **p["refine"]["accel"]}}
            docs = {}
        tmp = folder.parent / f".{folder.name}"
        tmp.mkdir(parents=True)
        for name, doc in docs.items():
            (tmp / name).write_text(json.dumps(doc))
        (tmp / "report.json").write_text(json.dumps(report))
        tmp.rename(folder)
        return report

    def checkpoint(self) -> None:
        """Tune's save: the trial list first, then the searcher state (two files, no atomicity between)."""
        data = [[json.dumps({"trial_id": t, "status": v["status"], "config": v["config"]}), "{}"]
                for t, v in self.trials.items()]
        (self.run.path / "experiment_state-0.json").write_text(json.dumps({"trial_data": data}))
        self.point()  # trial list saved, searcher state not yet
        self.searcher.save(str(self.run.path / "searcher-state-0.json"))
        self.point()


def _searcher(run: RunDir, problem) -> NaasSearcher:
    evo = NaasEvolution(AcceleratorSpace(), SETTINGS, 7, problem.reference)
    searcher = NaasSearcher(evo, str(run.path), "accuracy", "max")
    searcher.reported = True  # the final report needs trained assets; tested elsewhere
    return searcher


def _run_dir(root: Path) -> RunDir:
    raw = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    raw["budget"] = {"trials": BUDGET}
    raw["searcher"]["settings"].update(population=SETTINGS.population, generations=SETTINGS.generations,
                                       top_k=SETTINGS.top_k)
    return RunDir.create(root, parse_config(raw))


def _table(run: RunDir) -> dict[str, dict]:
    return {r["trial_id"]: r for r in run.trials().to_dict("records")}


def _uninterrupted(root: Path, problem, workers: int) -> tuple[list[str], int]:
    run = _run_dir(root)
    tune = FakeTune(run, _searcher(run, problem), problem, workers, period=2)
    tune.run_to_end()
    return sorted(r["choice"] for r in _table(run).values()), tune.points


@pytest.mark.parametrize("workers, period", [(1, 1), (1, 3), (2, 2)])
def test_naas_resumed_after_a_kill_at_any_point_runs_the_budget_once_and_repeats_no_design(
        problem, tmp_path, monkeypatch, workers, period):
    monkeypatch.setattr(NaasSearcher, "_start_final_report", lambda self: None)  # needs trained assets
    expected, points = _uninterrupted(tmp_path / "whole", problem, workers)
    assert len(expected) == BUDGET
    resumed = 0
    for kill_at in range(1, points + 1):
        run = _run_dir(tmp_path / f"kill{kill_at}")
        first = FakeTune(run, _searcher(run, problem), problem, workers, period, kill_at=kill_at)
        with contextlib.suppress(Killed):  # the kill ends the first run wherever it lands
            first.run_to_end()
        before = copy.deepcopy(_table(run))
        state = run.path / "experiment_state-0.json"
        if not state.is_file():
            continue  # killed before Tune's first save: such a run cannot be resumed, only started again
        restored = {json.loads(t[0])["trial_id"]: json.loads(t[0]) for t in json.loads(state.read_text())["trial_data"]}
        searcher = _searcher(run, problem)
        if (run.path / "searcher-state-0.json").is_file():  # Tune restores a searcher only when it saved one
            searcher.restore(str(run.path / "searcher-state-0.json"))
        second = FakeTune(run, searcher, problem, workers, period, restored=restored)
        second.run_to_end()
        resumed += 1

        after = _table(run)
        where = f"kill at point {kill_at} of {points}"
        assert len(after) == BUDGET, where
        assert sorted(r["choice"] for r in after.values()) == expected, where  # the uninterrupted run's trials
        for tid, row in before.items():  # no finished trial lost or changed
            assert after[tid]["choice"] == row["choice"] and after[tid]["accuracy"] == row["accuracy"], where
        evaluated = first.evaluated + second.evaluated
        assert len(evaluated) == len(set(evaluated)), where  # no accelerator evaluated twice
        assert searcher.evolution.complete(), where
    assert resumed >= points // 2
