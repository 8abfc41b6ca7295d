"""Named space settings for one kind of input: ``profile: cifar10`` among a config's space options.

A space's defaults suit the data it was first tuned on (digits upsampled to 24-32 px; ofa-mbv3 keeps
ImageNet's strides). A profile fills in the settings that suit another input, such as CIFAR-10's 32x32
photographs, without changing those defaults; an option given beside the profile overrides it. The
supernet cache keys a supernet by the expanded settings, so a profile edited later never reuses a
supernet trained under its old values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hwsearch.errors import ConfigError

PROFILES: dict[str, dict[str, dict[str, Any]]] = {
    "cifar10": {
        # A stride-1 first stage (total stride 16, ImageNet's is 32) keeps the last stage at 2x2 on 32x32
        # input instead of 1x1. Of the plans BENCHMARKS.md compares, it trained the mbv3-like network
        # as well as total stride 8 did, for fewer MACs and less CPU time.
        "ofa-mbv3": {"stem_stride": 2, "strides": [1, 2, 2, 1, 2]},
        # 4x4 patches: 64 tokens at 32x32, the usual patching of CIFAR ViTs (8x8 gives 16).
        "vit": {"resolution": 32, "patch_size": 4},
    },
}


def names() -> list[str]:
    """Profile names, sorted."""
    return sorted(PROFILES)


def with_profile(space: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with its ``profile`` entry (if any) replaced by the settings it names; explicit options win."""
    options = dict(options)
    name = options.pop("profile", None)
    if name is None:
        return options
    if name not in PROFILES:
        raise ConfigError(f"{space}: profile={name!r} is unknown; known: {', '.join(names())}")
    settings = PROFILES[name].get(space)
    if settings is None:
        known = [p for p in names() if space in PROFILES[p]]
        raise ConfigError(f"{space}: profile {name!r} has no settings for this space; "
                          f"profiles for it: {', '.join(known) or 'none'}")
    return {**settings, **options}


__all__ = ["PROFILES", "names", "with_profile"]
