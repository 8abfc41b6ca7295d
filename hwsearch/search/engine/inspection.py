"""Read a run directory (finished or still going): status, trials by the primary objective, Pareto front, plots.

Everything is read from the run table (``trials.parquet`` and the pieces in ``trials.d/``) and the
config, all written atomically, so inspecting a live run is safe.
"""

from __future__ import annotations

import io
import itertools
from pathlib import Path
from typing import Any

import pandas as pd

from hwsearch.io import atomic_write_bytes
from hwsearch.search.engine.rundir import RunDir, best_trial, pareto_front, row_document, sort_by_primary


def summary(run: RunDir) -> dict[str, Any]:
    """Status, counts, best trial, Pareto front and every trial (best first) as one JSON-able dict."""
    config = run.config()
    df = run.trials()
    ordered = sort_by_primary(df, config)
    failed = int((df["status"] == "failed").sum()) if not df.empty else 0
    return {
        "run": run.name,
        "path": str(run.path),
        "state": run.state,
        "space": config.space.name,
        "searcher": config.searcher.name,
        "objectives": [o.model_dump() for o in config.objectives],
        "constraints": [str(c) for c in config.constraints],
        "budget": config.budget.trials,
        "finished": len(df),
        "failed": failed,
        "best": best_trial(df, config),
        "pareto": [r["trial_id"] for r in pareto_front(df, config)],
        "trials": [row_document(r) for _, r in ordered.iterrows()],
    }


def trials_frame(run: RunDir) -> pd.DataFrame:
    """The trial table ordered best first on the primary objective, with a ``pareto`` flag."""
    config = run.config()
    df = sort_by_primary(run.trials(), config)
    front = {r["trial_id"] for r in pareto_front(df, config)}
    df = df.copy()
    df.insert(2, "pareto", df["trial_id"].isin(front) if not df.empty else [])
    return df


def write_plots(run: RunDir) -> list[Path]:
    """Scatter PNGs of every pair of objectives (Pareto front highlighted) and the primary over trials."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    config = run.config()
    df = run.trials()
    ok = df[df["status"] == "ok"] if not df.empty else df
    front_ids = {r["trial_id"] for r in pareto_front(df, config)}
    run.plots_dir.mkdir(parents=True, exist_ok=True)
    written = []
    metrics = [o.metric for o in config.objectives]
    if len(metrics) == 1 and "macs" in ok.columns and metrics[0] != "macs":
        metrics = metrics + ["macs"]  # one objective: still show it against cost
    for a, b in itertools.combinations(metrics, 2):
        if a not in ok.columns or b not in ok.columns:
            continue
        fig, ax = plt.subplots(figsize=(5, 4))
        feas = ok["feasible"].astype(bool)
        on_front = ok["trial_id"].isin(front_ids)
        ax.scatter(ok.loc[feas & ~on_front, b], ok.loc[feas & ~on_front, a], s=18, c="tab:blue", label="feasible")
        ax.scatter(ok.loc[~feas, b], ok.loc[~feas, a], s=18, c="lightgrey", label="infeasible")
        front = ok[on_front].sort_values(b)
        ax.plot(front[b], front[a], "o-", c="tab:red", label="Pareto front")
        ax.set_xlabel(b)
        ax.set_ylabel(a)
        ax.set_title(f"{run.name}: {a} vs {b}")
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, run.plots_dir / f"pareto_{a}_vs_{b}.png"))
        plt.close(fig)
    primary = config.primary.metric
    if primary in ok.columns and not ok.empty:
        fig, ax = plt.subplots(figsize=(5, 4))
        series = ok.sort_values("finished_at")[primary].reset_index(drop=True)
        best = series.cummax() if config.primary.mode == "max" else series.cummin()
        ax.plot(range(1, len(series) + 1), series, "o", c="tab:blue", label="trial")
        ax.plot(range(1, len(best) + 1), best, "-", c="tab:red", label="best so far")
        ax.set_xlabel("finished trial")
        ax.set_ylabel(primary)
        ax.legend(fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, run.plots_dir / "progress.png"))
        plt.close(fig)
    return written


def _save(fig: Any, path: Path) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(path, buf.getvalue())
    return path


__all__ = ["summary", "trials_frame", "write_plots"]
