"""Searchers that know nothing about the space beyond its genes: uniform random search and Optuna
(TPE, NSGA-II) with its study in a journal file.

Names are imported on first use, so that importing one light module of this package (its settings,
which a config validates against) does not import torch, Ray or Optuna.
"""

from __future__ import annotations

from hwsearch.registry import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
