"""Searchers: a registry of factories that build a Ray Tune `Searcher` for a space and a config.

A searcher proposes trial parameters; the built-in ones propose ``{"choice": {gene: option index}}``
over a space's fixed-length encoding, which the ``train`` evaluator decodes. Each searcher declares a
pydantic model of its own settings (the config's ``searcher.settings``), so a typo there is a
config error that names the field. A searcher must survive ``--resume``: Tune saves it through
`Searcher.save` / `Searcher.restore` next to its experiment state (the random searcher writes JSON;
Optuna keeps its study in a journal file inside the run directory).

To add one (say ``anneal``), write its settings model in a module that imports neither torch nor Ray
(validating a config imports it), its factory in another, and register both in
`hwsearch.search.plugins`::

    SEARCHERS.add("anneal", SearcherPlugin(AnnealSettings, lazy("hwsearch.search.generic.anneal:anneal_searcher")))

then select it with ``searcher: {name: anneal, settings: {...}}``. A plug-in outside hwsearch calls
``register("anneal", AnnealSettings)`` as a decorator on its factory instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ValidationError

from hwsearch.errors import ConfigError
from hwsearch.registry import Registry

if TYPE_CHECKING:
    from ray.tune.search import Searcher

    from hwsearch.search.engine.config import ExperimentConfig
    from hwsearch.spaces import SearchSpace


@dataclass(frozen=True)
class SearchContext:
    """What a searcher factory may use."""

    space: SearchSpace
    config: ExperimentConfig
    settings: BaseModel
    run_dir: Path

    @property
    def seed(self) -> int:
        """The searcher's seed."""
        return self.config.searcher.seed

    @property
    def metrics(self) -> list[str]:
        """Objective metric names, primary first."""
        return [o.metric for o in self.config.objectives]

    @property
    def modes(self) -> list[str]:
        """``min`` / ``max`` per objective."""
        return [o.mode for o in self.config.objectives]


@dataclass(frozen=True)
class SearcherPlugin:
    """A registered searcher: its settings model and its factory."""

    settings: type[BaseModel]
    factory: Callable[[SearchContext], Searcher]


# The built-in searchers are registered by `hwsearch.search.plugins`, imported on the first lookup.
SEARCHERS: Registry[SearcherPlugin] = Registry("searcher", builtins="hwsearch.search.plugins")


def register(name: str, settings: type[BaseModel]) -> Callable[[Callable[[SearchContext], Searcher]],
                                                               Callable[[SearchContext], Searcher]]:
    """Decorator adding a searcher factory under ``name`` with its settings model."""

    def add(factory: Callable[[SearchContext], Searcher]) -> Callable[[SearchContext], Searcher]:
        SEARCHERS.add(name, SearcherPlugin(settings, factory))
        return factory

    return add


def names() -> list[str]:
    """Registered searcher names, sorted."""
    return SEARCHERS.names()


def plugin(name: str) -> SearcherPlugin:
    """The searcher registered as ``name``."""
    return SEARCHERS.get(name)


def validate_settings(name: str, settings: dict[str, Any]) -> BaseModel:
    """The searcher's settings model built from ``settings``; errors name ``searcher.settings.FIELD``."""
    if name not in SEARCHERS:
        raise ConfigError(f"searcher.name {name!r} is unknown; known: {', '.join(names())}")
    try:
        return SEARCHERS.get(name).settings.model_validate(settings)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"searcher.settings.{where}: {err['msg'].removeprefix('Value error, ')}") from None


def build(space: SearchSpace, config: ExperimentConfig, run_dir: Path) -> Searcher:
    """The Ray Tune searcher the config asks for."""
    p = plugin(config.searcher.name)
    settings = validate_settings(config.searcher.name, config.searcher.settings)
    return p.factory(SearchContext(space=space, config=config, settings=settings, run_dir=Path(run_dir)))


_AT_END: list[threading.Thread] = []


def run_at_end(work: Callable[[], None], name: str) -> None:
    """Start a searcher's end-of-run ``work`` (a final report) in a thread the driver waits for.

    Tune tells a searcher about its last trial before the driver has recorded that trial, so such work
    cannot run inside the searcher's hook; the driver joins it (`wait_for_end_work`) before it marks the
    run finished and returns, so a caller never sees a finished run whose report is still being written."""
    thread = threading.Thread(target=work, name=name)
    _AT_END.append(thread)
    thread.start()


SEARCHER_DONE = "searcher_done"


def mark_searcher_done(run_dir: str | Path) -> None:
    """Record in ``run_dir`` that the searcher has answered everything it will ever propose.

    A searcher may finish below the trial budget (NAAS refines fewer triples than ``top_k`` when
    fewer are on the front); the driver then calls the run finished rather than stopped."""
    (Path(run_dir) / SEARCHER_DONE).touch()


def searcher_done(run_dir: str | Path) -> bool:
    """Whether the searcher of the run in ``run_dir`` has marked itself done."""
    return (Path(run_dir) / SEARCHER_DONE).is_file()


def wait_for_end_work() -> None:
    """Wait for the work started with `run_at_end` in this process."""
    while _AT_END:
        _AT_END.pop().join()


__all__ = ["SEARCHERS", "SEARCHER_DONE", "SearchContext", "SearcherPlugin", "build", "mark_searcher_done", "names",
           "plugin", "register", "run_at_end", "searcher_done", "validate_settings", "wait_for_end_work"]
