"""Searchers that know nothing about the space beyond its genes: uniform random search and Optuna
(TPE, NSGA-II) with its study in a journal file.

Public names load on first use (`hwsearch.registry.lazy_exports`): a config check stays light.
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
