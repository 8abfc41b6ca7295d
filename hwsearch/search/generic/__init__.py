"""Searchers that know nothing about the space beyond its genes: uniform random search and Optuna
(TPE, NSGA-II) with its study in a journal file.

Names are imported on first use, so that importing one light module of this package (its settings,
which a config validates against) does not import torch, Ray or Optuna.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "JOURNAL": "optuna_search",
    "JournalOptunaSearch": "optuna_search",
    "OptunaSettings": "optuna_search",
    "make_sampler": "optuna_search",
    "open_study": "optuna_search",
    "RandomSearcher": "random_search",
    "RandomSettings": "random_search",
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
