"""What the ofa family declares to the engine without importing torch: the evolution's settings and the
metrics of the ``supernet`` evaluator."""

from __future__ import annotations

from hwsearch.search.ofa.evolution import EvolutionSettings

# The metrics the evaluator reports: the config checks its objectives and constraints against them.
SUPERNET_REPORTS = ("val_acc", "test_acc", "extract_time_s", "supernet_train_time_s", "resolution")


__all__ = ["SUPERNET_REPORTS", "EvolutionSettings"]
