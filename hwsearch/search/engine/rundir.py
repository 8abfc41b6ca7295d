"""The run directory ``<root>/<name>/``: what a run leaves behind and how it is read back.

Layout: Tune's experiment state (written by Tune), ``hwsearch-run.json`` (format version, state,
budget), ``config.yaml`` (the resolved config), ``trials/<trial_id>/`` (choice, NetSpec, report,
weights of each finished trial), the run table (one row per finished trial: ``trials.parquet``, the
compacted part, and ``trials.d/<seq>.json``, the trials recorded since; `RunDir.trials` reads both,
see `hwsearch.search.engine.table`), ``pareto.json`` and ``plots/``. Every file is written
atomically, so a reader (``hwsearch inspect`` during a run) or a ``kill -9`` never sees half a file.
Tables are parquet and documents JSON, never pickles.

Format 2 added ``trials.d/``; a format-1 folder (``trials.parquet`` alone) still reads and resumes,
and becomes format 2 when resumed, so that an older hwsearch, which would not see the pieces, refuses it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from hwsearch.errors import ConfigError, RunError
from hwsearch.io import atomic_write_json, atomic_write_text
from hwsearch.search.engine import table
from hwsearch.search.engine.config import ExperimentConfig, parse_config
from hwsearch.search.engine.table import BASE_COLUMNS, TrialLog
from hwsearch.search.pareto import nondominated_all

RUN_FORMAT = 2
READABLE_FORMATS = (1, 2)  # 1: trials.parquet alone, rewritten whole after every trial
MARKER = "hwsearch-run.json"

# The folder of the run being resumed, while Tune unpickles and restores what it saved of it (the
# searcher, the engine's callback). Those objects hold the folder the run had when they were saved,
# and a run folder may have moved since (renamed, copied off a cluster): `current_folder` gives them
# the one it is in now. A stack, not a flag, so that a nested resume (a test) restores its own.
_RESUMING: list[Path] = []


@contextlib.contextmanager
def resuming(path: str | Path) -> Iterator[None]:
    """While in this block, objects restored from the run's saved state belong to the run at ``path``."""
    _RESUMING.append(Path(path))
    try:
        yield
    finally:
        _RESUMING.pop()


def current_folder(saved: str | Path) -> Path:
    """Where the run folder an object saved as ``saved`` is now: the run being resumed, if any."""
    return _RESUMING[-1] if _RESUMING else Path(saved)


@dataclass(frozen=True)
class RunDir:
    """One run directory."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))  # a str from a script or notebook works too

    @property
    def name(self) -> str:
        """The run's name (its folder name)."""
        return self.path.name

    @property
    def trials_path(self) -> Path:
        """``trials.parquet``: the compacted run table (`trials` adds the trials recorded since)."""
        return self.path / table.TABLE

    @property
    def pieces_dir(self) -> Path:
        """``trials.d/``: the trials recorded since ``trials.parquet`` was last compacted, one file a record."""
        return self.path / table.PIECES

    @property
    def pareto_path(self) -> Path:
        """``pareto.json``."""
        return self.path / "pareto.json"

    @property
    def plots_dir(self) -> Path:
        """``plots/``."""
        return self.path / "plots"

    def trial_dir(self, trial_id: str) -> Path:
        """Where a trial keeps its choice, NetSpec, report and weights."""
        return self.path / "trials" / trial_id

    # ---- creation and opening -------------------------------------------------------------------
    @classmethod
    def create(cls, path: str | Path, config: ExperimentConfig) -> RunDir:
        """Start a new run directory; an existing run is never overwritten."""
        path = Path(path).resolve()
        if (path / MARKER).exists():
            raise RunError(f"run directory {path} already holds a run; use --resume {path} or another --name")
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path)
        atomic_write_text(path / "config.yaml", config.to_yaml())
        run.set_state("running")
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """Open an existing run directory, checking that this hwsearch can read it."""
        path = Path(path).resolve()
        marker = path / MARKER
        if not path.is_dir():
            raise RunError(f"run directory {path} does not exist")
        if not marker.is_file():
            raise RunError(f"{path} is not an hwsearch run directory (no {MARKER})")
        try:
            info = json.loads(marker.read_text())
        except (OSError, ValueError):
            raise RunError(f"{marker} is unreadable or truncated") from None
        if info.get("format") not in READABLE_FORMATS:
            raise RunError(f"run directory {path} has format {info.get('format')!r}; this hwsearch reads "
                           f"formats {', '.join(map(str, READABLE_FORMATS))} (re-run it with this version)")
        return cls(path)

    def info(self) -> dict[str, Any]:
        """The marker document: format, state, pid, times."""
        try:
            return json.loads((self.path / MARKER).read_text())
        except (OSError, ValueError):
            return {}

    def set_state(self, state: str) -> None:
        """Record ``running`` / ``finished`` / ``stopped`` with this process id."""
        info = self.info() or {"format": RUN_FORMAT, "created": time.time()}
        info.update(format=RUN_FORMAT, state=state, pid=os.getpid(), updated=time.time())
        atomic_write_json(self.path / MARKER, info)

    @property
    def state(self) -> str:
        """``running`` (its process is alive), ``finished``, or ``stopped`` (interrupted or killed)."""
        info = self.info()
        state = info.get("state", "stopped")
        if state == "running" and not _alive(info.get("pid")):
            return "stopped"
        return state

    def config(self) -> ExperimentConfig:
        """The resolved config the run was started with."""
        f = self.path / "config.yaml"
        try:
            raw = yaml.safe_load(f.read_text())
        except (OSError, yaml.YAMLError):
            raise RunError(f"{f} is missing or unreadable") from None
        try:
            return parse_config(raw, where=str(f))
        except ConfigError as e:
            raise RunError(f"run directory {self.path} has a config this hwsearch cannot read: {e}") from None

    # ---- the trial table ------------------------------------------------------------------------
    def trials(self) -> pd.DataFrame:
        """Every finished trial, one row per trial id (empty frame before the first)."""
        return table.read_table(self.path)

    def write_trials(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        """Replace the whole run table with ``rows`` (atomically) and return the frame."""
        return table.replace_table(self.path, rows)

    def append_trials(self, rows: list[dict[str, Any]]) -> None:
        """Add ``rows`` to the run table (a row whose trial id is there already replaces it)."""
        table.append_rows(self.path, rows)

    def trial_log(self) -> TrialLog:
        """The writer that records trials into the run table one at a time (one per run at a time)."""
        return TrialLog(self.path)

    def write_pareto(self, df: pd.DataFrame, config: ExperimentConfig) -> list[dict[str, Any]]:
        """Write ``pareto.json`` (feasible, non-dominated finished trials) and return its trials."""
        return self.write_front(pareto_front(df, config), config)

    def write_front(self, front: list[dict[str, Any]], config: ExperimentConfig) -> list[dict[str, Any]]:
        """Write ``pareto.json`` holding ``front`` (`pareto_front` or `RunTally.front`) and return it."""
        atomic_write_json(self.pareto_path, {
            "objectives": [o.model_dump() for o in config.objectives],
            "constraints": [str(c) for c in config.constraints],
            "trials": front,
        })
        return front


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def candidates(df: pd.DataFrame, config: ExperimentConfig) -> pd.DataFrame:
    """Finished, feasible trials with a finite value for every objective."""
    if df.empty:
        return df
    ok = df[(df["status"] == "ok") & (df["feasible"].astype(bool))]
    for o in config.objectives:
        if o.metric not in ok.columns:
            return ok.iloc[0:0]
        ok = ok[ok[o.metric].map(_finite)]
    return ok


def pareto_front(df: pd.DataFrame, config: ExperimentConfig) -> list[dict[str, Any]]:
    """Feasible trials no other feasible trial beats on every objective."""
    ok = candidates(df, config)
    if ok.empty:
        return []
    signs = np.array([1.0 if o.mode == "min" else -1.0 for o in config.objectives])
    vals = ok[[o.metric for o in config.objectives]].to_numpy(dtype=float) * signs
    rows = ok.iloc[np.flatnonzero(nondominated_all(vals))]  # equal trials are all kept
    rows = sort_by_primary(rows, config)
    return [row_document(r) for _, r in rows.iterrows()]


def sort_by_primary(df: pd.DataFrame, config: ExperimentConfig) -> pd.DataFrame:
    """Rows ordered best first on the primary objective (missing values last)."""
    o = config.primary
    if df.empty or o.metric not in df.columns:
        return df
    return df.sort_values(o.metric, ascending=o.mode == "min", na_position="last", kind="stable")


def best_trial(df: pd.DataFrame, config: ExperimentConfig) -> dict[str, Any] | None:
    """The feasible trial best on the primary objective, or None."""
    ok = sort_by_primary(candidates(df, config), config)
    if ok.empty:
        return None
    return row_document(ok.iloc[0])


def row_document(row: pd.Series) -> dict[str, Any]:
    """A table row as a JSON-able dict, with the choice decoded."""
    out: dict[str, Any] = {}
    for k, v in row.items():
        if k == "choice" and isinstance(v, str):
            v = json.loads(v)
        elif hasattr(v, "item"):
            v = v.item()
        if isinstance(v, float) and math.isnan(v):
            v = None
        out[str(k)] = v
    return out


class RunTally:
    """A run's counts, Pareto front and best trial, kept current one recorded row at a time.

    Holds what `pareto_front` and `best_trial` compute from the whole table, without reading it: a
    candidate row (`candidates`) that no front member dominates joins the front and drops the members
    it dominates, and it becomes the best trial if it beats the best on the primary objective (ties go
    to the earlier trial, as in `sort_by_primary`). Each row costs O(front), whatever the table's size.
    Only a trial recorded again that was on the front or the best cannot be taken back this way (the
    trials it hid may return): `add` then says so, and the caller rebuilds the tally from the table."""

    def __init__(self, config: ExperimentConfig):
        self.config = config
        self._signs = np.array([1.0 if o.mode == "min" else -1.0 for o in config.objectives])
        self._failed: dict[str, bool] = {}  # trial id -> failed, in the table's order
        self._place: dict[str, int] = {}  # trial id -> its row in the table
        self._columns: set[str] = set(BASE_COLUMNS)
        self._front: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}  # id -> (signed objectives, document)
        self._best: tuple[float, int, str, dict[str, Any]] | None = None  # signed primary, place, id, document
        self.failed = 0

    @classmethod
    def from_frame(cls, df: pd.DataFrame, config: ExperimentConfig) -> RunTally:
        """The tally of a whole run table (on setup and resume)."""
        tally = cls(config)
        ids = df["trial_id"].astype(str).tolist()
        failed = (df["status"] == "failed").tolist()
        tally._failed = dict(zip(ids, failed, strict=True))
        tally._place = {t: i for i, t in enumerate(ids)}
        tally._columns |= {str(c) for c in df.columns}
        tally.failed = int(sum(failed))
        ok = candidates(df, config)
        if not ok.empty:
            vals = ok[[o.metric for o in config.objectives]].to_numpy(dtype=float) * tally._signs
            for i in np.flatnonzero(nondominated_all(vals)):
                doc = row_document(ok.iloc[i])
                tally._front[str(doc["trial_id"])] = (vals[i], doc)
            best = row_document(sort_by_primary(ok, config).iloc[0])
            tally._best = tally._best_key(best)
        return tally

    @property
    def done(self) -> int:
        """Trials recorded (each trial id once)."""
        return len(self._failed)

    def add(self, row: dict[str, Any]) -> bool:
        """Count a recorded ``row``; False when it replaced a front member or the best: rebuild from the table."""
        tid = str(row["trial_id"])
        failed = row.get("status") == "failed"
        self.failed += failed - self._failed.get(tid, False)
        again = tid in self._failed
        self._failed[tid] = failed
        self._place.setdefault(tid, len(self._place))
        self._columns |= {k for k, v in row.items() if not _empty(v)}
        if again and (tid in self._front or (self._best is not None and self._best[2] == tid)):
            return False
        vals = self._objectives(row)
        if vals is not None:
            doc = _document(row)
            self._admit_best(doc)
            self._admit_front(tid, vals, doc)
        return True

    def front(self) -> list[dict[str, Any]]:
        """What `pareto_front` gives for the table: front members best first on the primary objective."""
        members = sorted(self._front.items(), key=lambda m: (m[1][0][0], self._place[m[0]]))
        return [self._full(doc) for _, (_, doc) in members]

    def best(self) -> dict[str, Any] | None:
        """What `best_trial` gives for the table."""
        return self._full(self._best[3]) if self._best is not None else None

    def _objectives(self, row: dict[str, Any]) -> np.ndarray | None:
        """The signed objective values of a candidate row (`candidates`), None for any other row."""
        if row.get("status") != "ok" or not row.get("feasible"):
            return None
        values = [row.get(o.metric) for o in self.config.objectives]
        if not all(_finite(v) for v in values):
            return None
        return np.array(values, dtype=float) * self._signs

    def _best_key(self, doc: dict[str, Any]) -> tuple[float, int, str, dict[str, Any]]:
        tid = str(doc["trial_id"])
        o = self.config.primary
        return float(doc[o.metric]) * (1.0 if o.mode == "min" else -1.0), self._place[tid], tid, doc

    def _admit_best(self, doc: dict[str, Any]) -> None:
        key = self._best_key(doc)
        if self._best is None or key[:2] < self._best[:2]:
            self._best = key

    def _admit_front(self, tid: str, vals: np.ndarray, doc: dict[str, Any]) -> None:
        if self._front:
            ids = list(self._front)
            f = np.stack([self._front[t][0] for t in ids])
            if np.any(np.all(f <= vals, axis=1) & np.any(f < vals, axis=1)):
                return  # dominated: the front stays as it is
            beaten = np.all(vals <= f, axis=1) & np.any(vals < f, axis=1)
            for t in np.asarray(ids)[beaten]:
                del self._front[str(t)]
        self._front[tid] = (vals, doc)

    def _full(self, doc: dict[str, Any]) -> dict[str, Any]:
        """``doc`` with every column of the table, in its order, as `row_document` gives it."""
        metrics = sorted(self._columns - set(BASE_COLUMNS))
        return {c: doc.get(c) for c in (*BASE_COLUMNS, *metrics)}


def _empty(v: Any) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _document(row: dict[str, Any]) -> dict[str, Any]:
    """A recorded row as `row_document` gives its table row (choice decoded, empty values None)."""
    out = {}
    for k, v in row.items():
        if k == "choice" and isinstance(v, str):
            v = json.loads(v)
        out[str(k)] = None if _empty(v) else v
    return out


__all__ = ["BASE_COLUMNS", "MARKER", "RUN_FORMAT", "RunDir", "best_trial", "candidates", "current_folder", "pareto_front",
           "row_document", "sort_by_primary"]
