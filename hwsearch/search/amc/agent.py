"""The AMC/HAQ agent: stable-baselines3 DDPG (TD3 or SAC selectable) walking a `CompressionEnv`.

As in AMC, every step of an episode is stored with the episode's final reward (the accuracy of the
finished policy) and as terminal, so the critic learns "how accurate will the policy be if this layer
gets this action" directly instead of propagating one terminal reward back through tens of layers.
The first ``warmup_episodes`` take uniformly random actions to fill the replay buffer; after
them the actor's action is perturbed by a normal noise truncated to the action box (so no probability
piles up on the bounds, as clipped additive noise would), its width shrinking by ``sigma_decay`` per
episode. SB3's action-noise hook only adds a value that cannot see the action, so the truncated sample
is drawn in an override of its ``_sample_action``. After each round of DDPG updates the actor also
imitates the best episode so far for ``imitation_steps`` steps (self-imitation learning, Oh et al.,
ICML 2018): with only tens of evaluated policies, as here, the critic alone is too rough to steer the
actor, and the exploration then searches around the best policy found instead of around an actor
that may have drifted back to worse ones. Where the space is coarse (a few head counts per layer) the
imitated actor and narrow noise keep landing on the same policy: a revisited policy costs no
evaluation (`CompressionEnv.record`), and while episodes revisit, imitation pauses and each such
episode in a row doubles the noise (up to its initial width) until the agent finds new policies.
`search(n)` plays until n distinct policies are evaluated. The agent's answer is the best policy
found, as in AMC, not the final actor's output.

Optionally (``scan_share``) a search first spends part of its evaluations on the classic per-layer
sensitivity scan and replays the scan's thresholded policy as a demonstration episode (as DDPG from
demonstrations does, Vecerik et al., 2017): the replay buffer and self-imitation then start from
that policy instead of from random ones alone; where the plain agent's few episodes miss the policies
a per-layer scan finds, this is what closes the gap (see BENCHMARKS.md, section "AMC/HAQ agent vs
baselines ...: 120 evaluations, 270 validation images"). `save`/`load` keep the networks,
optimisers, replay buffer, noise state and the evaluated policies, so a search resumes where it stopped.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import truncnorm
from stable_baselines3 import DDPG, SAC, TD3
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.callbacks import BaseCallback

from hwsearch.errors import ConfigError, RunError
from hwsearch.io import atomic_write_bytes, atomic_write_json
from hwsearch.search.amc.baselines import run_baseline
from hwsearch.search.amc.env import CompressionEnv, Episode
from hwsearch.search.amc.settings import AgentConfig


class EpisodeRewardBuffer(ReplayBuffer):
    """Replay buffer that gives every transition of an episode the episode's final reward, as terminal."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._open: list[int] = []
        self.best_reward = -np.inf
        self.best_confidence = -np.inf  # breaks ties of the reward, as `CompressionEnv.best` does
        self.best_positions: list[int] = []
        self.revisits = 0  # episodes in a row that ended on an already evaluated policy

    def add(self, obs, next_obs, action, reward, done, infos) -> None:  # noqa: D102 - SB3's signature
        self._open.append(self.pos)
        super().add(obs, next_obs, action, reward, done, infos)
        if bool(np.asarray(done).reshape(-1)[0]):
            revisit = bool(infos and infos[0].get("revisit", False))
            self.revisits = getattr(self, "revisits", 0) + 1 if revisit else 0
            final = float(np.asarray(reward).reshape(-1)[0])
            for pos in self._open:
                self.rewards[pos] = final
                self.dones[pos] = 1.0
            conf = float(infos[0].get("confidence", np.nan)) if infos else np.nan
            conf = -np.inf if np.isnan(conf) else conf
            if (final, conf) > (self.best_reward, getattr(self, "best_confidence", -np.inf)):
                self.best_reward, self.best_confidence, self.best_positions = final, conf, list(self._open)
            self._open = []

    def best_episode(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Observations and (scaled) actions of the highest-reward episode stored, or None."""
        positions = getattr(self, "best_positions", [])  # absent from buffers saved before it existed
        if not positions:
            return None
        pos = np.asarray(positions)
        return self.observations[pos, 0], self.actions[pos, 0]


class _TruncatedNormalExploration:
    """Mixin for deterministic-policy algorithms: truncated-normal noise around the actor's action."""

    exploration_sigma: float = 0.5
    exploration_decay: float = 0.95
    exploration_min_sigma: float = 0.02
    warmup_episodes: int = 0
    imitation_steps: int = 0
    _explore_rng: np.random.Generator | None = None

    def train(self, gradient_steps: int, batch_size: int = 100) -> None:  # noqa: D102 - SB3's signature
        super().train(gradient_steps, batch_size)
        self._imitate_best()

    def _imitate_best(self) -> None:
        """Pull the actor towards the actions of the best episode so far (self-imitation)."""
        stuck = getattr(self.replay_buffer, "revisits", 0) > 0  # let the actor drift off a revisited policy
        best = self.replay_buffer.best_episode() if self.imitation_steps > 0 and not stuck else None
        if best is None:
            return
        obs = torch.as_tensor(best[0], dtype=torch.float32, device=self.device)
        target = torch.as_tensor(best[1], dtype=torch.float32, device=self.device)
        self.actor.set_training_mode(True)
        for _ in range(self.imitation_steps):
            loss = F.mse_loss(self.actor(obs), target)
            self.actor.optimizer.zero_grad()
            loss.backward()
            self.actor.optimizer.step()
        self.actor.set_training_mode(False)

    def current_sigma(self) -> float:
        """Noise std for the episode being played: decaying, doubled per episode in a row that revisited."""
        after = max(0, self._episode_num - self.warmup_episodes)
        sigma = max(self.exploration_min_sigma, self.exploration_sigma * self.exploration_decay ** after)
        revisits = getattr(self.replay_buffer, "revisits", 0)
        return max(sigma, min(self.exploration_sigma, sigma * 2.0 ** revisits))

    def _sample_action(self, learning_starts: int, action_noise: Any = None, n_envs: int = 1):
        action, buffer_action = super()._sample_action(learning_starts, None, n_envs)
        if self.num_timesteps < learning_starts:
            return action, buffer_action
        if self._explore_rng is None:
            self._explore_rng = np.random.default_rng(self.seed)
        sigma = self.current_sigma()
        mu = np.clip(buffer_action, -1.0, 1.0)
        if sigma > 0:
            a, b = (-1.0 - mu) / sigma, (1.0 - mu) / sigma
            mu = truncnorm.rvs(a, b, loc=mu, scale=sigma, random_state=self._explore_rng)
        buffer_action = np.asarray(mu, dtype=np.float32).reshape(buffer_action.shape)
        return self.policy.unscale_action(buffer_action), buffer_action


class AmcDDPG(_TruncatedNormalExploration, DDPG):
    """DDPG with AMC's truncated-normal exploration."""


class AmcTD3(_TruncatedNormalExploration, TD3):
    """TD3 with AMC's truncated-normal exploration."""


ALGOS: dict[str, type] = {"ddpg": AmcDDPG, "td3": AmcTD3, "sac": SAC}


class _EpisodeHook(BaseCallback):
    """Calls ``fn(episode)`` each time the environment finishes (and evaluates) a policy."""

    def __init__(self, env: CompressionEnv, fn: Callable[[Episode], None] | None) -> None:
        super().__init__()
        self.env, self.fn, self.seen = env, fn, len(env.history)

    def _on_step(self) -> bool:
        while self.seen < len(self.env.history):
            if self.fn is not None:
                self.fn(self.env.history[self.seen])
            self.seen += 1
        return True


def _configure(model: Any, cfg: AgentConfig) -> Any:
    """Set the exploration and self-imitation settings SB3's constructor does not know."""
    if cfg.algo != "sac":
        model.exploration_sigma = cfg.sigma
        model.exploration_decay = cfg.sigma_decay
        model.exploration_min_sigma = cfg.min_sigma
        model.warmup_episodes = cfg.warmup_episodes
        model.imitation_steps = cfg.imitation_steps
    return model


@dataclass
class CompressionAgent:
    """An SB3 agent bound to one environment; ``train(n)`` plays (and evaluates) n more episodes."""

    env: CompressionEnv
    config: AgentConfig = field(default_factory=AgentConfig)
    model: Any = None

    def __post_init__(self) -> None:
        if self.model is None:
            self.model = self._build()

    @property
    def episode_length(self) -> int:
        """Steps per episode: the layers the environment decides."""
        return len(self.env.steps)

    def _build(self) -> Any:
        cfg = self.config
        cls = ALGOS[cfg.algo]
        kw: dict[str, Any] = dict(
            learning_starts=cfg.warmup_episodes * self.episode_length,
            buffer_size=max(1000, cfg.buffer_episodes * self.episode_length),
            batch_size=cfg.batch_size, gamma=cfg.gamma, tau=cfg.tau,
            train_freq=(1, "episode"), gradient_steps=cfg.updates_per_episode, seed=cfg.seed, verbose=0,
            device="cpu", replay_buffer_class=EpisodeRewardBuffer,
        )
        arch: Any = list(cfg.hidden) if cfg.algo == "sac" else {"pi": list(cfg.hidden), "qf": list(cfg.hidden)}
        return _configure(cls("MlpPolicy", self.env, learning_rate=cfg.lr, policy_kwargs={"net_arch": arch}, **kw), cfg)

    @property
    def episodes_done(self) -> int:
        """Episodes played so far (warm-up included)."""
        return int(self.model._episode_num)

    def train(self, episodes: int, on_episode: Callable[[Episode], None] | None = None) -> list[Episode]:
        """Play ``episodes`` more episodes, learning after each; returns the episodes just evaluated."""
        if episodes < 0:
            raise ConfigError(f"episodes={episodes} must be >= 0")
        start = len(self.env.history)
        if episodes:
            self.model.learn(total_timesteps=episodes * self.episode_length, reset_num_timesteps=False,
                             callback=_EpisodeHook(self.env, on_episode))
        return self.env.history[start:]

    def search(self, evaluations: int, on_episode: Callable[[Episode], None] | None = None,
               max_episodes: int | None = None) -> list[Episode]:
        """Play episodes until ``evaluations`` more distinct policies are evaluated (revisits are free).

        Stops after ``max_episodes`` (default: five per evaluation) even if the actor keeps revisiting."""
        if evaluations < 0:
            raise ConfigError(f"evaluations={evaluations} must be >= 0")
        start, goal = len(self.env.history), self.env.evaluations + evaluations
        scan = int(round(self.config.scan_share * evaluations))
        if scan >= 2 and not self.scanned:
            self.scan(scan)
        for _ in range(5 * evaluations if max_episodes is None else max_episodes):
            if self.env.evaluations >= goal:
                break
            self.train(1, on_episode)
        return self.env.history[start:]

    @property
    def scanned(self) -> bool:
        """Whether this search already ran its sensitivity scan (it survives a resume with the history)."""
        return any(e.source == "sensitivity" for e in self.env.history)

    def scan(self, evaluations: int) -> Episode:
        """Run the per-layer sensitivity scan with ``evaluations`` evaluations and replay its policy as a demonstration."""
        policy = run_baseline("sensitivity", self.env, evaluations, seed=self.config.seed)[-1]
        return self.demonstrate(self.env.actions_for_state(policy.as_state()))

    def demonstrate(self, actions: np.ndarray) -> Episode:
        """Play one episode of given actions (steps x knobs) into the replay buffer, as if the agent had."""
        actions = np.asarray(actions, dtype=np.float32).reshape(self.episode_length, -1)
        buffer = self.model.replay_buffer
        obs, _ = self.env.reset()
        for a in actions:
            next_obs, reward, done, _, info = self.env.step(a)
            buffer.add(obs[None], next_obs[None], a[None], np.array([reward], dtype=np.float32),
                       np.array([done]), [info])
            obs = next_obs
        buffer.revisits = 0  # a demonstration of a scanned policy revisits it by design: not a stuck actor
        # SB3 keeps stepping its vectorised view of the env from the observation it saw last, which
        # for a finished episode is the reset observation; the env must be there too.
        self.env.reset()
        return self.env.history[-1]

    @property
    def best(self) -> Episode | None:
        """Highest-accuracy policy evaluated so far within the budget."""
        return self.env.best

    # ---- checkpoints ------------------------------------------------------------------------------
    def save(self, directory: str | Path) -> None:
        """Write networks + optimisers, replay buffer and evaluated policies (each file atomically)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        self.model.save(buf)
        atomic_write_bytes(directory / "agent.zip", buf.getvalue())
        buf = io.BytesIO()
        self.model.save_replay_buffer(buf)
        atomic_write_bytes(directory / "replay_buffer.pkl", buf.getvalue())
        atomic_write_json(directory / "agent_state.json", {
            "config": self.config.to_dict(), "env": self.env.config.to_dict(),
            "episodes": [e.to_dict() for e in self.env.history],
        })

    @classmethod
    def load(cls, directory: str | Path, env: CompressionEnv) -> CompressionAgent:
        """Rebuild an agent saved by `save` around ``env`` (same network and environment config)."""
        directory = Path(directory)
        try:
            state = json.loads((directory / "agent_state.json").read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise RunError(f"agent checkpoint {directory} is missing or unreadable: {e}") from None
        if state["env"] != env.config.to_dict():
            raise RunError(f"agent checkpoint {directory} was made for environment {state['env']}, "
                           f"not {env.config.to_dict()}")
        config = AgentConfig.from_dict({**state["config"], "hidden": tuple(state["config"]["hidden"])})
        model = _configure(ALGOS[config.algo].load(directory / "agent.zip", env=env, device="cpu"), config)
        model.load_replay_buffer(directory / "replay_buffer.pkl")
        env.history = [Episode.from_dict(e) for e in state["episodes"]]
        return cls(env, config, model)


__all__ = ["ALGOS", "AgentConfig", "AmcDDPG", "AmcTD3", "CompressionAgent", "EpisodeRewardBuffer"]
