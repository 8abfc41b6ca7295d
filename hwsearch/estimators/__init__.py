"""Latency/energy lookup tables, counters (MACs, params, peak memory) and accuracy predictors."""

from hwsearch.estimators.latency_table import LatencyTable, MissingEntry, TableEntry

__all__ = ["LatencyTable", "MissingEntry", "TableEntry"]
