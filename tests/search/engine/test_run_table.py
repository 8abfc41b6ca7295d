"""The run table on disk: pieces appended per trial, merged now and then, read back as one full rewrite."""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import random
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

import hwsearch.io
from hwsearch.search.engine import table
from hwsearch.search.engine.config import parse_config
from hwsearch.search.engine.rundir import RunDir, RunTally, best_trial, pareto_front


def _full_rewrite(rows: list[dict]) -> pd.DataFrame:
    """What the table read back when every record rewrote it whole from ``rows`` (last row per id)."""
    merged: dict[str, dict] = {}
    for r in rows:
        merged[r["trial_id"]] = r
    buf = io.BytesIO()
    table.frame(list(merged.values())).to_parquet(buf, index=False)
    return pd.read_parquet(io.BytesIO(buf.getvalue()))


def _rows(n: int, ids: int, seed: int = 0) -> list[dict]:
    """``n`` engine-shaped rows over ``ids`` trial ids (so ids repeat): failures, infeasible, an optional metric."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        tid = f"t{rng.randrange(ids):04d}"
        if rng.random() < 0.1:
            out.append({"trial_id": tid, "status": "failed", "feasible": False, "error": "ValueError: boom",
                        "choice": json.dumps({"d": i}), "finished_at": float(i), "artifacts": None, "failures": 1})
            continue
        row = {"trial_id": tid, "status": "ok", "feasible": rng.random() < 0.9, "error": None,
               "choice": json.dumps({"d": i}), "started_at": float(i), "finished_at": i + 0.5, "duration_s": 0.5,
               "artifacts": f"trials/{tid}", "node": "127.0.0.1/n", "failures": 0,
               "val_acc": round(rng.random(), 1), "macs": rng.randrange(6) * 1000}  # ties on purpose
        if rng.random() < 0.3:
            row["latency_ms"] = rng.random()
        out.append(row)
    return out


def _pieces(run: Path) -> list[Path]:
    folder = run / table.PIECES
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


@pytest.fixture
def few_pieces(monkeypatch):
    """Merge after a handful of pieces, so that a few hundred rows go through many merges."""
    monkeypatch.setattr(table, "MIN_PIECES", 8)


@pytest.fixture
def no_fsync(monkeypatch):
    """Skip fsync in tests that write thousands of small files (atomicity comes from the rename)."""
    monkeypatch.setattr(os, "fsync", lambda fd: None)


def test_pieces_and_merges_read_back_as_the_full_rewrite(tmp_path, few_pieces, no_fsync):
    rows = _rows(400, ids=250)
    log = table.TrialLog(tmp_path)
    for i, r in enumerate(rows):
        log.append([r])
        if i % 37 == 0 or i == len(rows) - 1:
            pd.testing.assert_frame_equal(table.read_table(tmp_path), _full_rewrite(rows[: i + 1]))
    df = table.read_table(tmp_path)
    assert df["trial_id"].is_unique and len(df) < len(rows)  # ids did repeat
    assert 0 < log.pending < 40 and log.table_rows > 100  # both parts hold rows
    # merged pieces go two a record, so they never pile up beyond one merge's worth
    assert len(_pieces(tmp_path)) <= log.pending + max(table.MIN_PIECES, log.table_rows // table.GROWTH) + 1
    log.finish()
    assert _pieces(tmp_path) == []
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / table.TABLE), _full_rewrite(rows))
    pd.testing.assert_frame_equal(RunDir(str(tmp_path)).trials(), _full_rewrite(rows))  # a str path reads too


def test_a_crash_between_a_merge_and_deleting_its_pieces_leaves_each_trial_once(tmp_path, few_pieces):
    rows = _rows(60, ids=20, seed=1)
    log = table.TrialLog(tmp_path)
    for r in rows[:30]:
        log.append([r])
    assert _pieces(tmp_path)
    log.compact()  # the process dies now: the merged table is in place, its pieces still on disk
    assert len(_pieces(tmp_path)) >= 2
    df = table.read_table(tmp_path)
    assert df["trial_id"].is_unique
    pd.testing.assert_frame_equal(df, _full_rewrite(rows[:30]))
    resumed = table.TrialLog(tmp_path)  # the next writer numbers on after the merge and deletes them
    for r in rows[30:]:
        resumed.append([r])
    pd.testing.assert_frame_equal(table.read_table(tmp_path), _full_rewrite(rows))
    resumed.finish()
    assert _pieces(tmp_path) == []
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / table.TABLE), _full_rewrite(rows))


def test_a_reader_overtaken_by_a_merge_reads_again(tmp_path, few_pieces, monkeypatch):
    rows = _rows(12, ids=12, seed=2)
    log = table.TrialLog(tmp_path)
    for r in rows:
        log.append([r])
    assert _pieces(tmp_path)
    read_base = table._read_base
    merged = []

    def merge_after_reading(run):  # the table the reader got is already stale when it reads the pieces
        out = read_base(run)
        if not merged:
            merged.append(True)
            log.finish()  # merged, and the pieces deleted at once, under the reader
        return out

    monkeypatch.setattr(table, "_read_base", merge_after_reading)
    pd.testing.assert_frame_equal(table.read_table(tmp_path), _full_rewrite(rows))
    assert merged and _pieces(tmp_path) == []


def test_an_old_run_table_reads_as_before_and_takes_new_trials(tmp_path):
    rows = _rows(30, ids=30, seed=3)
    old = table.frame(rows[:20])
    old.to_parquet(tmp_path / table.TABLE, index=False)  # written the old way: no merged-piece mark
    pd.testing.assert_frame_equal(RunDir(tmp_path).trials(), pd.read_parquet(tmp_path / table.TABLE))
    log = RunDir(tmp_path).trial_log()
    for r in rows[20:]:
        log.append([r])
    pd.testing.assert_frame_equal(RunDir(tmp_path).trials(), _full_rewrite(rows))


def test_replacing_the_table_supersedes_its_pieces(tmp_path, few_pieces):
    rows = _rows(20, ids=20, seed=4)
    log = table.TrialLog(tmp_path)
    for r in rows:
        log.append([r])
    assert _pieces(tmp_path)
    RunDir(tmp_path).write_trials(rows[:3])
    pd.testing.assert_frame_equal(RunDir(tmp_path).trials(), _full_rewrite(rows[:3]))
    RunDir(tmp_path).append_trials(rows[3:5])
    pd.testing.assert_frame_equal(RunDir(tmp_path).trials(), _full_rewrite(rows[:5]))


def test_merging_rewrites_each_row_a_bounded_number_of_times(tmp_path, monkeypatch, no_fsync):
    written = []
    write_base = table._write_base
    monkeypatch.setattr(table, "_write_base", lambda run, df, merged: (written.append(len(df)),
                                                                       write_base(run, df, merged)))
    n = 1500
    log = table.TrialLog(tmp_path)
    for i in range(n):
        log.append([{"trial_id": f"t{i:05d}", "status": "ok", "val_acc": 0.5}])
    assert len(table.read_table(tmp_path)) == n
    # Each merge is paid for by the pieces since the last one: under GROWTH + 1 rewrites per row in all
    # (a full rewrite per record would be n * (n + 1) / 2 = 1,125,750 rows here).
    assert len(written) > 10 and sum(written) <= (table.GROWTH + 1) * n + 1


# ---- the driver's callback ----------------------------------------------------------------------
def _run(tmp_path: Path, tiny_experiment, base_rows: int) -> RunDir:
    """A run folder whose table holds ``base_rows`` trials, all dominated by two front trials."""
    run = RunDir.create(tmp_path / f"run{base_rows}", parse_config(tiny_experiment(tmp_path)))
    rng = random.Random(base_rows)
    rows = [_trial_row("front-a", 0.9, 5e4), _trial_row("front-b", 0.8, 1e4)]
    rows += [_trial_row(f"t{i:06d}", rng.uniform(0.1, 0.7), rng.uniform(1e5, 2e5)) for i in range(base_rows)]
    run.write_trials(rows)
    return run


def _trial_row(tid: str, acc: float, macs: float) -> dict:
    return {"trial_id": tid, "status": "ok", "feasible": True, "error": None, "choice": json.dumps({"d": 1}),
            "started_at": 1.0, "finished_at": 2.0, "duration_s": 1.0, "artifacts": f"trials/{tid}",
            "node": "127.0.0.1/n", "failures": 0, "val_acc": acc, "macs": macs, "params": 1000.0}


@contextlib.contextmanager
def _counted_writes():
    """Count the files written through `hwsearch.io` and their bytes."""
    seen: list[tuple[str, int]] = []
    real = hwsearch.io.atomic_writer

    @contextlib.contextmanager
    def counting(path):
        with real(path) as f:
            start = f.tell()
            yield f
            seen.append((Path(path).name, f.tell() - start))

    hwsearch.io.atomic_writer = counting
    try:
        yield seen
    finally:
        hwsearch.io.atomic_writer = real


def _record_some(run: RunDir, first: int, count: int) -> list[tuple[str, int]]:
    from hwsearch.search.engine.driver import RecordCallback

    cb = RecordCallback(str(run.path), quiet=True)
    cb.setup()
    with _counted_writes() as seen:
        for i in range(first, first + count):
            result = {"val_acc": 0.5, "macs": 1.5e5, "params": 1000.0, "feasible": True, "choice": {"d": i},
                      "started_at": 1.0, "finished_at": 2.0, "duration_s": 1.0, "node": "127.0.0.1/n"}
            cb.on_trial_complete(0, [], SimpleNamespace(trial_id=f"new{i:06d}", last_result=result, num_failures=0))
    return seen


def test_recording_a_trial_writes_as_much_at_5000_trials_as_at_50(tmp_path, tiny_experiment):
    per_record = {}
    for size in (50, 5000):
        run = _run(tmp_path, tiny_experiment, size)
        seen = _record_some(run, 0, 10)
        names = sorted({n for n, _ in seen})
        assert len(seen) == 20 and names[-1] == "pareto.json" and table.TABLE not in names  # a piece and the front
        per_record[size] = sum(b for _, b in seen) / 10
        assert len(run.trials()) == size + 12
        front = json.loads(run.pareto_path.read_text())["trials"]
        assert [t["trial_id"] for t in front] == ["front-a", "front-b"]
    assert per_record[5000] <= 1.05 * per_record[50]


def test_the_callback_s_front_and_counts_follow_the_table_across_a_resume(tmp_path, tiny_experiment):
    run = _run(tmp_path, tiny_experiment, 20)
    _record_some(run, 0, 3)
    from hwsearch.search.engine.driver import RecordCallback

    cb = pickle.loads(pickle.dumps(RecordCallback(str(run.path), quiet=True)))
    cb.setup()  # a resume: the tally is rebuilt from the table
    # front-a recorded again, now dominated: what it hid (front-b alone, then a new trial) must come back
    cb.on_trial_complete(0, [], SimpleNamespace(trial_id="front-a", num_failures=0, last_result={
        "val_acc": 0.1, "macs": 9e5, "feasible": True, "choice": {"d": 0}}))
    cb.on_trial_complete(0, [], SimpleNamespace(trial_id="best", num_failures=0, last_result={
        "val_acc": 0.95, "macs": 2e4, "feasible": True, "choice": {"d": 9}}))
    df, config = run.trials(), run.config()
    assert len(df) == 20 + 2 + 3 + 1 and df["trial_id"].is_unique
    assert json.loads(run.pareto_path.read_text())["trials"] == pareto_front(df, config)
    assert [t["trial_id"] for t in pareto_front(df, config)] == ["best", "front-b"]
    assert len(pickle.dumps(cb)) < 400  # what it holds of the run never goes into Tune's pickles


@pytest.mark.parametrize("mode", ["max", "min"])
def test_the_tally_gives_the_tables_front_and_best_row_by_row(tiny_experiment, tmp_path, mode):
    config = parse_config(tiny_experiment(tmp_path, objectives=[
        {"metric": "val_acc", "mode": mode}, {"metric": "macs", "mode": "min"}]))
    rows = _rows(500, ids=200, seed=5)
    tally, rebuilt = RunTally(config), 0
    for i, r in enumerate(rows):
        if not tally.add(r):
            rebuilt += 1
            tally = RunTally.from_frame(_full_rewrite(rows[: i + 1]), config)
        if i % 50 == 0 or i == len(rows) - 1:
            df = _full_rewrite(rows[: i + 1])
            assert tally.front() == pareto_front(df, config)
            assert tally.best() == best_trial(df, config)
            assert (tally.done, tally.failed) == (len(df), int((df["status"] == "failed").sum()))
    assert 0 < rebuilt < 50  # only a trial recorded again that was on the front costs a rebuild
