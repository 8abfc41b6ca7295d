"""Metric providers that price a trial's NetSpec on hardware: the accelerator model (`accelerator`) and
the measured latency tables of this machine (`device`).

Public names load on first use (`hwsearch.registry.lazy_exports`): a config check stays light.
"""

from __future__ import annotations

from hwsearch.registry import lazy_exports

_EXPORTS = {
    "accelerator_metrics": "accelerator",
    "configured_accelerator": "accelerator",
    "at_configured_batch": "batch",
    "configured_batch": "batch",
    "device_metrics": "device",
    "device_settings": "device",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
