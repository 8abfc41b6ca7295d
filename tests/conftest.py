"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Callable
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
