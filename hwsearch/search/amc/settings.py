"""Settings of the AMC/HAQ environment (`EnvConfig`), agent (`AgentConfig`) and searchers (``searcher.settings``).

One definition per setting: each bounded setting's type (with its bounds) is written once below and
annotates both the dataclass a library call builds and the pydantic field a config is validated
against, and `CompressionSettings` takes its defaults from the dataclasses, so a config, a direct
library call and the NAAS refinement start from the same numbers and refuse the same values. Kept
free of torch and stable-baselines3, because validating a config imports it.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Annotated, Any, Literal, get_args, get_origin, get_type_hints

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from hwsearch.errors import ConfigError
from hwsearch.search.amc.budget import Budget
from hwsearch.search.engine.evaluators import LM_REPORTS

# ``attention``: percent of an attention block's map a static mask keeps, decided on the block's qkv layer
KNOBS = ("keep", "w_bits", "a_bits", "attention")
MODES: dict[str, tuple[str, ...]] = {"amc": ("keep",), "haq": ("w_bits", "a_bits"), "joint": ("keep", "w_bits", "a_bits"),
                                     "attention": ("attention",)}
ATTENTION_STEP = 5  # percent between the attention densities the agent may choose
FLOAT_BITS = 32


def _fixed_width(v: int | None) -> int | None:
    if v is not None and not (1 <= v <= 8 or v == FLOAT_BITS):
        raise ValueError(f"must be 1..8 or {FLOAT_BITS} (float), not {v}")
    return v


Algo = Literal["ddpg", "td3", "sac"]
ALGO_NAMES: tuple[str, ...] = get_args(Algo)
Mode = Literal["amc", "haq", "joint", "attention"]  # the keys of MODES
Episodes = Annotated[int, Field(ge=0)]
Sigma = Annotated[float, Field(ge=0)]
SigmaDecay = Annotated[float, Field(gt=0, le=1)]
Updates = Annotated[int, Field(ge=1)]
Share = Annotated[float, Field(ge=0, lt=1)]
Sparsity = Annotated[float, Field(ge=0, lt=1)]
RoundTo = Annotated[int, Field(ge=1)]
Bits = Annotated[int, Field(ge=1, le=8)]
FixedBits = Annotated[int | None, AfterValidator(_fixed_width)]


@functools.cache
def _checks(cls: type) -> dict[str, TypeAdapter]:
    hints = get_type_hints(cls, include_extras=True)
    return {f.name: TypeAdapter(hints[f.name]) for f in fields(cls)
            if get_origin(hints[f.name]) in (Annotated, Literal)}


def _check(obj: Any, what: str) -> None:
    """Validate a settings dataclass's bounded fields against their annotated types, as `ConfigError`."""
    for name, adapter in _checks(type(obj)).items():
        value = getattr(obj, name)
        try:
            object.__setattr__(obj, name, adapter.validate_python(value))
        except ValidationError as e:
            raise ConfigError(f"{what} {name}={value!r}: {e.errors()[0]['msg']}") from None


@dataclass(frozen=True)
class EnvConfig:
    """What the environment searches and under which budget."""

    mode: Mode = "amc"
    budget: Budget = field(default_factory=lambda: Budget("macs", ratio=0.5))
    max_sparsity: Sparsity = 0.8
    round_to: RoundTo = 8
    min_bits: Bits = 2
    max_bits: Bits = 8
    fixed_a_bits: FixedBits = None  # set: activations stay at this width and are not searched
    fixed_w_bits: FixedBits = None  # in amc mode: weights stay at this width (None: float)
    attention: bool = False  # also decide each attention block's map density (any mode)
    max_attention_sparsity: Sparsity = 0.8  # the most of an attention map a mask may remove

    def __post_init__(self) -> None:
        _check(self, "environment")
        if self.min_bits > self.max_bits:
            raise ConfigError(f"bits range {self.min_bits}..{self.max_bits} must satisfy 1 <= min <= max <= 8")

    @property
    def knobs(self) -> tuple[str, ...]:
        """Knobs the action controls, in action order."""
        knobs = MODES[self.mode]
        if self.fixed_a_bits is not None:
            knobs = tuple(k for k in knobs if k != "a_bits")
        if self.attention and "attention" not in knobs:
            knobs = (*knobs, "attention")
        return knobs

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {"mode": self.mode, "budget": self.budget.to_dict(), "max_sparsity": self.max_sparsity,
                "round_to": self.round_to, "min_bits": self.min_bits, "max_bits": self.max_bits,
                "fixed_a_bits": self.fixed_a_bits, "fixed_w_bits": self.fixed_w_bits, "attention": self.attention,
                "max_attention_sparsity": self.max_attention_sparsity}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EnvConfig:
        """Inverse of `to_dict`; unknown keys are an error."""
        known = set(cls.__dataclass_fields__)
        extra = set(d) - known
        if extra:
            raise ConfigError(f"unknown environment key(s) {sorted(extra)}; known: {sorted(known)}")
        kw = dict(d)
        if isinstance(kw.get("budget"), Mapping):
            kw["budget"] = Budget.from_dict(kw["budget"])
        return cls(**kw)


@dataclass(frozen=True)
class AgentConfig:
    """Agent settings; the defaults follow AMC's DDPG, shrunk for networks of tens of layers."""

    algo: Algo = "ddpg"
    warmup_episodes: Episodes = 10   # AMC/HAQ engine runs (configs/amc.yaml, haq.yaml) use this
    sigma: Sigma = 0.5          # initial std of the truncated-normal exploration noise (action units / 2)
    sigma_decay: SigmaDecay = 0.95   # per episode after warm-up
    min_sigma: float = 0.02
    hidden: tuple[int, ...] = (64, 64)
    lr: float = 1e-3            # actor and critic (SB3 schedules both from one rate)
    gamma: float = 1.0          # AMC's discount: the only reward arrives at the episode's end
    tau: float = 0.01
    batch_size: int = 64
    updates_per_episode: Updates = 32  # gradient steps after each episode
    imitation_steps: Episodes = 50   # actor steps towards the best episode after each update (0: plain DDPG)
    buffer_episodes: int = 2000
    scan_share: Share = 0.0     # share of `search`'s evaluations spent first on a sensitivity scan (0: AMC's)
    seed: int = 0

    def __post_init__(self) -> None:
        _check(self, "agent")
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> AgentConfig:
        """Inverse of `to_dict`; unknown keys are an error."""
        extra = set(d) - set(cls.__dataclass_fields__)
        if extra:
            raise ConfigError(f"unknown agent key(s) {sorted(extra)}; known: {sorted(cls.__dataclass_fields__)}")
        return cls(**d)


_AGENT = AgentConfig()
_ENV = EnvConfig()


class CompressionSettings(BaseModel):
    """Settings of the ``amc`` / ``haq`` searchers (``searcher.settings`` in the config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    network: str | dict[str, Any] = Field("largest", description="reference name or choice of the space")
    mode: Mode = _ENV.mode
    metric: str = Field("macs", description="budget metric: macs, params, model_size, avg_w_bits, bitops, "
                                            "latency, energy")
    budgets: list[float] = Field(default_factory=lambda: [0.5], min_length=1,
                                 description="one trial per budget: ratios of the uncompressed network, "
                                             "or absolute values with absolute: true")
    absolute: bool = False
    accelerator: str | None = Field(None, description="accelerator preset pricing latency/energy budgets")
    episodes: int = Field(40, ge=1, description="policies the agent evaluates (warm-up included)")
    warmup_episodes: Episodes = _AGENT.warmup_episodes
    scan_evaluations: int = Field(0, ge=0, description="policies evaluated first by a per-layer sensitivity scan, "
                                                        "replayed as a demonstration (0: AMC's agent alone)")
    algo: Algo = _AGENT.algo
    sigma: Sigma = _AGENT.sigma
    sigma_decay: SigmaDecay = _AGENT.sigma_decay
    updates_per_episode: Updates = _AGENT.updates_per_episode
    imitation_steps: Episodes = Field(_AGENT.imitation_steps, description="actor steps towards the best policy "
                                                                          "after each update (self-imitation; 0: plain DDPG)")
    max_sparsity: Sparsity = _ENV.max_sparsity
    round_to: RoundTo = _ENV.round_to
    min_bits: Bits = _ENV.min_bits
    max_bits: Bits = _ENV.max_bits
    fixed_a_bits: FixedBits = Field(_ENV.fixed_a_bits, description="keep activations at this width (32: float)")
    attention: bool = Field(_ENV.attention, description="also decide each attention block's static attention "
                                                        "density (transformers; any mode)")
    max_attention_sparsity: Sparsity = Field(_ENV.max_attention_sparsity, description="the most of an attention "
                                                                                      "map a static mask may remove")
    val_samples: int | None = Field(256, ge=1, description="validation images behind each reward")
    calib_samples: int = Field(128, ge=1, description="training images re-estimating BatchNorm")
    finetune_epochs: int = Field(0, ge=0, description="most epochs of final training of the chosen policy before "
                                                      "the final test (0: none)")
    finetune_patience: int | None = Field(3, ge=1, description="final training stops after this many epochs "
                                                               "without a better validation accuracy (None: never)")
    finetune_kd_ratio: float = Field(1.0, ge=0, description="weight of distillation from the uncompressed network "
                                                            "in final training (0: labels only)")
    checkpoint_every: int = Field(5, ge=1, description="episodes between agent checkpoints")

    @model_validator(mode="after")
    def _warmup_fits(self) -> CompressionSettings:
        if self.warmup_episodes > self.episodes:
            raise ValueError(f"warmup_episodes={self.warmup_episodes} exceeds episodes={self.episodes}")
        return self

    def budget(self, value: float) -> dict[str, Any]:
        """The `Budget` dict of one entry of ``budgets``."""
        return {"metric": self.metric, "ratio": None if self.absolute else value,
                "value": value if self.absolute else None}


class HaqSettings(CompressionSettings):
    """HAQ's defaults: weight bits under a 4-bit average, float activations."""

    mode: Mode = "haq"
    metric: str = "avg_w_bits"
    budgets: list[float] = Field(default_factory=lambda: [4.0], min_length=1)
    absolute: bool = True
    fixed_a_bits: FixedBits = 32


# The metrics the evaluator reports: the config checks its objectives and constraints against them. A
# language model reports ``search_val_loss`` (the best policy's, on the reward's windows) in place of
# ``search_val_acc``, its loss and perplexity before fine-tuning and those of the uncompressed network.
COMPRESSION_REPORTS = ("search_val_acc", "val_acc_before_finetune", "test_acc_before_finetune", "base_val_acc",
               "base_test_acc", "budget_limit", "budget_cost", "budget_ratio", "episodes", "best_episode",
               "resumed_at_episode", "val_acc", "test_acc", "finetune_epochs_run", *LM_REPORTS,
               "search_val_loss", "val_perplexity_before_finetune", "test_perplexity_before_finetune",
               "base_val_perplexity", "base_test_perplexity")


__all__ = ["ATTENTION_STEP", "COMPRESSION_REPORTS", "ALGO_NAMES", "AgentConfig", "CompressionSettings", "EnvConfig", "FLOAT_BITS", "HaqSettings",
           "KNOBS", "MODES"]
