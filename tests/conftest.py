"""Shared pytest fixtures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
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
def one_torch_thread():
    """Tiny forward passes: a second thread only spins against the other tests sharing the cores."""
    import torch  # deferred: most tests never touch torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def isolated_data(tmp_path, monkeypatch):
    """No test reads a real copy of a data set or a real cache: both folders are empty ones under tmp_path."""
    monkeypatch.setenv("HWSEARCH_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("HWSEARCH_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray instance (2 CPUs, no dashboard) for every test of a module: start-up costs seconds."""
    import ray

    from hwsearch.search.engine import driver  # noqa: F401  (sets Ray's environment before init)

    ray.init(address="local", num_cpus=2, num_gpus=0, include_dashboard=False, log_to_driver=False,
             logging_level="error")
    yield
    ray.shutdown()


def _wait_for_trials(run_path: Path, proc: subprocess.Popen, at_least: int, timeout_s: float) -> int:
    """Poll the run table of ``run_path`` until it holds ``at_least`` trials; fail if ``proc`` exits first."""
    from hwsearch.search.engine.rundir import RunDir

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


def _killed_run(config: Path, run_path: Path, at_least: int = 2, env: dict[str, str] | None = None,
                timeout_s: float = 400, args: Sequence[str] = ()) -> Any:
    """Run ``hwsearch run CONFIG [ARGS]`` in another process, SIGKILL it (driver, and Ray and trials when it
    started them, as in a power cut) once ``run_path`` has recorded ``at_least`` trials, and return the
    trials recorded before the kill. With ``args=["--address", A]`` only the driver dies; the cluster stays."""
    from hwsearch.search.engine.rundir import RunDir

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen([sys.executable, "-m", "hwsearch.cli", "run", str(config), *args, "--quiet"], cwd=root,
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for_trials(run_path, proc, at_least, timeout_s)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return RunDir(run_path).trials()


@pytest.fixture(scope="session")
def killed_run() -> Callable[..., Any]:
    """``killed_run(config_path, run_path, at_least=2, env=None, args=())``: the trials a run of the config
    had recorded when it was killed with SIGKILL (see `_killed_run`)."""
    return _killed_run


# ---- NAAS: a co-search problem with a hand-set predictor ----------------------------------------
@pytest.fixture(scope="module")
def problem():
    """A NAAS `CoSearchProblem` on a compact ofa-mbv3 space whose predictor is set by hand, not fitted."""
    import numpy as np

    from hwsearch import spaces
    from hwsearch.search.naas.accuracy import BitsPenalty, CoSearchAccuracy
    from hwsearch.search.naas.assets import OneHotRidge
    from hwsearch.search.naas.problem import CoSearchProblem, QuantizedSpace, Reference

    compact = {"resolutions": [8, 12], "stem_width": 8, "first_width": 8, "widths": [8, 16, 24, 32, 48],
               "head_width": 96}
    net = spaces.get("ofa-mbv3", in_channels=1, num_classes=10, **compact)
    q = QuantizedSpace(net, (4, 6, 8))
    # Deeper/wider genes add accuracy, as a fitted predictor's weights do.
    w = np.concatenate([np.linspace(0.0, 0.02, len(d.options)) for d in net.dims])
    penalty = BitsPenalty(q.groups, q.bits, 0.002, tuple((0.01, 0.003, 0.0) for _ in q.groups), 0.95)
    acc = CoSearchAccuracy(OneHotRidge(net, w, 0.6), penalty)
    return CoSearchProblem(q, acc, Reference(0.5, 5.0, 1.0))
