"""Metric providers: name -> function of a trial's NetSpec and the experiment config -> metrics.

Every finished trial runs the providers listed in the config's ``metrics`` (``netspec`` by default)
on the NetSpec of the network it evaluated, and constraints and objectives may name any metric a
provider reports. To add one (say ``latency_ms`` of a config-named accelerator), write a module::

    from hwsearch.search.metrics import register

    @register("accelerator")
    def accelerator_costs(net: NetSpec, config: ExperimentConfig) -> dict[str, float]:
        accel = Accelerator.preset(config.hardware["accelerator"])
        ...
        return {"latency_ms": ..., "energy_mj": ...}

import it at the bottom of this file, and list it in a config: ``metrics: [netspec, accelerator]``
with its settings under ``hardware:``. Providers must be cheap (no training) and return plain floats.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hwsearch.errors import UnknownName
from hwsearch.ir import NetSpec

if TYPE_CHECKING:
    from hwsearch.search.config import ExperimentConfig

MetricProvider = Callable[[NetSpec, "ExperimentConfig"], dict[str, Any]]
PROVIDERS: dict[str, MetricProvider] = {}
REPORTS: dict[str, tuple[str, ...]] = {}  # provider -> the metric names it reports (glob patterns)

# Every trial's report holds these besides its evaluator's and providers' metrics (`trial.evaluate_trial`).
TRIAL_METRICS = ("duration_s", "started_at", "finished_at")


def register(name: str, reports: tuple[str, ...] = ()) -> Callable[[MetricProvider], MetricProvider]:
    """Decorator adding a metric provider under ``name``; ``reports`` names its metrics (glob patterns)."""

    def add(fn: MetricProvider) -> MetricProvider:
        PROVIDERS[name] = fn
        REPORTS[name] = tuple(reports)
        return fn

    return add


def names() -> list[str]:
    """Registered provider names, sorted."""
    return sorted(PROVIDERS)


def get(name: str) -> MetricProvider:
    """The provider registered as ``name``."""
    try:
        return PROVIDERS[name]
    except KeyError:
        raise UnknownName(f"unknown metric provider {name!r}; known: {', '.join(names())}") from None


def reported(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The metric names (glob patterns) the providers ``names`` report."""
    return tuple(p for n in names for p in REPORTS.get(n, ()))


def measure(net: NetSpec, config: ExperimentConfig) -> dict[str, Any]:
    """Run every provider the config lists and merge their metrics (later providers win on a clash)."""
    out: dict[str, Any] = {}
    for name in config.metrics:
        out.update(get(name)(net, config))
    return out


@register("netspec", reports=("macs", "params", "weight_bytes", "peak_activation_bytes"))
def netspec_metrics(net: NetSpec, config: ExperimentConfig) -> dict[str, Any]:
    """Counts read off the NetSpec at batch 1: MACs, parameters, model bytes, peak activation memory."""
    net = net.with_batch(1)
    return {
        "macs": float(net.macs),
        "params": float(net.params),
        "weight_bytes": float(net.weight_bytes),
        "peak_activation_bytes": float(net.peak_activation_bytes),
    }


__all__ = ["PROVIDERS", "REPORTS", "TRIAL_METRICS", "MetricProvider", "get", "measure", "names", "register",
           "reported"]

# Providers living in their own modules register themselves on import.
from hwsearch.search import accelerator_metrics, device_latency  # noqa: E402,F401,I001
