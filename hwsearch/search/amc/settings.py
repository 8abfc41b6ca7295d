"""Settings of the AMC/HAQ agent: the agent's own (`AgentConfig`) and the searchers' (``searcher.settings``).

One definition per setting: `CompressionSettings` takes the agent's defaults from `AgentConfig`, so a
config, a direct library call and the NAAS refinement start from the same numbers. Kept free of torch
and stable-baselines3, because validating a config imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hwsearch.errors import ConfigError

ALGO_NAMES = ("ddpg", "td3", "sac")


@dataclass(frozen=True)
class AgentConfig:
    """Agent settings; the defaults follow AMC's DDPG, shrunk for networks of tens of layers."""

    algo: str = "ddpg"
    warmup_episodes: int = 10   # AMC/HAQ engine runs (configs/amc.yaml, haq.yaml) use this
    sigma: float = 0.5          # initial std of the truncated-normal exploration noise (action units / 2)
    sigma_decay: float = 0.95   # per episode after warm-up
    min_sigma: float = 0.02
    hidden: tuple[int, ...] = (64, 64)
    lr: float = 1e-3            # actor and critic (SB3 schedules both from one rate)
    gamma: float = 1.0          # AMC's discount: the only reward arrives at the episode's end
    tau: float = 0.01
    batch_size: int = 64
    updates_per_episode: int = 32  # gradient steps after each episode
    imitation_steps: int = 50   # actor steps towards the best episode after each update (0: plain DDPG)
    buffer_episodes: int = 2000
    scan_share: float = 0.0     # share of `search`'s evaluations spent first on a sensitivity scan (0: AMC's)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.algo not in ALGO_NAMES:
            raise ConfigError(f"agent algo={self.algo!r} is unknown; use one of {', '.join(ALGO_NAMES)}")
        if self.warmup_episodes < 0 or self.imitation_steps < 0:
            raise ConfigError(f"warmup_episodes={self.warmup_episodes} and imitation_steps={self.imitation_steps} "
                              "must be >= 0")
        if not 0 <= self.scan_share < 1:
            raise ConfigError(f"scan_share={self.scan_share} must be in [0, 1): the agent needs evaluations of its own")
        if not 0 < self.sigma_decay <= 1 or self.sigma < 0:
            raise ConfigError(f"sigma={self.sigma} must be >= 0 and sigma_decay={self.sigma_decay} in (0, 1]")
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


class CompressionSettings(BaseModel):
    """Settings of the ``amc`` / ``haq`` searchers (``searcher.settings`` in the config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    network: str | dict[str, Any] = Field("largest", description="reference name or choice of the space")
    mode: Literal["amc", "haq", "joint"] = "amc"
    metric: str = Field("macs", description="budget metric: macs, params, model_size, avg_w_bits, bitops, "
                                            "latency, energy")
    budgets: list[float] = Field(default_factory=lambda: [0.5], min_length=1,
                                 description="one trial per budget: ratios of the uncompressed network, "
                                             "or absolute values with absolute: true")
    absolute: bool = False
    accelerator: str | None = Field(None, description="accelerator preset pricing latency/energy budgets")
    episodes: int = Field(40, ge=1, description="policies the agent evaluates (warm-up included)")
    warmup_episodes: int = Field(_AGENT.warmup_episodes, ge=0)
    scan_evaluations: int = Field(0, ge=0, description="policies evaluated first by a per-layer sensitivity scan, "
                                                        "replayed as a demonstration (0: AMC's agent alone)")
    algo: Literal["ddpg", "td3", "sac"] = _AGENT.algo
    sigma: float = Field(_AGENT.sigma, ge=0)
    sigma_decay: float = Field(_AGENT.sigma_decay, gt=0, le=1)
    updates_per_episode: int = Field(_AGENT.updates_per_episode, ge=1)
    imitation_steps: int = Field(_AGENT.imitation_steps, ge=0, description="actor steps towards the best policy after each update "
                                                         "(self-imitation; 0: plain DDPG)")
    max_sparsity: float = Field(0.8, ge=0, lt=1)
    round_to: int = Field(8, ge=1)
    min_bits: int = Field(2, ge=1, le=8)
    max_bits: int = Field(8, ge=1, le=8)
    fixed_a_bits: int | None = Field(None, description="keep activations at this width (32: float)")
    val_samples: int | None = Field(256, ge=1, description="validation images behind each reward")
    calib_samples: int = Field(128, ge=1, description="training images re-estimating BatchNorm")
    finetune_epochs: int = Field(0, ge=0, description="fine-tune the chosen policy before the final test")
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

    mode: Literal["amc", "haq", "joint"] = "haq"
    metric: str = "avg_w_bits"
    budgets: list[float] = Field(default_factory=lambda: [4.0], min_length=1)
    absolute: bool = True
    fixed_a_bits: int | None = 32


# The metrics the evaluator reports: the config checks its objectives and constraints against them.
COMPRESSION_REPORTS = ("search_val_acc", "val_acc_before_finetune", "test_acc_before_finetune", "base_val_acc",
               "base_test_acc", "budget_limit", "budget_cost", "budget_ratio", "episodes", "best_episode",
               "resumed_at_episode", "val_acc", "test_acc")


__all__ = ["COMPRESSION_REPORTS", "ALGO_NAMES", "AgentConfig", "CompressionSettings", "HaqSettings"]
