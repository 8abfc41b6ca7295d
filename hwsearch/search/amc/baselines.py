"""Baselines for the AMC/HAQ agent, on the same environment, budget and number of evaluated policies.

- ``uniform``: the same pruning ratio / bit-width for every layer, the least compression that fits.
- ``random``: uniformly random actions, clipped to the budget exactly as the agent's are.
- ``sensitivity``: the per-layer sensitivity analysis of the efficient-ML course notes: compress one
  layer at a time at a few levels (from the uniform policy's level up to the most allowed), measure
  the accuracy drop, then give every layer the most compression whose drop stays under one threshold,
  the threshold chosen so the network meets the budget.
- ``tpe``: Optuna's TPE sampler over the same per-layer action vector.

Each baseline evaluates policies through `CompressionEnv.record`, so the environment's count of
distinct evaluated policies (`CompressionEnv.evaluations`; a revisited policy costs nothing) is the one
budget every method is held to; every policy goes through the same budget clipping.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hwsearch.errors import ConfigError
from hwsearch.registry import Registry
from hwsearch.search.amc.budget import State
from hwsearch.search.amc.env import CompressionEnv, Episode

Baseline = Callable[[CompressionEnv, int, int], list[Episode]]
# Proposals per paid evaluation before a search that keeps revisiting policies is stopped anyway.
MAX_DRAWS = 5
# Baselines ``fn(env, evaluations, seed) -> episodes`` by name; ``@register(name)`` adds one.
BASELINES: Registry[Baseline] = Registry("baseline")
register = BASELINES.register


def run_baseline(name: str, env: CompressionEnv, evaluations: int, seed: int = 0) -> list[Episode]:
    """Run baseline ``name`` with at most ``evaluations`` distinct evaluated policies; returns its episodes."""
    if evaluations < 1:
        raise ConfigError(f"evaluations={evaluations} must be >= 1")
    fn = BASELINES.get(name)
    start = len(env.history)
    fn(env, evaluations, seed)
    return env.history[start:]


def _action_at(knob: str, level: float) -> float:
    """Action for a compression level in [0, 1] (0: none, 1: the most the knob allows)."""
    return 2.0 * level - 1.0 if knob in ("keep", "attention") else 1.0 - 2.0 * level


def _state_at(env: CompressionEnv, levels: dict[tuple[int, str], float]) -> State:
    """The unclipped state where each (slot, knob) sits at its compression level (others untouched)."""
    state = {k: v.copy() for k, v in env.max_state.items()}
    for (i, knob), level in levels.items():
        state[knob][i] = _floor_value(env, knob, i, level)
    return state


def _floor_value(env: CompressionEnv, knob: str, i: int, level: float) -> int:
    """The least compressed option at or beyond ``level`` (so a uniform level never exceeds its cost)."""
    opts = env.options[knob][i]
    cfg = env.config
    if knob == "keep":
        want = env.slots[i].channels * (1.0 - level * cfg.max_sparsity)
    elif knob == "attention":
        want = 100.0 * (1.0 - level * cfg.max_attention_sparsity)
    else:
        want = cfg.max_bits - level * (cfg.max_bits - cfg.min_bits)
    below = [o for o in opts if o <= want + 1e-9]
    return int(below[-1] if below else opts[0])


def _pairs(env: CompressionEnv) -> list[tuple[int, str]]:
    return [(i, k) for i in env.steps for k in env.knobs if len(env.options[k][i]) > 1]


def _uniform_level(env: CompressionEnv) -> float:
    """The smallest compression level which, applied to every layer alike, fits the budget."""
    pairs = _pairs(env)

    def fits(level: float) -> bool:
        return env.cost(_state_at(env, {p: level for p in pairs})) <= env.limit

    lo, hi = 0.0, 1.0
    if not fits(hi):
        raise ConfigError(f"no uniform policy meets {env.config.budget.label()}")
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return lo if fits(lo) else hi


@register("uniform")
def uniform(env: CompressionEnv, evaluations: int, seed: int) -> list[Episode]:
    """One policy: the smallest common compression level whose network fits the budget."""
    level = _uniform_level(env)
    return [env.record(_state_at(env, {p: level for p in _pairs(env)}), source="uniform")]


@register("random")
def random_policies(env: CompressionEnv, evaluations: int, seed: int) -> list[Episode]:
    """``evaluations`` distinct policies from uniformly random actions, clipped to the budget."""
    rng = np.random.default_rng(seed)
    out = []
    goal = env.evaluations + evaluations
    for _ in range(MAX_DRAWS * evaluations):
        if env.evaluations >= goal:
            break
        actions = rng.uniform(-1.0, 1.0, size=(len(env.steps), len(env.knobs)))
        out.append(env.record(env.state_from_actions(actions), source="random"))
    return out


@register("tpe")
def tpe(env: CompressionEnv, evaluations: int, seed: int) -> list[Episode]:
    """Optuna TPE over the per-layer action vector, maximising validation accuracy."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(1, evaluations // 4)),
                                         multivariate=True)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    out: list[Episode] = []

    def objective(trial: optuna.Trial) -> float:
        actions = np.array([[trial.suggest_float(f"l{i}_{k}", -1.0, 1.0) for k in env.knobs]
                            for i in env.steps])
        episode = env.record(env.state_from_actions(actions), source="tpe")
        out.append(episode)
        return episode.accuracy

    goal = env.evaluations + evaluations

    def enough(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if env.evaluations >= goal:
            study.stop()

    study.optimize(objective, n_trials=MAX_DRAWS * evaluations, callbacks=[enough])
    return out


def sensitivity_levels(env: CompressionEnv, evaluations: int) -> list[float]:
    """Compression levels scanned per layer so that the scan plus the final policy fit ``evaluations``:
    from the uniform policy's level (where the budget puts an average layer) up to the most allowed."""
    per_layer = max(1, (evaluations - 1) // max(1, len(_pairs(env))))
    per_layer = min(per_layer, 8)
    start = _uniform_level(env)
    if per_layer == 1:
        return [start]
    return [start + (1.0 - start) * j / (per_layer - 1) for j in range(per_layer)]


@register("sensitivity")
def sensitivity(env: CompressionEnv, evaluations: int, seed: int) -> list[Episode]:
    """Scan each layer alone, then threshold the accuracy drop so the whole network meets the budget."""
    pairs = _pairs(env)
    levels = sensitivity_levels(env, evaluations)
    budget_left = evaluations - 1
    ref = env.reference_accuracy
    grid = np.linspace(0.0, 1.0, 101)
    curves: dict[tuple[int, str], np.ndarray] = {}
    out: list[Episode] = []
    for p in pairs:
        drops = [0.0]
        for level in levels:
            if budget_left <= 0:
                drops.append(drops[-1] + 1.0)  # unscanned: treated as harmful, left uncompressed
                continue
            episode = env.record(_state_at(env, {p: level}), source="sensitivity")
            out.append(episode)
            budget_left -= 1
            drops.append(max(0.0, ref - episode.accuracy))
        xs, ys = [0.0, *levels], drops
        curve = np.interp(grid, xs, ys)
        # Beyond the last scanned level the drop keeps growing at the last segment's slope: compression
        # never scanned is not assumed free.
        slope = (ys[-1] - ys[-2]) / max(xs[-1] - xs[-2], 1e-9)
        beyond = grid > xs[-1]
        curve[beyond] = ys[-1] + slope * (grid[beyond] - xs[-1])
        curves[p] = np.maximum.accumulate(curve)  # more compression never assumed to hurt less

    def state_for(tau: float) -> State:
        chosen = {p: float(grid[np.searchsorted(c, tau, side="right") - 1]) if c[0] <= tau else 0.0
                  for p, c in curves.items()}
        return _state_at(env, chosen)

    lo, hi = 0.0, max(float(max(c[-1] for c in curves.values())), 1e-6) + 1.0
    for _ in range(40):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if env.cost(state_for(mid)) <= env.limit else (mid, hi)
    state = state_for(hi)
    # The threshold's policy sits just under the budget; the shared clipping fills what rounding left.
    final = env.state_from_actions(env.actions_for_state(state))
    out.append(env.record(final, source="sensitivity"))
    return out


__all__ = ["BASELINES", "register", "run_baseline", "sensitivity_levels"]
