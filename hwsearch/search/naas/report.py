"""The end of a NAAS run: final front (measured), its plot beside the predicted fronts, best pair exported.

Written into ``<run>/naas/``: ``front.json`` (the measured final front, the predicted union front it
came from, and every accelerator trial's hypervolume) and ``pareto.png``; the best measured pair
(highest measured accuracy on the final front, lowest EDP among ties) is exported to
``<run>/exports/best/`` exactly as ``hwsearch export RUN --trial ID`` would.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from hwsearch.io import atomic_write_json
from hwsearch.search.engine.bundle import export_trial
from hwsearch.search.engine.rundir import RunDir
from hwsearch.search.naas.problem import Triple, front_of
from hwsearch.search.pareto import nondominated


def measured_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Finished refinement trials (``measured == 1``)."""
    if df.empty or "measured" not in df.columns:
        return df.iloc[0:0]
    ok = df[(df["status"] == "ok") & (df["measured"] == 1.0)]
    return ok.dropna(subset=["accuracy", "latency_ms", "energy_mj"])


def final_front(df: pd.DataFrame) -> pd.DataFrame:
    """Measured triples no other measured triple beats on accuracy, latency, energy and area."""
    ok = measured_rows(df)
    if ok.empty:
        return ok
    pts = np.stack([-ok["accuracy"], ok["latency_ms"], ok["energy_mj"], ok["area_mm2"]], axis=1).astype(float)
    return ok[nondominated(pts)].sort_values("accuracy", ascending=False)


def best_pair(df: pd.DataFrame) -> dict[str, Any] | None:
    """The exported pair: highest measured accuracy, then lowest EDP."""
    front = final_front(df)
    if front.empty:
        return None
    row = front.sort_values(["accuracy", "edp"], ascending=[False, True]).iloc[0]
    return {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}


def write_report(run_path: str | Path, predicted: Sequence[Triple], trial_fitness: dict[str, float],
                 export: bool = True) -> dict[str, Any]:
    """Write ``front.json`` and ``pareto.png``, export the best pair; returns the summary."""
    run = RunDir(Path(run_path))
    df = run.trials()
    front = final_front(df)
    cols = ["trial_id", "accuracy", "test_acc", "val_acc", "predicted_acc", "latency_ms", "energy_mj", "edp",
            "area_mm2", "peak_power_w", "agent_improved"]
    measured = [{c: _plain(r.get(c)) for c in cols if c in r} for r in front.to_dict("records")]
    pred_front = front_of(list(predicted))
    best = best_pair(df)
    out = Path(run_path) / "naas"
    summary = {"final_front": measured, "predicted_front": [t.to_dict() for t in pred_front],
               "trial_hypervolume": trial_fitness, "best": None if best is None else best.get("trial_id")}
    atomic_write_json(out / "front.json", summary)
    plot_fronts(pred_front, measured_rows(df), out / "pareto.png")
    if export and best is not None:
        res = export_trial(run, trial=str(best["trial_id"]), out=Path(run_path) / "exports" / "best")
        summary["export"] = {"out": str(res.out), "onnx_test_acc": res.onnx_test_acc,
                             "torchscript_test_acc": res.torchscript_test_acc}
        atomic_write_json(out / "front.json", summary)
    return summary


def plot_fronts(predicted: Sequence[Triple], measured: pd.DataFrame, path: Path,
                presets: Sequence[Triple] = ()) -> Path:
    """Accuracy against latency and against energy: predicted front, measured triples, presets."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, x, label in ((axes[0], "latency_ms", "latency (ms)"), (axes[1], "energy_mj", "energy (mJ)")):
        if predicted:
            pts = sorted(predicted, key=lambda t: getattr(t, x))
            ax.scatter([getattr(t, x) for t in pts], [100 * t.accuracy for t in pts], s=12, c="tab:blue",
                       alpha=0.6, label="co-searched (predicted)")
        if presets:
            ax.scatter([getattr(t, x) for t in presets], [100 * t.accuracy for t in presets], s=12, c="tab:grey",
                       marker="x", label="network-only on presets")
        if not measured.empty:
            ax.scatter(measured[x], 100 * measured["accuracy"], s=50, c="tab:red", marker="*",
                       label="refined (measured test)")
        ax.set_xscale("log")
        # labelled ticks at 1, 2, 3 and 5 per decade: a front often spans less than one decade
        ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 3.0, 5.0)))
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel("top-1 accuracy (%)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    fig.suptitle("NAAS co-search: (sub-network, bits, accelerator) triples", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
    return path


def _plain(v: Any) -> Any:
    if hasattr(v, "item"):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v


__all__ = ["best_pair", "final_front", "measured_rows", "plot_fronts", "write_report"]
