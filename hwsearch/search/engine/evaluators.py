"""Evaluators: how a trial turns the searcher's proposal into a network, its weights and its metrics.

An `Evaluator` receives the trial's parameters (what the searcher proposed; for the built-in
searchers ``{"choice": {gene: option index}}``) and a `TrialContext` (config, space, data, threads),
and returns an `Evaluation`: the concrete choice, the NetSpec of the network it measured, metrics,
the trained module, and any extra JSON documents (``policy`` for a compressed model). The engine
adds the metric providers' numbers, saves everything as the trial's checkpoint and reports it.

Export rebuilds a trial's network through the same evaluator's `rebuild`, so an evaluator whose
model is not ``space.build(choice)`` (pruned, quantized, a supernet slice) overrides `rebuild`.
To add one (e.g. ``supernet``: inherit weights, no training), write a module::

    from hwsearch.search.engine.evaluators import Evaluator, Evaluation

    class SupernetEvaluator(Evaluator):
        name = "supernet"
        reports = ("val_acc", "test_acc")
        def evaluate(self, params, ctx): ...

register it in `hwsearch.search.plugins` (by module path, with the metrics it reports, so that
validating a config does not import it) and select it with ``evaluation.evaluator: supernet``.
A plug-in outside hwsearch decorates its class with ``@register("supernet")`` instead.

This module imports neither torch nor the data loaders at import time: the config module reads the
registry, and importing the config must stay cheap.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from hwsearch import spaces
from hwsearch.errors import RunError, SpecError
from hwsearch.ir import NetSpec
from hwsearch.registry import Registry

if TYPE_CHECKING:
    import torch

    from hwsearch.data import Dataset
    from hwsearch.search.engine.config import ExperimentConfig
    from hwsearch.spaces import SearchSpace


# What an evaluator adds for a language model, whose data labels every position of a window
# (`hwsearch.lm_eval.lm_metrics`); evaluators that train or measure networks declare them among their
# `reports`, so a config may minimise ``val_perplexity`` or bound ``val_loss``.
LM_REPORTS = ("val_loss", "val_perplexity", "test_loss", "test_perplexity")


@dataclass(frozen=True)
class TrialContext:
    """What an evaluator may use: the config, the space built for the data, the data, CPU threads."""

    config: ExperimentConfig
    space: SearchSpace
    data: Dataset
    threads: int
    run_path: Path | None = None  # the run folder the trial runs in (None: a trial run outside the engine)


@dataclass(frozen=True, eq=False)
class Evaluation:
    """The outcome of evaluating one candidate."""

    choice: dict[str, Any]
    netspec: NetSpec
    metrics: dict[str, float]
    model: torch.nn.Module | None = None
    documents: dict[str, Any] = field(default_factory=dict)  # extra JSON files, e.g. {"policy": {...}}


@dataclass(frozen=True)
class SavedTrial:
    """A finished trial's folder: choice, NetSpec, metrics, weights and extra documents."""

    path: Path

    def read_json(self, name: str) -> Any:
        """One of the trial's JSON documents (``choice``, ``netspec``, ``report``, ``policy``...)."""
        f = self.path / f"{name}.json"
        try:
            return json.loads(f.read_text())
        except FileNotFoundError:
            raise RunError(f"trial folder {self.path} has no {name}.json") from None
        except (OSError, ValueError) as e:
            raise RunError(f"cannot read {f}: {e}") from None

    @property
    def choice(self) -> dict[str, Any]:
        """The choice the trial evaluated."""
        return self.read_json("choice")

    @property
    def netspec(self) -> NetSpec:
        """The NetSpec of the network the trial evaluated."""
        return NetSpec.from_dict(self.read_json("netspec"))

    @property
    def report(self) -> dict[str, Any]:
        """Every metric the trial reported."""
        return self.read_json("report")

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The trained weights, loaded without unpickling arbitrary objects."""
        f = self.path / "state_dict.pt"
        if not f.is_file():
            raise RunError(f"trial folder {self.path} has no state_dict.pt (the trial kept no weights)")
        import torch  # heavy library, deferred: see the module doc

        return torch.load(f, map_location="cpu", weights_only=True)


class Evaluator(ABC):
    """Base of evaluators; subclasses implement `evaluate` and, when needed, `rebuild`."""

    name: str = ""
    # The metrics `evaluate` reports, so that a config's objectives and constraints are checked when it
    # loads; empty for an evaluator that does not declare them (nothing is checked then).
    reports: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def evaluate(self, params: Mapping[str, Any], ctx: TrialContext) -> Evaluation:
        """Turn the searcher's parameters into an `Evaluation`."""

    def rebuild(self, saved: SavedTrial, space: SearchSpace) -> torch.nn.Module:
        """The trial's network with its trained weights, in eval mode."""
        model = space.build(saved.choice)
        model.load_state_dict(saved.state_dict())
        return model.eval()


@dataclass(frozen=True)
class EvaluatorPlugin:
    """A registered evaluator: how to make one, and the metrics it reports (checked when a config loads)."""

    factory: Callable[[], Evaluator]
    reports: tuple[str, ...] = ()


# The built-in evaluators are registered by `hwsearch.search.plugins`, imported on the first lookup.
EVALUATORS: Registry[EvaluatorPlugin] = Registry("evaluator", builtins="hwsearch.search.plugins")


def register(name: str) -> Callable[[type[Evaluator]], type[Evaluator]]:
    """Class decorator adding an evaluator under ``name``."""

    def add(cls: type[Evaluator]) -> type[Evaluator]:
        cls.name = name
        EVALUATORS.add(name, EvaluatorPlugin(cls, tuple(cls.reports)))
        return cls

    return add


def names() -> list[str]:
    """Registered evaluator names, sorted."""
    return EVALUATORS.names()


def get(name: str) -> Evaluator:
    """A fresh evaluator registered as ``name``."""
    return EVALUATORS.get(name).factory()


@lru_cache(maxsize=4)
def cached_data(source: str, seed: int) -> Dataset:
    """The data set, loaded once per worker process (Ray reuses workers across trials)."""
    from hwsearch.data import load_data  # imports torch: deferred, see the module doc

    return load_data(source, seed=seed)


def build_space(config: ExperimentConfig, data: Dataset) -> SearchSpace:
    """The configured space, sized for the data's channels and classes."""
    kwargs = {"in_channels": data.channels, "num_classes": data.num_classes, **config.space.options}
    return spaces.get(config.space.name, **kwargs)


def choice_from_params(space: SearchSpace, params: Mapping[str, Any]) -> dict[str, Any]:
    """Decode ``{"choice": {gene: option index}}`` into a choice of the space."""
    enc = params.get("choice")
    if not isinstance(enc, Mapping):
        raise SpecError(f"trial parameters need a 'choice' mapping of gene -> option index, got {dict(params)}")
    try:
        return space.decode([enc[d.name] for d in space.dims])
    except KeyError as e:
        raise SpecError(f"trial parameters lack gene {e.args[0]!r} of space {space.name!r}") from None


@register("train")
class TrainEvaluator(Evaluator):
    """Build the choice, train it briefly with the config's recipe, measure val/test top-1 accuracy."""

    reports = ("val_acc", "test_acc", "train_time_s", "final_loss", "epochs", "resolution", *LM_REPORTS)

    def evaluate(self, params: Mapping[str, Any], ctx: TrialContext) -> Evaluation:
        import torch  # heavy libraries, deferred: see the module doc

        from hwsearch.lm_eval import is_sequence, lm_metrics  # torch, deferred likewise
        from hwsearch.train import train_and_evaluate  # torch, deferred likewise

        ev = ctx.config.evaluation
        choice = choice_from_params(ctx.space, params)
        channels = ctx.space.input_shape(choice)[0]
        resolution = ctx.space.data_resolution(choice)
        if channels != ctx.data.channels:
            raise SpecError(f"space expects {channels} input channels but the data has {ctx.data.channels}")
        torch.manual_seed(ev.seed)  # same choice, same initial weights
        model = ctx.space.build(choice)
        recipe = ev.recipe.model_copy(update={"threads": ev.recipe.threads or ctx.threads})
        result = train_and_evaluate(model, ctx.data, epochs=ev.epochs, seed=ev.seed, recipe=recipe,
                                    resolution=resolution)
        metrics = {
            "val_acc": result.val_acc, "test_acc": result.test_acc, "train_time_s": result.train_time_s,
            "final_loss": result.final_loss, "epochs": float(result.epochs), "resolution": float(resolution),
        }
        data = ctx.data.at_resolution(resolution)
        if is_sequence(data):
            metrics.update(lm_metrics(model, data, batch_size=recipe.eval_batch_size))
        return Evaluation(choice=choice, netspec=ctx.space.to_netspec(choice), metrics=metrics,
                          model=model.cpu().eval(), documents={"training": result.to_dict()})


__all__ = ["EVALUATORS", "LM_REPORTS", "EvaluatorPlugin", "Evaluation", "Evaluator", "SavedTrial", "TrialContext",
           "build_space", "cached_data", "choice_from_params", "get", "names", "register"]
