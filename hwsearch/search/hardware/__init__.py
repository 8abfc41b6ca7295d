"""Metric providers that price a trial's NetSpec on hardware: the accelerator model (`accelerator`) and
the measured latency tables of this machine (`device`).

Names are imported on first use, so that importing one light module of this package (its settings,
which a config validates against) does not import torch, Ray or Optuna.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "accelerator_metrics": "accelerator",
    "configured_accelerator": "accelerator",
    "at_configured_batch": "batch",
    "configured_batch": "batch",
    "device_metrics": "device",
    "device_settings": "device",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
