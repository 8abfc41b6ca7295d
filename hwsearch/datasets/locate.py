"""Where data sources look for a local copy when their source string names no path.

One rule for every data set read from files: ``$HWSEARCH_DATA`` (if set), then ``<cache>/datasets``
under the cache root (``$HWSEARCH_CACHE``, default ``~/.cache/hwsearch``).
"""

from __future__ import annotations

import os
from pathlib import Path

from hwsearch.cache import cache_root


def data_dirs() -> list[Path]:
    """Folders searched when the source names no path: ``$HWSEARCH_DATA`` (if set), then ``<cache>/datasets``."""
    env = os.environ.get("HWSEARCH_DATA")
    return ([Path(env).expanduser()] if env else []) + [cache_root() / "datasets"]


__all__ = ["data_dirs"]
