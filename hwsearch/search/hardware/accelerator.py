"""The ``accelerator`` metric provider: latency, energy, EDP, area and peak power of a trial's network
on the accelerator the config names, from the built-in accelerator model.

Config::

    metrics: [netspec, accelerator]
    hardware:
      accelerator: eyeriss          # a preset, an accelerator .json/.yaml or SCALE-Sim .cfg, or a mapping of fields
      batch: 1                      # optional, the batch the network is costed at
    constraints: ["latency_ms <= 5", "area_mm2 <= 2"]

Reported: ``latency_ms``, ``energy_mj``, ``edp`` (mJ x ms), ``area_mm2``, ``peak_power_w``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from hwsearch.errors import ConfigError
from hwsearch.hwmodel import Accelerator, hardware_metrics
from hwsearch.ir import NetSpec
from hwsearch.search.hardware.batch import at_configured_batch

if TYPE_CHECKING:
    from hwsearch.search.engine.config import ExperimentConfig


def configured_accelerator(hardware: Mapping[str, Any]) -> Accelerator:
    """The accelerator named by the config's ``hardware.accelerator``."""
    spec = hardware.get("accelerator")
    if spec is None:
        raise ConfigError("hardware.accelerator is required by the 'accelerator' metric provider "
                          "(a preset name, an accelerator file, or a mapping of accelerator fields)")
    if isinstance(spec, Mapping):
        return Accelerator.from_dict(spec)
    return Accelerator.resolve(str(spec))


def accelerator_metrics(net: NetSpec, config: ExperimentConfig) -> dict[str, float]:
    """Costs of the trial's network on the configured accelerator."""
    hardware = config.hardware
    return hardware_metrics(at_configured_batch(net, hardware), configured_accelerator(hardware))
