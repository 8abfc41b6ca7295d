"""The AMC/HAQ environment: a gymnasium episode walks a trained network's layers, one decision per step.

At step ``t`` the observation embeds the layer (index, type, channels, stride, kernel, MACs, params),
the share of the budget metric already removed and still controlled by the undecided layers, and the
previous action; the action, in [-1, 1] per knob, becomes the layer's kept channels (sparsity in
[0, ``max_sparsity``], AMC), its weight / activation bits (``min_bits``..``max_bits``, HAQ) or both
(``joint``); with ``attention`` (or mode ``attention``) also the percent of each attention block's
map its static mask keeps, decided at the block's qkv layer. Each value passes through `BudgetClipper`, so the finished policy meets the budget exactly
rather than being penalised for missing it. After the last layer the policy is applied and the reward
is its accuracy on a fixed validation subset minus the uncompressed network's, without fine-tuning.

The torch side (which layers exist, how a policy is applied and priced) sits behind
`CompressionProblem`; `hwsearch.search.amc.problem` implements it for a trained network.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from hwsearch.errors import ConfigError
from hwsearch.ir import LayerSpec, NetSpec
from hwsearch.search.amc.budget import BudgetClipper, CostPredictor, State, cost_function
from hwsearch.search.amc.settings import ATTENTION_STEP, FLOAT_BITS, KNOBS, MODES, EnvConfig

OP_TYPES = ("conv", "dwconv", "linear")


@dataclass(frozen=True)
class Slot:
    """One compressible layer in walk order: its shape, and which knobs it owns.

    ``prunable``: this layer decides how many ``units`` (output channels, or attention heads) its
    coupled group keeps; ``quantizable``: its weights / input activations may be quantized;
    ``attention_tokens``: the tokens of the attention map this (qkv) layer's block computes (0: none),
    whose density the ``attention`` knob sets.
    """

    name: str
    layer: LayerSpec
    group: str = ""
    prunable: bool = True
    quantizable: bool = True
    units: int = 0  # 0: the layer's output channels
    attention_tokens: int = 0

    @property
    def channels(self) -> int:
        """Units of the uncompressed group this layer leads (output channels or heads)."""
        return self.units or self.layer.k


class CompressionProblem(Protocol):
    """What the environment needs from a trained network: its slots, pricing and accuracy of a state."""

    slots: tuple[Slot, ...]

    def netspec(self, state: State) -> NetSpec:
        """The compressed network's NetSpec for a state (kept units and bits per slot)."""
        ...

    def fast_metric(self, metric: str) -> Callable[[State], float] | None:
        """Optional: a faster pricing of an analytic metric, equal to pricing `netspec`."""
        ...

    def accuracy(self, state: State, split: str = "val") -> float:
        """Top-1 accuracy of the compressed network, without fine-tuning, on ``split``."""
        ...

    # Optional: ``confidence(state) -> float``, the mean probability of the true label on the same
    # subset. Where a problem has it, it ranks policies of equal accuracy (see `CompressionEnv.best`).


def attention_options(max_sparsity: float, step: int = ATTENTION_STEP) -> list[int]:
    """Percents of an attention map a mask may keep: multiples of ``step`` from ``1 - max_sparsity`` up, and 100."""
    lowest = max(1, math.ceil(100 * (1.0 - max_sparsity) - 1e-9))
    return sorted({100, *range(math.ceil(lowest / step) * step, 100, step)})


def channel_options(channels: int, max_sparsity: float, round_to: int) -> list[int]:
    """Kept-channel counts a layer may take: multiples of ``round_to`` (when wide enough) down to
    ``1 - max_sparsity`` of the channels, and the full width."""
    lowest = max(1, math.ceil(channels * (1.0 - max_sparsity) - 1e-9))
    step = round_to if channels >= round_to else 1
    opts = {channels}
    c = math.ceil(lowest / step) * step
    while c < channels:
        opts.add(c)
        c += step
    return sorted(opts)


@dataclass(frozen=True)
class Episode:
    """One evaluated policy: per-knob values per slot, its cost, accuracy, reward and confidence (NaN: unknown)."""

    index: int
    state: Mapping[str, tuple[int, ...]]
    cost: float
    accuracy: float
    reward: float
    source: str = "agent"
    confidence: float = math.nan

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {"index": self.index, "state": {k: list(v) for k, v in self.state.items()}, "cost": self.cost,
                "accuracy": self.accuracy, "reward": self.reward, "source": self.source,
                "confidence": None if math.isnan(self.confidence) else self.confidence}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Episode:
        """Inverse of `to_dict` (records written before confidence existed read as NaN)."""
        conf = d.get("confidence")
        state = {k: tuple(int(x) for x in v) for k, v in d["state"].items()}
        state.setdefault("attention", (100,) * len(state.get("keep", ())))  # written before the knob: dense
        return cls(int(d["index"]), state,
                   float(d["cost"]), float(d["accuracy"]), float(d["reward"]), str(d.get("source", "agent")),
                   math.nan if conf is None else float(conf))

    def as_state(self) -> State:
        """The per-knob arrays of this episode."""
        return {k: np.array(v, dtype=np.int64) for k, v in self.state.items()}


class CompressionEnv(gym.Env):
    """Gymnasium environment: one episode = one per-layer compression policy under a budget."""

    metadata = {"render_modes": []}

    def __init__(self, problem: CompressionProblem, config: EnvConfig | None = None,
                 predictor: CostPredictor | None = None, reference_accuracy: float | None = None) -> None:
        super().__init__()
        self.problem = problem
        self.config = config or EnvConfig()
        self.knobs = self.config.knobs
        self.slots = tuple(problem.slots)
        if not self.slots:
            raise ConfigError("the network has no compressible layers (conv / linear) to walk")
        fast = getattr(problem, "fast_metric", None)
        fast_fn = fast(self.config.budget.metric) if fast is not None else None
        if fast_fn is not None:
            self._cost_state = fast_fn
        else:
            metric = cost_function(self.config.budget.metric, predictor)
            self._cost_state = lambda state: metric(problem.netspec(state))
        self.options = self._knob_options()
        self.steps = [i for i in range(len(self.slots))
                      if any(len(self.options[k][i]) > 1 for k in self.knobs)]
        if not self.steps:
            what = {"amc": "prunable", "haq": "quantizable", "attention": "an attention block's qkv layer"}
            raise ConfigError(f"mode {self.config.mode!r} leaves nothing to decide: no layer is "
                              f"{what.get(self.config.mode, 'prunable or quantizable')}")
        self.min_state = {k: np.array([o[0] for o in self.options[k]], dtype=np.int64) for k in KNOBS}
        self.max_state = {k: np.array([o[-1] for o in self.options[k]], dtype=np.int64) for k in KNOBS}
        self.reference_cost = self.cost(self.max_state)
        self.min_cost = self.cost(self.min_state)
        self.limit = self.config.budget.limit(self.reference_cost)
        if self.min_cost > self.limit * (1 + 1e-9):
            raise ConfigError(
                f"budget {self.config.budget.label()} = {self.limit:.6g} is below the smallest reachable "
                f"{self.config.budget.metric} {self.min_cost:.6g} (max_sparsity={self.config.max_sparsity}, "
                f"min_bits={self.config.min_bits}"
                + (f", max_attention_sparsity={self.config.max_attention_sparsity}" if "attention" in self.knobs else "")
                + "); loosen the budget or allow more compression")
        self.clipper = BudgetClipper(self.cost, self.limit)
        self._features = self._static_features()
        n_obs = 1 + self._features.shape[1] + 2 + 2 * len(self.knobs)
        self.observation_space = gym.spaces.Box(0.0, 1.0, shape=(n_obs,), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, shape=(len(self.knobs),), dtype=np.float32)
        self._reference_accuracy = reference_accuracy
        self.history: list[Episode] = []
        self._known: dict[tuple, tuple[float, float]] = {}  # (accuracy, confidence) of each distinct policy
        self._folded, self._folded_of = 0, self.history
        self._t = 0
        self._low: State = {}
        self._high: State = {}
        self._prev = np.zeros(len(self.knobs), dtype=np.float32)

    # ---- pricing --------------------------------------------------------------------------------
    def cost(self, state: State) -> float:
        """The budget metric of the network a state describes."""
        return float(self._cost_state(state))

    @property
    def reference_accuracy(self) -> float:
        """Validation-subset accuracy of the uncompressed network (evaluated once)."""
        if self._reference_accuracy is None:
            self._reference_accuracy = float(self.problem.accuracy(self.max_state_full()))
        return self._reference_accuracy

    def max_state_full(self) -> State:
        """Every channel kept, and weights / activations at their unsearched widths (float)."""
        state = {k: v.copy() for k, v in self.max_state.items()}
        for k in ("w_bits", "a_bits"):
            if k not in self.knobs:
                continue
            state[k][:] = FLOAT_BITS
        return state

    def _knob_options(self) -> dict[str, list[list[int]]]:
        cfg = self.config
        bits = list(range(cfg.min_bits, cfg.max_bits + 1))
        opts: dict[str, list[list[int]]] = {k: [] for k in KNOBS}
        for slot in self.slots:
            if "keep" in self.knobs and slot.prunable:
                opts["keep"].append(channel_options(slot.channels, cfg.max_sparsity, cfg.round_to))
            else:
                opts["keep"].append([slot.channels])
            if "attention" in self.knobs and slot.attention_tokens:
                opts["attention"].append(attention_options(cfg.max_attention_sparsity))
            else:
                opts["attention"].append([100])
            for k, fixed in (("w_bits", cfg.fixed_w_bits), ("a_bits", cfg.fixed_a_bits)):
                if k in self.knobs and slot.quantizable:
                    opts[k].append(bits)
                else:
                    opts[k].append([fixed if (fixed is not None and slot.quantizable) else FLOAT_BITS])
        return opts

    def _static_features(self) -> np.ndarray:
        rows = []
        for i in self.steps:
            layer = self.slots[i].layer
            onehot = [1.0 if layer.op == op else 0.0 for op in OP_TYPES]
            rows.append([*onehot, layer.c, layer.k, layer.stride, layer.r, math.log1p(layer.macs),
                         math.log1p(layer.params)])
        feats = np.array(rows, dtype=np.float64)
        scale = feats.max(axis=0)
        scale[scale == 0] = 1.0
        return (feats / scale).astype(np.float32)

    # ---- the walk -------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        """Start a new policy at the first layer."""
        super().reset(seed=seed)
        self._t = 0
        self._low = {k: v.copy() for k, v in self.min_state.items()}
        self._high = {k: v.copy() for k, v in self.max_state.items()}
        self._prev = np.zeros(len(self.knobs), dtype=np.float32)
        return self._observation(), {}

    def _observation(self) -> np.ndarray:
        t = min(self._t, len(self.steps) - 1)
        span = max(self.reference_cost - 0.0, 1e-12)
        removed = (self.reference_cost - self.cost(self._high)) / span
        controlled = (self.cost(self._high) - self.cost(self._low)) / span
        i = self.steps[t]
        mask = [1.0 if len(self.options[k][i]) > 1 else 0.0 for k in self.knobs]
        obs = np.concatenate([
            [t / max(1, len(self.steps) - 1)], self._features[t], [removed, controlled], self._prev, mask,
        ]).astype(np.float32)
        return np.clip(obs, 0.0, 1.0)

    def propose(self, knob: str, slot: int, action: float) -> int:
        """The value an action in [-1, 1] asks for, before clipping (nearest allowed option)."""
        u = (float(np.clip(action, -1.0, 1.0)) + 1.0) / 2.0
        opts = self.options[knob][slot]
        if knob == "keep":
            want = self.slots[slot].channels * (1.0 - u * self.config.max_sparsity)
        elif knob == "attention":
            want = 100.0 * (1.0 - u * self.config.max_attention_sparsity)
        else:
            # HAQ's mapping: equal-width intervals of the action per bit-width.
            want = round(self.config.min_bits - 0.5 + u * (self.config.max_bits - self.config.min_bits + 1))
        return int(opts[int(np.argmin(np.abs(np.asarray(opts) - want)))])

    def action_for(self, knob: str, slot: int, value: int) -> float:
        """The action in [-1, 1] that `propose` maps to ``value`` (inverse of `propose`)."""
        cfg = self.config
        if knob == "keep":
            u = (1.0 - value / self.slots[slot].channels) / cfg.max_sparsity if cfg.max_sparsity else 1.0
        elif knob == "attention":
            u = (1.0 - value / 100.0) / cfg.max_attention_sparsity if cfg.max_attention_sparsity else 1.0
        else:
            u = (value - cfg.min_bits + 0.5) / (cfg.max_bits - cfg.min_bits + 1)
        return float(np.clip(2.0 * u - 1.0, -1.0, 1.0))

    def actions_for_state(self, state: State) -> np.ndarray:
        """Actions (steps x knobs) that propose exactly ``state``'s values, before clipping."""
        return np.array([[self.action_for(k, i, int(state[k][i])) for k in self.knobs] for i in self.steps],
                        dtype=np.float32)

    def _decide(self, action: np.ndarray) -> None:
        i = self.steps[self._t]
        for j, knob in enumerate(self.knobs):
            opts = self.options[knob][i]
            if len(opts) == 1:
                continue
            res = self.clipper.clip(opts, self.propose(knob, i, float(action[j])), knob, i, self._low, self._high)
            self._low[knob][i] = self._high[knob][i] = res.value
        self._prev = ((np.clip(np.asarray(action, dtype=np.float32), -1, 1) + 1) / 2).astype(np.float32)
        self._t += 1

    def step(self, action: np.ndarray):
        """Decide the current layer; after the last one, apply the policy and return the reward."""
        if self._t >= len(self.steps):
            raise RuntimeError("step() called after the episode ended; call reset()")
        self._decide(np.asarray(action, dtype=np.float32).reshape(-1))
        if self._t < len(self.steps):
            return self._observation(), 0.0, False, False, {}
        before = self.evaluations
        episode = self.record(self._low, source="agent")
        info = {"accuracy": episode.accuracy, "confidence": episode.confidence, "cost": episode.cost,
                "limit": self.limit, "state": episode.state, "revisit": self.evaluations == before}
        return self._observation(), float(episode.reward), True, False, info

    # ---- used by the agent and by the baselines alike -------------------------------------------
    def state_from_actions(self, actions: np.ndarray) -> State:
        """The clipped state a whole episode of actions (steps x knobs) leads to, without evaluating it."""
        actions = np.asarray(actions, dtype=np.float32).reshape(len(self.steps), len(self.knobs))
        self.reset()
        for a in actions:
            self._decide(a)
        return {k: v.copy() for k, v in self._low.items()}

    def record(self, state: State, source: str) -> Episode:
        """Evaluate a state (accuracy on the validation subset), append it to the history, return it.

        A policy already in the history is not evaluated again (the evaluation is deterministic): its
        accuracy is reused, so searches that revisit policies are held to `evaluations`, the number of
        distinct policies they paid for."""
        key = {k: tuple(int(x) for x in state.get(k, self.max_state[k])) for k in KNOBS}
        known = self._known_scores()
        flat = tuple(key.values())
        if flat not in known:
            confidence = getattr(self.problem, "confidence", None)
            known[flat] = (float(self.problem.accuracy(state)),
                           float(confidence(state)) if confidence is not None else math.nan)
        acc, conf = known[flat]
        episode = Episode(index=len(self.history), state=key, cost=self.cost(state), accuracy=acc,
                          reward=acc - self.reference_accuracy, source=source, confidence=conf)
        self.history.append(episode)
        self._folded = len(self.history)
        return episode

    def _known_scores(self) -> dict[tuple, tuple[float, float]]:
        """(accuracy, confidence) of every distinct policy in the history (rebuilt when a resume replaces it)."""
        if self._folded_of is not self.history or self._folded > len(self.history):
            self._known, self._folded, self._folded_of = {}, 0, self.history
        for e in self.history[self._folded:]:
            self._known[tuple(e.state[k] for k in KNOBS)] = (e.accuracy, e.confidence)
        self._folded = len(self.history)
        return self._known

    @property
    def evaluations(self) -> int:
        """Distinct policies evaluated so far (revisits are free, see `record`)."""
        return len(self._known_scores())

    @property
    def best(self) -> Episode | None:
        """The most accurate policy evaluated so far within the budget; among equally accurate ones the
        most confident (highest mean probability of the true label), then the earliest.

        On a validation subset of a few hundred images many policies tie on accuracy, and which tied
        policy wins can move the test accuracy by a point. The confidence breaks such ties with a finer
        measurement of the same images (see BENCHMARKS.md, section "Figures behind design choices")."""
        ok = [e for e in self.history if e.cost <= self.limit * (1 + 1e-9)]
        if not ok:
            return None
        return max(ok, key=lambda e: (e.accuracy, -math.inf if math.isnan(e.confidence) else e.confidence, -e.index))

    def step_cost(self, state: State) -> float:
        """Largest cost increase of moving any one knob of ``state`` up by one option: the rounding step."""
        base = self.cost(state)
        worst = 0.0
        for knob in self.knobs:
            for i in self.steps:
                opts = self.options[knob][i]
                j = opts.index(int(state[knob][i]))
                if j + 1 < len(opts):
                    up = {k: v.copy() for k, v in state.items()}
                    up[knob][i] = opts[j + 1]
                    worst = max(worst, self.cost(up) - base)
        return worst


def knob_grid(env: CompressionEnv) -> Sequence[tuple[int, str]]:
    """Every (slot, knob) pair the environment decides, in walk order."""
    return [(i, k) for i in env.steps for k in env.knobs if len(env.options[k][i]) > 1]


__all__ = ["CompressionEnv", "CompressionProblem", "EnvConfig", "Episode", "FLOAT_BITS", "KNOBS", "MODES",
           "OP_TYPES", "Slot", "attention_options", "channel_options", "knob_grid"]
