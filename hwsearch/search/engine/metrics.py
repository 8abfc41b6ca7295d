"""Metric providers: name -> function of a trial's NetSpec and the experiment config -> metrics.

Every finished trial runs the providers listed in the config's ``metrics`` (``netspec`` by default)
on the NetSpec of the network it evaluated, and constraints and objectives may name any metric a
provider reports. To add one (say ``latency_ms`` of a config-named accelerator), write a module::

    from hwsearch.search.engine.metrics import register

    @register("accelerator")
    def accelerator_costs(net: NetSpec, config: ExperimentConfig) -> dict[str, float]:
        accel = Accelerator.preset(config.hardware["accelerator"])
        ...
        return {"latency_ms": ..., "energy_mj": ...}

register it in `hwsearch.search.plugins` (or, outside hwsearch, decorate it), and list it in a config: ``metrics: [netspec, accelerator]``
with its settings under ``hardware:``. Providers must be cheap (no training) and return plain floats.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hwsearch.ir import NetSpec
from hwsearch.registry import Registry

if TYPE_CHECKING:
    from hwsearch.search.engine.config import ExperimentConfig

MetricProvider = Callable[[NetSpec, "ExperimentConfig"], dict[str, Any]]


@dataclass(frozen=True)
class ProviderPlugin:
    """A registered metric provider and the metric names it reports (glob patterns)."""

    fn: MetricProvider
    reports: tuple[str, ...] = ()


# The built-in providers are registered by `hwsearch.search.plugins`, imported on the first lookup.
PROVIDERS: Registry[ProviderPlugin] = Registry("metric provider", builtins="hwsearch.search.plugins")

# Every trial's report holds these besides its evaluator's and providers' metrics (`trial.evaluate_trial`).
TRIAL_METRICS = ("duration_s", "started_at", "finished_at")


def register(name: str, reports: tuple[str, ...] = ()) -> Callable[[MetricProvider], MetricProvider]:
    """Decorator adding a metric provider under ``name``; ``reports`` names its metrics (glob patterns)."""

    def add(fn: MetricProvider) -> MetricProvider:
        PROVIDERS.add(name, ProviderPlugin(fn, tuple(reports)))
        return fn

    return add


def names() -> list[str]:
    """Registered provider names, sorted."""
    return PROVIDERS.names()


def get(name: str) -> MetricProvider:
    """The provider registered as ``name``."""
    return PROVIDERS.get(name).fn


def reported(names: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """The metric names (glob patterns) the providers ``names`` report."""
    return tuple(p for n in names if n in PROVIDERS for p in PROVIDERS.get(n).reports)


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


__all__ = ["PROVIDERS", "TRIAL_METRICS", "ProviderPlugin", "MetricProvider", "get", "measure", "names", "register",
           "reported"]
