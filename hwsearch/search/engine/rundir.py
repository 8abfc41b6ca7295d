"""The run directory ``<root>/<name>/``: what a run leaves behind and how it is read back.

Layout: Tune's experiment state (written by Tune), ``hwsearch-run.json`` (format version, state,
budget), ``config.yaml`` (the resolved config), ``trials/<trial_id>/`` (choice, NetSpec, report,
weights of each finished trial), ``trials.parquet`` (one row per finished trial), ``pareto.json``
and ``plots/``. Every file is written atomically, so a reader (``hwsearch inspect`` during a run)
or a ``kill -9`` never sees half a file. Tables are parquet and documents JSON, never pickles.
"""

from __future__ import annotations

import io
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from hwsearch.errors import ConfigError, RunError
from hwsearch.io import atomic_write_bytes, atomic_write_json, atomic_write_text
from hwsearch.search.engine.config import ExperimentConfig, parse_config
from hwsearch.search.pareto import nondominated_all

RUN_FORMAT = 1
MARKER = "hwsearch-run.json"
# ``node``: the Ray node (IP/node id) that evaluated the trial; ``failures``: its failed attempts (a lost
# node, a crash), each followed by a fresh start while ``ray.max_failures`` allows.
BASE_COLUMNS = ("trial_id", "status", "feasible", "error", "choice", "started_at", "finished_at", "duration_s",
                "artifacts", "node", "failures")


@dataclass(frozen=True)
class RunDir:
    """One run directory."""

    path: Path

    @property
    def name(self) -> str:
        """The run's name (its folder name)."""
        return self.path.name

    @property
    def trials_path(self) -> Path:
        """``trials.parquet``."""
        return self.path / "trials.parquet"

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
        if info.get("format") != RUN_FORMAT:
            raise RunError(f"run directory {path} has format {info.get('format')!r}; this hwsearch reads "
                           f"format {RUN_FORMAT} (re-run it with this version)")
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
        """Every finished trial (empty frame before the first)."""
        if not self.trials_path.is_file():
            return pd.DataFrame(columns=list(BASE_COLUMNS))
        try:
            return pd.read_parquet(self.trials_path)
        except (OSError, ValueError) as e:
            raise RunError(f"{self.trials_path} is unreadable: {e}") from None

    def write_trials(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        """Replace ``trials.parquet`` with ``rows`` (atomically) and return the frame."""
        df = pd.DataFrame(rows)
        for col in BASE_COLUMNS:
            if col not in df.columns:
                df[col] = None
        metric_cols = sorted(c for c in df.columns if c not in BASE_COLUMNS)
        df = df[list(BASE_COLUMNS) + metric_cols]
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        atomic_write_bytes(self.trials_path, buf.getvalue())
        return df

    def write_pareto(self, df: pd.DataFrame, config: ExperimentConfig) -> list[dict[str, Any]]:
        """Write ``pareto.json`` (feasible, non-dominated finished trials) and return its trials."""
        front = pareto_front(df, config)
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


__all__ = ["BASE_COLUMNS", "MARKER", "RUN_FORMAT", "RunDir", "best_trial", "candidates", "pareto_front",
           "row_document", "sort_by_primary"]
