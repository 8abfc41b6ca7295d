"""Where hwsearch keeps what it can rebuild: trained networks, supernets, lookup tables, decoded data.

One function, so that every cache agrees: an explicit folder, else ``$HWSEARCH_CACHE`` when it is set
and not empty, else ``~/.cache/hwsearch`` (an empty variable means the default, never the current folder).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_root(folder: str | os.PathLike | None = None) -> Path:
    """The cache folder: ``folder``, else ``$HWSEARCH_CACHE`` (unless empty), else ``~/.cache/hwsearch``."""
    if folder is not None:
        return Path(folder)
    env = os.environ.get("HWSEARCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "hwsearch"


__all__ = ["cache_root"]
