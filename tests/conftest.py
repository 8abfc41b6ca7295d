"""Shared pytest fixtures."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest


# ---- engine: a tiny experiment ------------------------------------------------------------------
def _tiny_experiment(root: str, **sections: Any) -> dict[str, Any]:
    """A config dict for a search that costs about a second per trial: a very small ofa-mbv3 at 8x8."""
    raw: dict[str, Any] = {
        "name": "tiny",
        "space": {"name": "ofa-mbv3", "options": {
            "resolutions": [8], "widths": [8, 8, 16, 16, 16], "head_width": 32, "expand_ratios": [3],
            "kernels": [3, 5, 7], "depths": [2, 3]}},
        "data": {"source": "digits", "seed": 0},
        "objectives": [{"metric": "val_acc", "mode": "max"}, {"metric": "macs", "mode": "min"}],
        "searcher": {"name": "random", "seed": 0},
        "evaluation": {"epochs": 0, "seed": 0, "recipe": {"batch_size": 128}},
        "budget": {"trials": 4},
        "ray": {"workers": 2, "cpus_per_trial": 1},
        "output": {"root": str(root)},
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(raw.get(key), dict):
            raw[key] = {**raw[key], **value}
        else:
            raw[key] = value
    return raw


@pytest.fixture(scope="session")
def tiny_experiment() -> Callable[..., dict[str, Any]]:
    """Factory of tiny experiment config dicts: ``tiny_experiment(root, budget={"trials": 2})``."""
    return _tiny_experiment


# ---- engine: a local Ray, and a run watched from outside ----------------------------------------
@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance (2 CPUs, no dashboard) for every test of a module: start-up costs seconds."""
    import ray

    from hwsearch.search import driver  # noqa: F401  (sets Ray's environment before init)

    ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False,
             logging_level="error")
    yield
    ray.shutdown()


def _wait_for_trials(run_path: Path, proc: subprocess.Popen, at_least: int, timeout_s: float) -> int:
    """Poll the run table of ``run_path`` until it holds ``at_least`` trials; fail if ``proc`` exits first."""
    from hwsearch.search.rundir import RunDir

    deadline = time.monotonic() + timeout_s
    run = RunDir(run_path)
    while time.monotonic() < deadline:
        if run.trials_path.is_file() and len(run.trials()) >= at_least:
            return len(run.trials())
        try:
            proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            continue
        raise AssertionError(f"the run exited early with code {proc.returncode}")
    raise AssertionError(f"fewer than {at_least} trials finished within {timeout_s}s")


@pytest.fixture(scope="session")
def wait_for_trials() -> Callable[[Path, subprocess.Popen, int, float], int]:
    """``wait_for_trials(run_path, proc, at_least, timeout_s)``: the number of trials recorded by a run
    that another process (``proc``) is running, once it reaches ``at_least``."""
    return _wait_for_trials
