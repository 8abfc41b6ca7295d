"""AMC/HAQ: an RL agent choosing per-layer pruning and bit-widths under a budget.

`budget` prices a policy, `env` walks the layers as a gymnasium episode, `problem` applies a policy to
a trained torch network, `agent` learns (DDPG/TD3/SAC), `baselines` are the non-learning comparisons,
`trained_cache` trains the base network once, `settings` holds the settings, `pipeline` builds the
environment, pricer and agent for the ``compression`` evaluator and NAAS refinement, and `plugin` hooks the
agent into the engine (searchers ``amc``/``haq``, evaluator ``compression``).

Public names load on first use (`hwsearch.registry.lazy_exports`): a config check stays light.
"""

from __future__ import annotations

from hwsearch.registry import lazy_exports

_EXPORTS = {
    "ALGOS": "agent",
    "AgentConfig": "settings",
    "AmcDDPG": "agent",
    "AmcTD3": "agent",
    "CompressionAgent": "agent",
    "EpisodeRewardBuffer": "agent",
    "BASELINES": "baselines",
    "register": "baselines",
    "run_baseline": "baselines",
    "sensitivity_levels": "baselines",
    "Budget": "budget",
    "BudgetClipper": "budget",
    "ClipResult": "budget",
    "CostPredictor": "budget",
    "FilledTable": "budget",
    "PRICER_UNITS": "budget",
    "accelerator_pricer": "budget",
    "METRICS": "budget",
    "PREDICTED_METRICS": "budget",
    "State": "budget",
    "cost_function": "budget",
    "metric_names": "budget",
    "CompressionEnv": "env",
    "CompressionProblem": "env",
    "EnvConfig": "settings",
    "Episode": "env",
    "FLOAT_BITS": "settings",
    "KNOBS": "settings",
    "MODES": "settings",
    "OP_TYPES": "env",
    "Slot": "env",
    "channel_options": "env",
    "knob_grid": "env",
    "Pipeline": "pipeline",
    "build_pipeline": "pipeline",
    "CompressionEvaluator": "plugin",
    "CompressionSearcher": "plugin",
    "CompressionSettings": "plugin",
    "HaqSettings": "plugin",
    "PriceTemplate": "problem",
    "TorchProblem": "problem",
    "derive_template": "problem",
    "recalibrate_batchnorm": "problem",
    "ALGO_NAMES": "settings",
    "COMPRESSION_REPORTS": "settings",
    "TrainedNetwork": "trained_cache",
    "cache_dir": "trained_cache",
    "trained_network": "trained_cache",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
