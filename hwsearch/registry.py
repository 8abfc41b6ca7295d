"""A named family of plug-ins: spaces, searchers, evaluators, metric providers, presets.

Every family in hwsearch has the same shape: a name maps to one entry, adding an entry is one call
(or one decorator) in the module that defines it, and a lookup of an unknown name raises
`UnknownName` listing the known ones, so the command line can print it as it is. A registry may name
a module that registers the built-in entries (``builtins=``): it is imported on the first lookup, not
when the registry is created, so the module that holds the registry stays cheap to import.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

from hwsearch.errors import UnknownName

T = TypeVar("T")


class Registry(Generic[T]):
    """Entries of one kind by name (``kind`` names them in errors: "unknown searcher 'x'; known: ...")."""

    def __init__(self, kind: str, builtins: str | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._builtins = builtins

    def _load(self) -> None:
        if self._builtins is not None:
            module, self._builtins = self._builtins, None
            importlib.import_module(module)

    def add(self, name: str, entry: T) -> T:
        """Register ``entry`` under ``name`` (a later registration of the same name replaces it)."""
        self._entries[name] = entry
        return entry

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator form of `add`: ``@REGISTRY.register("name")``."""

        def add(entry: T) -> T:
            return self.add(name, entry)

        return add

    def get(self, name: str) -> T:
        """The entry registered as ``name``."""
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(f"unknown {self.kind} {name!r}; known: {', '.join(self.names())}") from None

    def names(self) -> list[str]:
        """Registered names, sorted."""
        self._load()
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __getitem__(self, name: str) -> T:
        return self.get(name)


def lazy(target: str) -> Callable[..., object]:
    """A callable standing for ``"package.module:attribute"``, imported on first call.

    Registers a built-in whose module imports a heavy library (torch, Ray, Optuna) without importing
    it: listing or validating names stays cheap, and the module loads when the entry is used."""
    module, _, attr = target.partition(":")

    def call(*args: object, **kwargs: object) -> object:
        return resolve(target)(*args, **kwargs)

    call.__qualname__ = call.__name__ = attr
    call.target = target  # type: ignore[attr-defined]
    return call


def resolve(target: str) -> Callable[..., object]:
    """The object ``"package.module:attribute"`` names."""
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)



def lazy_exports(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for a package whose public names (name -> sub-module) are imported
    on first use, so that importing its light modules (settings) loads no heavy library."""

    def getattr_(name: str) -> Any:
        try:
            module = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    def dir_() -> list[str]:
        return sorted(set(vars(importlib.import_module(package))) | set(exports))

    return getattr_, dir_

__all__ = ["lazy_exports", "Registry", "lazy", "resolve"]
