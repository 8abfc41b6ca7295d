"""Once-for-All: evolution over a supernet's sub-networks (`evolution`), its Ray Tune searcher
(`searcher`) and the ``supernet`` evaluator that extracts and measures a sub-network (`evaluator`).

Public names load on first use (`hwsearch.registry.lazy_exports`): a config check stays light.
"""

from __future__ import annotations

from hwsearch.registry import lazy_exports

_EXPORTS = {
    "SupernetEvaluator": "evaluator",
    "supernet_for": "evaluator",
    "Constraints": "evolution",
    "CostModel": "evolution",
    "Evolution": "evolution",
    "EvolutionSettings": "evolution",
    "Feasibility": "evolution",
    "SearchResult": "evolution",
    "evolve": "evolution",
    "random_sampling": "evolution",
    "random_search": "evolution",
    "EvolutionSearcher": "searcher",
    "constraints_from_config": "searcher",
    "evolution_searcher": "searcher",
    "SUPERNET_REPORTS": "settings",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
