"""What can be searched: a registry of search spaces.

`get(name)` returns a `SearchSpace` (see `hwsearch.spaces.base`); `names()` lists them. Adding a
space is one decorated factory in one new module, imported at the bottom of this file. A ``profile``
option (`hwsearch.spaces.profiles`) is expanded here, so factories only ever see plain settings.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hwsearch.errors import UnknownName
from hwsearch.spaces.base import Choice, Dim, SearchSpace
from hwsearch.spaces.profiles import with_profile

SPACES: dict[str, Callable[..., SearchSpace]] = {}


def register(name: str) -> Callable[[Callable[..., SearchSpace]], Callable[..., SearchSpace]]:
    """Decorator adding a space factory to the registry under ``name``."""

    def add(factory: Callable[..., SearchSpace]) -> Callable[..., SearchSpace]:
        SPACES[name] = factory
        return factory

    return add


def get(name: str, **kwargs: Any) -> SearchSpace:
    """The space registered as ``name``, built with ``kwargs`` (e.g. ``resolution``, ``num_classes``, ``profile``)."""
    try:
        factory = SPACES[name]
    except KeyError:
        raise UnknownName(f"unknown space {name!r}; known: {', '.join(sorted(SPACES))}") from None
    return factory(**with_profile(name, kwargs))


def names() -> list[str]:
    """Registered space names, sorted."""
    return sorted(SPACES)


__all__ = ["SPACES", "Choice", "Dim", "SearchSpace", "get", "names", "register"]
from hwsearch.spaces import fbnet as _fbnet  # noqa: E402,F401  (registers "fbnet")
from hwsearch.spaces import nb201 as _nb201  # noqa: E402,F401  (registers "nb201")
from hwsearch.spaces import ofa_mbv3 as _ofa_mbv3  # noqa: E402,F401  (registers "ofa-mbv3")
from hwsearch.spaces import vit as _vit  # noqa: E402,F401  (registers "vit")
