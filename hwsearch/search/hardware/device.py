"""The ``device`` metric provider: latency of a trial's network on this machine, from measured kernels.

Config::

    metrics: [netspec, device]
    hardware:
      device: cpu                 # or {name: cuda, dtype: fp16, threads: 1, statistic: median, measure: false}
      batch: 1                    # optional, shared with the accelerator provider
    constraints: ["latency_ms <= 5"]

Reported, in milliseconds: ``latency_ms`` and ``<device>_latency_ms`` (predicted: the measured layer
table of the configured space plus its fitted correction, see `hwsearch.estimators.measured`),
``<device>_lut_latency_ms`` (the plain table sum) and, with ``measure: true``,
``<device>_measured_layers_ms``: the network's layers run back to back as real kernels and timed end
to end (a provider sees the trial's NetSpec, not its module). Layers the table lacks are measured
once, on first use, and shared through the cache with every later trial and worker. When the
``accelerator`` provider is listed too, the later of the two sets ``latency_ms``; the device-named
keys never clash.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hwsearch.errors import ConfigError
from hwsearch.estimators.measured import device_latency_ms
from hwsearch.ir import NetSpec
from hwsearch.search.hardware.batch import at_configured_batch

if TYPE_CHECKING:
    from hwsearch.search.engine.config import ExperimentConfig

SETTINGS = ("name", "threads", "dtype", "statistic", "measure", "cache_dir")


def device_settings(hardware: Mapping[str, Any]) -> dict[str, Any]:
    """The ``hardware.device`` settings as a dict with every key, validated."""
    spec = hardware.get("device")
    if spec is None:
        raise ConfigError("hardware.device is required by the 'device' metric provider (cpu, or cuda on a GPU "
                          "machine, or a mapping {name: cpu, threads: 1, statistic: median, measure: false})")
    d = {"name": spec} if isinstance(spec, str) else dict(spec)
    unknown = sorted(set(d) - set(SETTINGS))
    if unknown:
        raise ConfigError(f"hardware.device has unknown setting(s) {unknown}; known: {', '.join(SETTINGS)}")
    if not isinstance(d.get("name"), str):
        raise ConfigError(f"hardware.device.name must be cpu or cuda, got {d.get('name')!r}")
    if not isinstance(d.get("measure", False), bool):
        raise ConfigError(f"hardware.device.measure must be true or false, got {d.get('measure')!r}")
    return {"threads": None, "dtype": "fp32", "statistic": "median", "measure": False, "cache_dir": None, **d}


# The device's name prefixes its metrics (cpu_latency_ms, cuda_lut_latency_ms, ...).
def device_metrics(net: NetSpec, config: ExperimentConfig) -> dict[str, float]:
    """Predicted (and optionally measured) latency of the trial's network on this machine."""
    s = device_settings(config.hardware)
    ms = device_latency_ms(config.space.name, at_configured_batch(net, config.hardware), s["name"], s["threads"], s["statistic"],
                           s["cache_dir"], s["measure"], s["dtype"])
    dev = s["name"]
    out = {"latency_ms": ms["predicted"], f"{dev}_latency_ms": ms["predicted"], f"{dev}_lut_latency_ms": ms["lut"]}
    if "measured_layers" in ms:
        out[f"{dev}_measured_layers_ms"] = ms["measured_layers"]
    return out


__all__ = ["device_metrics", "device_settings"]
