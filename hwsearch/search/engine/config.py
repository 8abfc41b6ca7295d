"""The experiment config: one YAML file, validated by pydantic, overridable with ``--set key.path=value``.

Sections: ``name``, ``space``, ``data``, ``objectives`` (metric + min/max, the first is primary),
``constraints`` (``"macs <= 20e6"``), ``searcher`` (``name``, ``seed`` and the searcher's own
``settings``, validated by the model the searcher registered), ``evaluation`` (evaluator, epochs,
seed, training recipe, the supernet evaluator's schedule), ``metrics`` (metric providers to run on each trial's NetSpec), ``hardware``
(free-form settings read by hardware metric providers), ``budget``, ``ray`` and ``output``.
Every validation failure becomes a `ConfigError` naming the field and the reason.
"""

from __future__ import annotations

import copy
import fnmatch
import math
import operator
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from hwsearch import spaces, supernet_schedules
from hwsearch.errors import ConfigError
from hwsearch.recipe import Recipe
from hwsearch.search.engine import evaluators, metrics, searchers

CONFIG_VERSION = 1
_CONSTRAINT = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(<=|>=|<|>|==)\s*([-+0-9.eE_]+)\s*$")
_OPS = {"<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt, "==": operator.eq}


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Objective(_Section):
    """One metric to optimise."""

    metric: str
    mode: Literal["min", "max"]


class Constraint(_Section):
    """``metric op bound``; a trial that breaks one is infeasible (kept, but never best or Pareto)."""

    metric: str
    op: Literal["<=", ">=", "<", ">", "=="]
    bound: float

    @classmethod
    def parse(cls, text: str) -> Constraint:
        """Read ``"macs <= 20e6"``."""
        m = _CONSTRAINT.match(str(text))
        if not m:
            raise ValueError(f"constraint {text!r} must read 'METRIC OP NUMBER' with OP one of <=, >=, <, >, ==")
        return cls(metric=m.group(1), op=m.group(2), bound=float(m.group(3)))

    def holds(self, metrics: dict[str, Any]) -> bool:
        """Whether ``metrics`` satisfy the constraint (a missing or NaN metric does not)."""
        v = metrics.get(self.metric)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return False
        return bool(_OPS[self.op](float(v), self.bound))

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"


class SpaceConfig(_Section):
    """Which search space, and keyword arguments for it (``in_channels``/``num_classes`` come from data)."""

    name: str = "ofa-mbv3"
    options: dict[str, Any] = Field(default_factory=dict)


class DataConfig(_Section):
    """Data source (``digits``, ``npz:PATH``, ``imagefolder:PATH``, ``cifar10[:PATH][?options]``) and the seed of its split."""

    source: str = "digits"
    seed: int = 0


class SearcherConfig(_Section):
    """Searcher name, its seed and its own settings (validated by the searcher's settings model)."""

    name: str = "random"
    seed: int = 0
    settings: dict[str, Any] = Field(default_factory=dict)


class EvaluationConfig(_Section):
    """How a trial turns a candidate into metrics."""

    evaluator: str = "train"
    epochs: int = Field(3, ge=0)
    seed: int = 0
    recipe: Recipe = Field(default_factory=Recipe)
    schedule: str = Field("fast", description="the supernet evaluator's progressive-shrinking preset "
                                              "(fast, default, cifar10-cpu, cifar10-gpu, tiny)")

    @field_validator("schedule")
    @classmethod
    def _known_schedule(cls, v: str) -> str:
        return supernet_schedules.check_name(v)


class BudgetConfig(_Section):
    """When the search stops: after ``trials`` trials or ``time_s`` seconds, whichever comes first."""

    trials: int = Field(8, ge=1)
    time_s: float | None = Field(None, gt=0)


class RayConfig(_Section):
    """Where trials run, how many at once, and how often a failed trial is restarted."""

    address: str | None = Field(None, description="Ray cluster address (HOST:PORT or auto); none: a local Ray "
                                                   "on loopback. A cluster with token authentication needs "
                                                   "RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) set, see docs/cluster.md")
    workers: int = Field(2, ge=1, description="trials running at the same time")
    cpus_per_trial: float = Field(1.0, gt=0)
    gpus_per_trial: float = Field(0.0, ge=0)
    max_failures: int = Field(0, ge=-1, description="times Tune restarts a trial from scratch after it failed "
                                                     "(its node was lost, its worker died, or it raised) before "
                                                     "recording it failed; -1: without limit. 0 records the "
                                                     "first failure; on a cluster whose nodes may go away, 2 or "
                                                     "3 lets a lost node's trials run again elsewhere")


class OutputConfig(_Section):
    """Where run directories go (``<root>/<name>/``)."""

    root: str = "runs"


class ExperimentConfig(_Section):
    """A whole experiment."""

    version: int = CONFIG_VERSION
    name: str = "experiment"
    space: SpaceConfig = Field(default_factory=SpaceConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    objectives: tuple[Objective, ...] = (Objective(metric="val_acc", mode="max"),)
    constraints: tuple[Constraint, ...] = ()
    searcher: SearcherConfig = Field(default_factory=SearcherConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    metrics: tuple[str, ...] = ("netspec",)
    hardware: dict[str, Any] = Field(default_factory=dict)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @field_validator("name")
    @classmethod
    def _name_is_a_folder_name(cls, v: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9][\w.-]*", v):
            raise ValueError(f"{v!r} must be a folder name: letters, digits, '_', '-', '.'")
        return v

    @field_validator("version")
    @classmethod
    def _known_version(cls, v: int) -> int:
        if v != CONFIG_VERSION:
            raise ValueError(f"config version {v} is not supported; this hwsearch reads version {CONFIG_VERSION}")
        return v

    @field_validator("constraints", mode="before")
    @classmethod
    def _parse_constraints(cls, v: Any) -> Any:
        if isinstance(v, (list, tuple)):
            return tuple(Constraint.parse(c) if isinstance(c, str) else c for c in v)
        return v

    @field_validator("objectives")
    @classmethod
    def _objectives_distinct(cls, v: tuple[Objective, ...]) -> tuple[Objective, ...]:
        if not v:
            raise ValueError("at least one objective is needed")
        names = [o.metric for o in v]
        if len(set(names)) != len(names):
            raise ValueError(f"objective metrics must be distinct, got {names}")
        return v

    @model_validator(mode="after")
    def _names_are_registered(self) -> ExperimentConfig:
        if self.space.name not in spaces.names():
            raise ValueError(f"space.name {self.space.name!r} is unknown; known: {', '.join(spaces.names())}")
        if self.evaluation.evaluator not in evaluators.names():
            raise ValueError(f"evaluation.evaluator {self.evaluation.evaluator!r} is unknown; "
                             f"known: {', '.join(evaluators.names())}")
        for m in self.metrics:
            if m not in metrics.names():
                raise ValueError(f"metrics: provider {m!r} is unknown; known: {', '.join(metrics.names())}")
        searchers.validate_settings(self.searcher.name, self.searcher.settings)
        self._metrics_are_reported(evaluators.EVALUATORS.get(self.evaluation.evaluator).reports,
                                   metrics.reported(self.metrics) + metrics.TRIAL_METRICS)
        return self

    def _metrics_are_reported(self, evaluator: tuple[str, ...], providers: tuple[str, ...]) -> None:
        """Every objective and constraint names a metric the evaluator or a listed provider reports."""
        if not evaluator:  # a plug-in evaluator that does not declare its metrics: checked per trial only
            return
        known = evaluator + providers
        for what, name in [("objectives", o.metric) for o in self.objectives] + \
                          [("constraints", c.metric) for c in self.constraints]:
            if not any(fnmatch.fnmatchcase(name, k) for k in known):
                raise ValueError(f"{what}: metric {name!r} is reported by neither evaluator "
                                 f"{self.evaluation.evaluator!r} nor the metric providers {list(self.metrics)}; "
                                 f"known: {', '.join(sorted(set(known)))}")

    @property
    def primary(self) -> Objective:
        """The first objective: what 'best' means."""
        return self.objectives[0]

    def feasible(self, metrics: dict[str, Any]) -> bool:
        """Whether every constraint holds for ``metrics``."""
        return all(c.holds(metrics) for c in self.constraints)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict as written to ``config.yaml`` (constraints as text)."""
        d = self.model_dump(mode="json")
        d["constraints"] = [str(c) for c in self.constraints]
        return d

    def to_yaml(self) -> str:
        """The resolved config as YAML."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _format_error(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:3]:
        where = ".".join(str(p) for p in err["loc"]) or "config"
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{where}: {msg}")
    more = len(e.errors()) - 3
    return "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")


def apply_override(raw: dict[str, Any], assignment: str) -> dict[str, Any]:
    """A copy of ``raw`` with ``key.path=value`` applied (value read as YAML: 4, 1e-3, [a, b], true)."""
    key, sep, text = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {assignment!r} must read KEY.PATH=VALUE, e.g. budget.trials=4")
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {key}: value {text!r} is not valid YAML ({e.__class__.__name__})") from None
    out = copy.deepcopy(raw)
    node = out
    parts = key.split(".")
    for i, part in enumerate(parts[:-1]):
        nxt = node.get(part)
        if nxt is None:
            nxt = node[part] = {}
        if not isinstance(nxt, dict):
            raise ConfigError(f"--set {key}: {'.'.join(parts[:i + 1])} is not a section")
        node = nxt
    node[parts[-1]] = value
    return out


def parse_config(raw: Any, overrides: list[str] | tuple[str, ...] = (), where: str = "config") -> ExperimentConfig:
    """Validate a dict (from YAML) after applying ``--set`` overrides."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: the top level must be a mapping of sections, got {type(raw).__name__}")
    for assignment in overrides:
        raw = apply_override(raw, assignment)
    try:
        return ExperimentConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{where}: {_format_error(e)}") from None
    except ConfigError as e:
        raise ConfigError(f"{where}: {e}") from None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    """Read and validate a YAML experiment config (``None``: the default config)."""
    path = Path(path) if path is not None else default_config_path()
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{at}") from None
    if raw is None:  # an empty file is a mistake, not a request for every default
        raise ConfigError(f"config file {path} is empty; start from configs/default.yaml or give no CONFIG "
                          "to run the default experiment")
    return parse_config(raw, overrides, where=str(path))


def default_config_path() -> Path:
    """``configs/default.yaml`` of the checkout, or the copy packaged inside hwsearch."""
    package = Path(__file__).resolve().parents[2]  # hwsearch/search/engine/config.py -> hwsearch/
    checkout = package.parent / "configs" / "default.yaml"
    if checkout.is_file():
        return checkout
    return package / "configs" / "default.yaml"


__all__ = ["CONFIG_VERSION", "BudgetConfig", "Constraint", "DataConfig", "EvaluationConfig", "ExperimentConfig",
           "Objective", "OutputConfig", "RayConfig", "SearcherConfig", "SpaceConfig", "apply_override",
           "default_config_path", "load_config", "parse_config"]
