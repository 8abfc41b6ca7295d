"""``hardware.batch``: the batch a trial's network is priced at, shared by every hardware metric provider."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hwsearch.errors import ConfigError
from hwsearch.ir import NetSpec


def configured_batch(hardware: Mapping[str, Any]) -> int:
    """The config's ``hardware.batch`` (1 when absent), validated."""
    batch = int(hardware.get("batch", 1))
    if batch < 1:
        raise ConfigError(f"hardware.batch={batch} must be a positive integer")
    return batch


def at_configured_batch(net: NetSpec, hardware: Mapping[str, Any]) -> NetSpec:
    """``net`` at the batch ``hardware.batch`` asks for."""
    return net.with_batch(configured_batch(hardware))


__all__ = ["at_configured_batch", "configured_batch"]
