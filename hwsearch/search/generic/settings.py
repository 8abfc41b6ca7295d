"""Settings of the random and Optuna searchers (``searcher.settings``).

Apart from the searchers, which import Ray and Optuna, so that validating a config imports neither.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class RandomSettings(BaseModel):
    """Settings of the random searcher."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_redraws: int = Field(1000, ge=0, description="draws spent looking for an unseen choice")


class OptunaSettings(BaseModel):
    """Settings of the Optuna searcher."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sampler: Literal["auto", "tpe", "nsga2", "random"] = Field(
        "auto", description="auto: TPE for one objective, NSGA-II for several")
    n_startup_trials: int = Field(4, ge=0, description="TPE: random trials before modelling")
    population_size: int = Field(8, ge=2, description="NSGA-II population")


__all__ = ["OptunaSettings", "RandomSettings"]
