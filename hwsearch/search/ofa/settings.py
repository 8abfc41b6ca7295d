"""What the ofa family declares to the engine without importing torch: the evolution's settings and the
metrics of the ``supernet`` evaluator."""

from __future__ import annotations

from hwsearch.search.engine.evaluators import LM_REPORTS
from hwsearch.search.ofa.evolution import EvolutionSettings

# The metrics the evaluator reports: the config checks its objectives and constraints against them
# (a language model's loss and perplexity besides, see `LM_REPORTS`).
SUPERNET_REPORTS = ("val_acc", "test_acc", "extract_time_s", "supernet_train_time_s", "resolution", *LM_REPORTS)


__all__ = ["SUPERNET_REPORTS", "EvolutionSettings"]
