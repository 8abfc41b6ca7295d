"""The AMC/HAQ agent as a searcher of the engine: one Ray Tune trial per budget, one agent per trial.

Searchers ``amc`` (pruning), ``haq`` (bit-widths) and the ``compression`` evaluator. The searcher
proposes one trial per entry of ``settings.budgets`` (so a run over several budgets gives a front
across them); the trial trains the base network once (cached), lets one agent play ``episodes``
policies under that budget, applies the best one with `hwsearch.compress.apply_policy`, optionally
fine-tunes it, and reports accuracies before (and after) fine-tuning; a language model (a `gpt` on
text) is rewarded by minus the log of its perplexity and reports its loss and perplexity besides.
Every ``checkpoint_every`` episodes the agent, its replay buffer and the evaluated policies go into a
Tune checkpoint, so ``hwsearch run --resume`` continues an interrupted agent instead of starting it over.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from hwsearch.errors import ConfigError
from hwsearch.hwmodel import Accelerator
from hwsearch.io import atomic_write_text
from hwsearch.search.amc.budget import PREDICTED_METRICS, Budget
from hwsearch.search.amc.settings import (
    COMPRESSION_REPORTS,
    AgentConfig,
    CompressionSettings,
    EnvConfig,
    HaqSettings,
)
from hwsearch.search.engine.evaluators import Evaluation, Evaluator, SavedTrial, TrialContext
from hwsearch.search.engine.searchers import SearchContext
from hwsearch.spaces.base import input_resolution


class CompressionSearcher(Searcher):
    """Proposes one trial per budget, in order; its state (which trial got which budget) is JSON."""

    def __init__(self, settings: CompressionSettings) -> None:
        super().__init__(metric=None, mode=None)
        self.settings = settings
        self.proposed: dict[str, int] = {}

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """The next budget's trial, or FINISHED once every budget has one."""
        if trial_id not in self.proposed:
            if len(self.proposed) >= len(self.settings.budgets):
                return Searcher.FINISHED
            self.proposed[trial_id] = len(self.proposed)
        i = self.proposed[trial_id]
        return {"compression": {"budget_index": i, "budget": self.settings.budget(self.settings.budgets[i]),
                                "settings": self.settings.model_dump()}}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Budgets are fixed in advance: nothing to learn from a result."""

    def save(self, checkpoint_path: str) -> None:
        """Write the state as JSON."""
        atomic_write_text(checkpoint_path, json.dumps({"kind": "compression", "proposed": self.proposed,
                                                       "settings": self.settings.model_dump()}))

    def restore(self, checkpoint_path: str) -> None:
        """Read the state written by `save`."""
        with open(checkpoint_path) as f:
            state = json.load(f)
        self.proposed = {str(k): int(v) for k, v in state["proposed"].items()}
        self.settings = type(self.settings).model_validate(state["settings"])


def amc_searcher(ctx: SearchContext) -> CompressionSearcher:
    """AMC: channel pruning per layer under a MACs (or other) budget, one agent per budget."""
    return CompressionSearcher(ctx.settings)


def haq_searcher(ctx: SearchContext) -> CompressionSearcher:
    """HAQ: bit-width per layer under an average-bits, size or hardware budget, one agent per budget."""
    return CompressionSearcher(ctx.settings)


def _tune_session() -> Any:
    """Ray Tune's context when running inside a trial, else None (direct calls, tests)."""
    try:
        from ray import tune

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Ray warns when asked outside a trial, which is the question
            ctx = tune.get_context()
            return ctx if ctx.get_trial_id() else None
    except Exception:  # noqa: BLE001 - outside a Ray session the context raises or is empty
        return None


def _accelerator(settings: CompressionSettings) -> Any:
    """The accelerator pricing a latency / energy budget (None for the analytic budgets)."""
    if settings.metric not in PREDICTED_METRICS:
        return None
    if not settings.accelerator:
        raise ConfigError(f"searcher.settings.accelerator must name a preset for a {settings.metric} budget")
    return Accelerator.preset(settings.accelerator)


class CompressionEvaluator(Evaluator):
    """Run one AMC/HAQ agent on a trained network for the budget the searcher proposed."""

    name = "compression"
    reports = COMPRESSION_REPORTS

    def evaluate(self, params: Mapping[str, Any], ctx: TrialContext) -> Evaluation:
        # deferred: torch and stable-baselines3 load in the trial's worker, not on the driver that runs the searcher
        import torch

        from hwsearch.compress import compressed_netspec, final_recipe, fine_tune
        from hwsearch.lm_eval import is_sequence, lm_metrics
        from hwsearch.search.amc.pipeline import build_pipeline
        from hwsearch.search.amc.problem import TorchProblem
        from hwsearch.search.amc.trained_cache import trained_network
        from hwsearch.train import evaluate

        spec = params.get("compression")
        if not isinstance(spec, Mapping):
            raise ConfigError("the compression evaluator needs the amc or haq searcher (trial parameters "
                              f"have no 'compression' entry: {sorted(params)})")
        s = CompressionSettings.model_validate(spec["settings"])
        cfg = ctx.config
        torch.set_num_threads(ctx.threads)
        recipe = cfg.evaluation.recipe.model_copy(update={"epochs": cfg.evaluation.epochs})
        net = trained_network(cfg.space.name, s.network, data=cfg.data.source, seed=cfg.evaluation.seed,
                              recipe=recipe, space_options=cfg.space.options, data_seed=cfg.data.seed)
        problem = TorchProblem.from_trained(net, val_samples=s.val_samples, calib_samples=s.calib_samples,
                                            round_to=s.round_to)
        env_config = EnvConfig(mode=s.mode, budget=Budget.from_dict(spec["budget"]), max_sparsity=s.max_sparsity,
                               round_to=s.round_to, min_bits=s.min_bits, max_bits=s.max_bits,
                               fixed_a_bits=s.fixed_a_bits, attention=s.attention,
                               max_attention_sparsity=s.max_attention_sparsity)
        agent_config = AgentConfig(algo=s.algo, warmup_episodes=s.warmup_episodes, sigma=s.sigma,
                                   sigma_decay=s.sigma_decay, updates_per_episode=s.updates_per_episode,
                                   imitation_steps=s.imitation_steps, seed=cfg.searcher.seed + int(spec["budget_index"]))
        pipeline = build_pipeline(problem, env_config, agent_config, accelerator=_accelerator(s), resume=self._resume)
        env, agent = pipeline.env, pipeline.agent
        resumed_at = agent.episodes_done
        if s.scan_evaluations >= 2 and not agent.scanned:
            agent.scan(s.scan_evaluations)
            self._checkpoint(agent)
        while agent.episodes_done < s.episodes:
            agent.train(min(s.checkpoint_every, s.episodes - agent.episodes_done))
            self._checkpoint(agent)

        best = env.best
        if best is None:
            raise ConfigError(f"no evaluated policy met {env_config.budget.label()}")
        state = best.as_state()
        model = problem.apply(state)
        x_val, y_val = net.data.x_val, net.data.y_val
        metrics = {
            "search_val_acc": best.accuracy, "val_acc_before_finetune": evaluate(model, x_val, y_val),
            "test_acc_before_finetune": evaluate(model, net.data.x_test, net.data.y_test),
            "base_val_acc": net.val_acc, "base_test_acc": net.test_acc, "budget_limit": env.limit,
            "budget_cost": best.cost, "budget_ratio": best.cost / env.reference_cost,
            "episodes": float(len(env.history)), "best_episode": float(best.index),
            "resumed_at_episode": float(resumed_at),
        }
        language_model = is_sequence(net.data)
        if language_model:
            # the environment's score of a language model is minus its loss (see TorchProblem)
            metrics["search_val_loss"] = -metrics.pop("search_val_acc")
            before = lm_metrics(model, net.data)
            base = lm_metrics(net.model, net.data)
            metrics.update({f"{k}_before_finetune": before[k] for k in ("val_perplexity", "test_perplexity")})
            metrics.update({f"base_{k}": base[k] for k in ("val_perplexity", "test_perplexity")})
        if s.finetune_epochs > 0:
            # final training, distilling from the uncompressed network (problem.apply compressed a copy)
            done = fine_tune(model, net.data, epochs=s.finetune_epochs,
                             recipe=final_recipe(s.finetune_epochs, s.finetune_patience, s.finetune_kd_ratio),
                             seed=cfg.evaluation.seed, resolution=input_resolution(net.input_shape),
                             teacher=net.model)
            metrics["finetune_epochs_run"] = float(done.epochs)
        model = model.eval()
        metrics["val_acc"] = evaluate(model, x_val, y_val)
        metrics["test_acc"] = evaluate(model, net.data.x_test, net.data.y_test)
        if language_model:
            metrics.update(lm_metrics(model, net.data))
        netspec = compressed_netspec(model, net.input_shape)
        policy = problem.policy(state)
        documents = {"policy": policy.to_dict(), "base_choice": {"network": net.choice},
                     "agent": {"budget": env_config.budget.to_dict(), "episodes": [e.to_dict() for e in env.history]}}
        return Evaluation(choice=dict(net.choice), netspec=netspec, metrics=metrics, model=model,
                          documents=documents)

    def rebuild(self, saved: SavedTrial, space: Any) -> Any:
        """The compressed model: the base network rebuilt, the policy applied, the saved weights loaded."""
        from hwsearch.compress import Policy, rebuild  # deferred: torch

        choice = saved.choice
        model = rebuild(space.build(choice), Policy.from_dict(saved.read_json("policy")), space.input_shape(choice),
                        saved.state_dict())
        return model.eval()

    @staticmethod
    def _resume(env: Any) -> Any:
        from hwsearch.search.amc.agent import CompressionAgent  # deferred: torch, stable-baselines3

        session = _tune_session()
        if session is None:
            return None
        from ray import tune

        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as folder:
            return CompressionAgent.load(Path(folder), env)

    @staticmethod
    def _checkpoint(agent: Any) -> None:
        if _tune_session() is None:
            return
        from ray import tune

        best = agent.best
        with tempfile.TemporaryDirectory() as folder:
            agent.save(folder)
            tune.report({"episodes": float(agent.episodes_done),
                         "search_val_acc": float(best.accuracy) if best else 0.0},
                        checkpoint=tune.Checkpoint.from_directory(folder))


__all__ = ["CompressionEvaluator", "CompressionSearcher", "CompressionSettings", "HaqSettings"]
