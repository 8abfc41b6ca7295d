"""What can be searched: a registry of search spaces.

`get(name)` returns a `SearchSpace` (see `hwsearch.spaces.base`); `names()` lists them. Adding a
space is one decorated factory in one new module, imported at the bottom of this file. A ``profile``
option (`hwsearch.spaces.profiles`) is expanded here, so factories only ever see plain settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hwsearch.registry import Registry
from hwsearch.spaces.base import Choice, Dim, SearchSpace
from hwsearch.spaces.profiles import with_profile

# Space factories by name; ``@register(name)`` adds one.
SPACES: Registry[Callable[..., SearchSpace]] = Registry("space")
register = SPACES.register


def get(name: str, **kwargs: Any) -> SearchSpace:
    """The space registered as ``name``, built with ``kwargs`` (e.g. ``resolution``, ``num_classes``, ``profile``)."""
    return SPACES.get(name)(**with_profile(name, kwargs))


def names() -> list[str]:
    """Registered space names, sorted."""
    return SPACES.names()


__all__ = ["SPACES", "Choice", "Dim", "SearchSpace", "get", "names", "register"]
from hwsearch.spaces import fbnet as _fbnet  # noqa: E402,F401  (registers "fbnet")
from hwsearch.spaces import gpt as _gpt  # noqa: E402,F401  (registers "gpt")
from hwsearch.spaces import nb201 as _nb201  # noqa: E402,F401  (registers "nb201")
from hwsearch.spaces import ofa_mbv3 as _ofa_mbv3  # noqa: E402,F401  (registers "ofa-mbv3")
from hwsearch.spaces import vit as _vit  # noqa: E402,F401  (registers "vit")
