"""The AMC/HAQ pipeline in one place: the environment under a budget, its pricer, and the agent.

The ``compression`` evaluator and NAAS refinement both build theirs here, so the two cannot drift
apart: a latency or energy budget is priced by the accelerator model (`accelerator_pricer`), policies
the caller already knows are recorded before the agent exists, and the agent is built (or resumed)
around that environment.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hwsearch.hwmodel import Accelerator
from hwsearch.search.amc.agent import CompressionAgent
from hwsearch.search.amc.budget import PREDICTED_METRICS, State, accelerator_pricer
from hwsearch.search.amc.env import CompressionEnv, CompressionProblem
from hwsearch.search.amc.settings import AgentConfig, EnvConfig


@dataclass
class Pipeline:
    """An environment and the agent that walks it (None when no agent was asked for)."""

    env: CompressionEnv
    agent: CompressionAgent | None


def build_pipeline(problem: CompressionProblem, env_config: EnvConfig, agent_config: AgentConfig | None, *,
                   accelerator: Accelerator | None = None, units: str = "s_pj",
                   reference_accuracy: float | None = None,
                   known: Callable[[CompressionEnv], Iterable[tuple[State, str]]] | None = None,
                   resume: Callable[[CompressionEnv], CompressionAgent | None] | None = None) -> Pipeline:
    """The environment over ``problem`` under ``env_config``'s budget, and its agent.

    ``accelerator`` prices a latency / energy budget in ``units`` (see `accelerator_pricer`); other
    budgets need none. ``known(env)`` gives (state, source) pairs evaluated into the history first. ``resume``
    may return an agent restored around the environment; otherwise a new one is built from
    ``agent_config``, or none when that is None."""
    predictor = None
    if accelerator is not None and env_config.budget.metric in PREDICTED_METRICS:
        predictor = accelerator_pricer(accelerator, units)
    env = CompressionEnv(problem, env_config, predictor=predictor, reference_accuracy=reference_accuracy)
    for state, source in known(env) if known is not None else ():
        env.record(state, source)
    agent = resume(env) if resume is not None else None
    if agent is None and agent_config is not None:
        agent = CompressionAgent(env, agent_config)
    return Pipeline(env, agent)


__all__ = ["Pipeline", "build_pipeline"]
