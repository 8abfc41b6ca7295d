"""Hardware budgets for compression policies, and AMC's resource-constrained action clipping.

A `Budget` names a cost metric of a `NetSpec` (MACs, parameters, model size, average weight bits,
bit-operations, or latency / energy from any object with ``predict(netspec)``) and a limit, absolute or
as a share of the uncompressed reference. `BudgetClipper` turns a proposed value for one knob (channels
kept, weight bits, activation bits) into the nearest value that keeps the budget reachable: the cost
with every undecided knob at its minimum must stay within the limit (AMC's clipping), and the cost with
every undecided knob at its maximum must still reach it, so the episode ends on the budget, not under it.
Every metric is non-decreasing in every knob, which lets both bounds be found by bisection.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from hwsearch.errors import ConfigError, UnknownName
from hwsearch.estimators.latency_table import LatencyTable, model_entry, model_fingerprint
from hwsearch.ir import NetSpec


class CostPredictor(Protocol):
    """Anything that prices a whole network, e.g. `hwsearch.estimators.LatencyTable`."""

    def predict(self, netspec: NetSpec) -> float: ...


class FilledTable:
    """A lookup table (e.g. `LatencyTable`) that prices the layers it lacks with ``fn`` on first use.

    Budget clipping visits many pruned and quantized variants of each layer; a table built ahead of
    time rarely holds them all, so missing ones are costed (accelerator model) or measured on demand.
    The table holds seconds and picojoules; ``latency_scale`` / ``energy_scale`` convert the totals
    (1e3 and 1e-9 give the milliseconds and millijoules of the search's metrics).
    """

    def __init__(self, table: Any, fn: Callable[[Any], Any], latency_scale: float = 1.0,
                 energy_scale: float = 1.0) -> None:
        self.table, self.fn = table, fn
        self.latency_scale, self.energy_scale = latency_scale, energy_scale

    def predict(self, netspec: NetSpec) -> float:
        """Latency of the whole network (seconds, times ``latency_scale``)."""
        self.table.fill(netspec.layers, self.fn)
        return float(self.table.predict(netspec)) * self.latency_scale

    def predict_energy(self, netspec: NetSpec) -> float:
        """Energy of the whole network (picojoules, times ``energy_scale``)."""
        self.table.fill(netspec.layers, self.fn)
        return float(self.table.predict_energy(netspec)) * self.energy_scale


# Units of `accelerator_pricer`: (latency scale from seconds, energy scale from picojoules).
PRICER_UNITS = {"s_pj": (1.0, 1.0), "ms_mj": (1e3, 1e-9)}


def accelerator_pricer(accel: Any, units: str = "s_pj") -> FilledTable:
    """Prices networks on one accelerator (`hwsearch.hwmodel.Accelerator`) by the accelerator model,
    layer by layer through a `LatencyTable` filled on first use.

    ``units``: ``s_pj`` (seconds, picojoules; the ``amc``/``haq`` searchers' budgets) or ``ms_mj``
    (milliseconds, millijoules: the ``latency_ms`` / ``energy_mj`` a NAAS triple carries, which its
    refinement takes as the budget)."""
    try:
        latency_scale, energy_scale = PRICER_UNITS[units]
    except KeyError:
        raise UnknownName(f"unknown pricer units {units!r}; known: {', '.join(PRICER_UNITS)}") from None
    return FilledTable(LatencyTable("model", model_fingerprint(accel)), lambda layer: model_entry(layer, accel),
                       latency_scale, energy_scale)


def _bitops(net: NetSpec) -> float:
    """MACs weighted by weight x activation bits (HAQ's and Bit Fusion's compute proxy)."""
    total = 0.0
    for layer in net.layers:
        if layer.macs:
            w_bits = layer.w_bits if layer.has_weights else layer.a_bits
            total += layer.effective_macs * w_bits * layer.a_bits
    return total


METRICS: dict[str, Callable[[NetSpec], float]] = {
    "macs": lambda net: float(net.macs),
    "params": lambda net: float(net.nonzero_params),
    "model_size": lambda net: float(net.weight_bytes),
    "avg_w_bits": lambda net: float(net.avg_w_bits),
    "bitops": _bitops,
}
PREDICTED_METRICS = ("latency", "energy")


def metric_names() -> list[str]:
    """Every budget metric name, analytic and predicted."""
    return sorted(METRICS) + list(PREDICTED_METRICS)


def cost_function(metric: str, predictor: CostPredictor | None = None) -> Callable[[NetSpec], float]:
    """The function pricing a NetSpec under ``metric``; latency/energy need a ``predictor``."""
    if metric in METRICS:
        return METRICS[metric]
    if metric in PREDICTED_METRICS:
        if predictor is None:
            raise ConfigError(f"budget metric {metric!r} needs a predictor (a LatencyTable or any object with "
                              "predict(netspec)); pass one or use macs, params, model_size, avg_w_bits, bitops")
        if metric == "energy":
            fn = getattr(predictor, "predict_energy", None)
            if fn is None:
                raise ConfigError(f"{type(predictor).__name__} has no predict_energy(netspec) for an energy budget")
            return lambda net: float(fn(net))
        return lambda net: float(predictor.predict(net))
    raise UnknownName(f"unknown budget metric {metric!r}; known: {', '.join(metric_names())}")


@dataclass(frozen=True)
class Budget:
    """A cost limit: ``metric`` at most ``value`` (absolute) or ``ratio`` x the uncompressed reference."""

    metric: str = "macs"
    ratio: float | None = None
    value: float | None = None

    def __post_init__(self) -> None:
        if self.metric not in metric_names():
            raise UnknownName(f"unknown budget metric {self.metric!r}; known: {', '.join(metric_names())}")
        if (self.ratio is None) == (self.value is None):
            raise ConfigError(f"budget on {self.metric!r} needs exactly one of ratio or value, "
                              f"got ratio={self.ratio!r}, value={self.value!r}")
        if self.ratio is not None and not 0 < self.ratio <= 1:
            raise ConfigError(f"budget ratio={self.ratio!r} must lie in (0, 1]")
        if self.value is not None and not (self.value > 0 and math.isfinite(self.value)):
            raise ConfigError(f"budget value={self.value!r} must be a positive finite number")

    def limit(self, reference_cost: float) -> float:
        """The absolute limit, given the cost of the uncompressed reference network."""
        return float(self.value) if self.value is not None else float(self.ratio) * reference_cost

    def label(self) -> str:
        """Short text such as ``macs<=50%`` or ``avg_w_bits<=4``."""
        return f"{self.metric}<={self.ratio:.0%}" if self.ratio is not None else f"{self.metric}<={self.value:g}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {"metric": self.metric, "ratio": self.ratio, "value": self.value}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Budget:
        """Inverse of `to_dict`; unknown keys are an error."""
        extra = set(d) - {"metric", "ratio", "value"}
        if extra:
            raise ConfigError(f"unknown budget field(s) {sorted(extra)}; known: metric, ratio, value")
        return cls(str(d.get("metric", "macs")), d.get("ratio"), d.get("value"))


# A decision state: one integer array per knob ("keep" channels, "w_bits", "a_bits"), one entry per slot.
State = dict[str, np.ndarray]


@dataclass(frozen=True)
class ClipResult:
    """The value chosen for one knob, the value proposed, and whether the budget stays reachable."""

    value: int
    proposed: int
    reachable: bool  # False when no value satisfies both bounds (staying under the limit won)


class BudgetClipper:
    """Projects one knob's proposed value onto the values that keep the budget met exactly."""

    def __init__(self, cost: Callable[[State], float], limit: float) -> None:
        self.cost = cost
        self.limit = float(limit)
        self.evaluations = 0

    def _cost(self, state: State) -> float:
        self.evaluations += 1
        return self.cost(state)

    def clip(self, options: Sequence[int], proposed: int, knob: str, slot: int, low: State,
             high: State) -> ClipResult:
        """Choose among ``options`` (ascending) for ``knob`` of ``slot``.

        ``low``/``high`` hold the decided knobs and every undecided one at its minimum/maximum; they are
        modified only at (knob, slot) during the search and restored afterwards.
        """
        opts = list(options)
        n = len(opts)
        i_prop = int(np.argmin(np.abs(np.asarray(opts, dtype=float) - proposed)))
        saved = (low[knob][slot], high[knob][slot])

        def under(i: int) -> bool:  # with the rest at minimum, still within the limit
            low[knob][slot] = opts[i]
            return self._cost(low) <= self.limit

        def reaches(i: int) -> bool:  # with the rest at maximum, the limit can still be reached
            high[knob][slot] = opts[i]
            return self._cost(high) >= self.limit

        try:
            if not under(i_prop):
                found = _last_true(under, 0, i_prop - 1)
                chosen = 0 if found is None else found
                reachable = found is not None and reaches(chosen)
            elif reaches(i_prop):
                chosen, reachable = i_prop, True
            else:
                lo_i = _first_true(reaches, i_prop + 1, n - 1)
                if lo_i is not None and under(lo_i):
                    chosen, reachable = lo_i, True
                else:
                    top = n - 1 if lo_i is None else lo_i - 1
                    found = _last_true(under, i_prop + 1, top)
                    chosen, reachable = (i_prop if found is None else found), False
        finally:
            low[knob][slot], high[knob][slot] = saved
        return ClipResult(value=int(opts[chosen]), proposed=int(proposed), reachable=reachable)


def _last_true(pred: Callable[[int], bool], lo: int, hi: int) -> int | None:
    """Largest i in [lo, hi] with pred(i), for a predicate true up to some point then false."""
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        if pred(mid):
            best, lo = mid, mid + 1
        else:
            hi = mid - 1
    return best


def _first_true(pred: Callable[[int], bool], lo: int, hi: int) -> int | None:
    """Smallest i in [lo, hi] with pred(i), for a predicate false up to some point then true."""
    best = None
    while lo <= hi:
        mid = (lo + hi) // 2
        if pred(mid):
            best, hi = mid, mid - 1
        else:
            lo = mid + 1
    return best


__all__ = ["Budget", "BudgetClipper", "ClipResult", "CostPredictor", "FilledTable", "METRICS", "PREDICTED_METRICS",
           "PRICER_UNITS", "State", "accelerator_pricer", "cost_function", "metric_names"]
