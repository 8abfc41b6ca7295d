"""The AMC/HAQ agent (SB3 DDPG/TD3/SAC) and the baselines, on a small real network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwsearch import spaces
from hwsearch.data import load_data
from hwsearch.errors import ConfigError, RunError, UnknownName
from hwsearch.search.amc.agent import AgentConfig, CompressionAgent, EpisodeRewardBuffer
from hwsearch.search.amc.baselines import BASELINES, run_baseline, sensitivity_levels
from hwsearch.search.amc.budget import Budget
from hwsearch.search.amc.env import CompressionEnv, EnvConfig
from hwsearch.search.amc.problem import TorchProblem


@pytest.fixture(scope="module")
def problem() -> TorchProblem:
    data = load_data("digits")
    sp = spaces.get("vit", in_channels=1, num_classes=10, resolution=16, embeds=(16,), depths=(2,), heads=(2,),
                    mlp_ratios=(3,))
    choice = sp.reference("middle")
    shape = sp.input_shape(choice)
    d = data.at_resolution(shape[1])
    torch.manual_seed(0)
    return TorchProblem(sp.build(choice).eval(), shape, d.x_val[:32], d.y_val[:32], calib=d.x_train[:16])


def _env(problem: TorchProblem, mode: str = "amc") -> CompressionEnv:
    budget = Budget("macs", ratio=0.8) if mode == "amc" else Budget("avg_w_bits", value=4.0)
    return CompressionEnv(problem, EnvConfig(mode=mode, budget=budget, fixed_a_bits=32 if mode == "haq" else None))


def test_agent_trains_saves_and_resumes_with_its_replay_buffer(problem, tmp_path):
    env = _env(problem)
    agent = CompressionAgent(env, AgentConfig(warmup_episodes=2, updates_per_episode=4, batch_size=8, seed=0))
    seen = []
    episodes = agent.train(4, on_episode=seen.append)
    assert len(episodes) == 4 == agent.episodes_done and seen == episodes
    assert all(e.cost <= env.limit for e in episodes)
    buffer_size = agent.model.replay_buffer.size()
    assert buffer_size == 4 * len(env.steps)
    agent.save(tmp_path)

    env2 = _env(problem)
    resumed = CompressionAgent.load(tmp_path, env2)
    assert resumed.episodes_done == 4 and resumed.model.replay_buffer.size() == buffer_size
    assert [e.to_dict() for e in env2.history] == [e.to_dict() for e in episodes]
    for p, q in zip(agent.model.actor.parameters(), resumed.model.actor.parameters(), strict=True):
        assert torch.equal(p, q)
    resumed.train(1)
    assert resumed.episodes_done == 5 and len(env2.history) == 5
    assert resumed.model.replay_buffer.size() == buffer_size + len(env.steps)


def test_every_transition_carries_its_episode_final_reward_as_terminal(problem):
    env = _env(problem)
    agent = CompressionAgent(env, AgentConfig(warmup_episodes=2, updates_per_episode=1, batch_size=4, seed=1))
    agent.train(2)
    buf = agent.model.replay_buffer
    assert isinstance(buf, EpisodeRewardBuffer)
    steps = len(env.steps)
    for i, episode in enumerate(env.history):
        rewards = buf.rewards[i * steps:(i + 1) * steps, 0]
        assert np.allclose(rewards, episode.reward) and buf.dones[i * steps:(i + 1) * steps].all()


def test_self_imitation_pulls_the_actor_towards_the_best_episode_so_far(problem):
    env = _env(problem)
    agent = CompressionAgent(env, AgentConfig(warmup_episodes=3, updates_per_episode=1, batch_size=4,
                                              imitation_steps=0, seed=2))
    agent.train(3)
    buf = agent.model.replay_buffer
    best = env.best  # the imitation target is the environment's answer, confidence tie-break included
    assert buf.best_reward == pytest.approx(best.reward) and buf.best_confidence == pytest.approx(best.confidence)
    obs, actions = buf.best_episode()
    assert obs.shape[0] == len(env.steps) == actions.shape[0]
    assert np.allclose(buf.rewards[buf.best_positions, 0], best.reward)
    model = agent.model
    before = float(torch.nn.functional.mse_loss(model.actor(torch.as_tensor(obs)), torch.as_tensor(actions)))
    model.imitation_steps = 200
    model._imitate_best()
    after = float(torch.nn.functional.mse_loss(model.actor(torch.as_tensor(obs)), torch.as_tensor(actions)))
    assert after < 0.25 * before


def test_exploration_noise_stays_in_the_action_box_and_narrows_over_episodes(problem):
    env = _env(problem, "haq")
    agent = CompressionAgent(env, AgentConfig(warmup_episodes=0, sigma=0.5, sigma_decay=0.5, min_sigma=0.01,
                                              updates_per_episode=1, batch_size=4, seed=0))
    model = agent.model
    first = model.current_sigma()
    model._episode_num = 3
    assert model.current_sigma() == pytest.approx(first * 0.125)
    model._last_obs = np.stack([env.reset(seed=0)[0]])
    model.num_timesteps = 10
    actions = np.concatenate([model._sample_action(0)[1] for _ in range(200)])
    assert actions.min() >= -1.0 and actions.max() <= 1.0


@pytest.mark.parametrize("algo", ["td3", "sac"])
def test_td3_and_sac_are_selectable_and_play_episodes(problem, algo):
    env = _env(problem)
    agent = CompressionAgent(env, AgentConfig(algo=algo, warmup_episodes=1, updates_per_episode=2, batch_size=4))
    assert len(agent.train(2)) == 2


def test_load_refuses_a_checkpoint_from_another_environment(problem, tmp_path):
    agent = CompressionAgent(_env(problem), AgentConfig(warmup_episodes=1, updates_per_episode=1, batch_size=4))
    agent.train(1)
    agent.save(tmp_path)
    with pytest.raises(RunError, match="was made for environment"):
        CompressionAgent.load(tmp_path, _env(problem, "haq"))
    with pytest.raises(RunError, match="missing or unreadable"):
        CompressionAgent.load(tmp_path / "nowhere", _env(problem))


def test_agent_config_rejects_unknown_algorithms_and_keys():
    with pytest.raises(ConfigError):
        AgentConfig(algo="ppo")
    with pytest.raises(ConfigError, match="unknown agent key"):
        AgentConfig.from_dict({"episodes_per_epoch": 3})


@pytest.mark.parametrize("name", sorted(BASELINES))
@pytest.mark.parametrize("mode", ["amc", "haq"])
def test_baselines_pick_a_policy_within_budget_and_evaluation_count(problem, name, mode):
    env = _env(problem, mode)
    episodes = run_baseline(name, env, 9, seed=0)
    assert 1 <= env.evaluations <= 9 and len(env.history) == len(episodes) <= 5 * 9
    assert env.best is not None and env.best.cost <= env.limit
    assert {e.source for e in episodes} == {name}


def test_uniform_baseline_compresses_every_layer_alike(problem):
    env = _env(problem, "haq")
    (episode,) = run_baseline("uniform", env, 5)
    assert set(episode.state["w_bits"]) == {4}


def test_sensitivity_scan_fits_the_evaluation_budget(problem):
    env = _env(problem, "haq")
    pairs = len(env.steps)
    assert len(sensitivity_levels(env, 2 * pairs + 1)) == 2
    assert len(sensitivity_levels(env, pairs)) == 1
    with pytest.raises(UnknownName):
        run_baseline("grid", env, 3)


def test_a_revisited_policy_reuses_its_accuracy_and_costs_no_evaluation(problem, monkeypatch):
    env = _env(problem)
    state = env.state_from_actions(np.zeros((len(env.steps), len(env.knobs))))
    first = env.record(state, "test")
    calls = []
    monkeypatch.setattr(problem, "accuracy", lambda *a, **k: calls.append(1) or 0.0)
    again = env.record(state, "test")
    assert calls == [] and again.accuracy == first.accuracy
    assert env.evaluations == 1 and len(env.history) == 2


def test_agent_search_stops_at_the_number_of_distinct_policies(problem):
    env = _env(problem)
    agent = CompressionAgent(env, AgentConfig(warmup_episodes=2, updates_per_episode=2, batch_size=8, seed=0))
    episodes = agent.search(3, max_episodes=30)
    assert env.evaluations == 3 and len(episodes) == len(env.history) >= 3


def test_exploration_widens_while_episodes_revisit_known_policies():
    from hwsearch.search.amc.agent import AmcDDPG

    algo = AmcDDPG.__new__(AmcDDPG)  # only the noise schedule is exercised
    algo.exploration_sigma, algo.exploration_decay, algo.exploration_min_sigma = 0.5, 0.5, 0.01
    algo.warmup_episodes, algo._episode_num = 0, 4
    algo.replay_buffer = type("Buffer", (), {"revisits": 0})()
    assert algo.current_sigma() == pytest.approx(0.5 * 0.5 ** 4)
    algo.replay_buffer.revisits = 2
    assert algo.current_sigma() == pytest.approx(0.5 * 0.5 ** 4 * 4)
    algo.replay_buffer.revisits = 10
    assert algo.current_sigma() == pytest.approx(0.5)


def test_a_search_with_a_scan_starts_from_the_scanned_policy_as_a_demonstration(problem):
    env = _env(problem)
    agent = CompressionAgent(env, AgentConfig(warmup_episodes=1, updates_per_episode=2, batch_size=8, seed=0,
                                              scan_share=0.5))
    agent.search(8, max_episodes=40)
    scanned = [e for e in env.history if e.source == "sensitivity"]
    assert scanned and agent.scanned
    assert env.evaluations == 8 and len(scanned) <= 4 + 1
    demo = env.history[len(scanned)]  # the thresholded policy, replayed through the env right after the scan
    assert demo.source == "agent" and demo.state == scanned[-1].state and demo.cost <= env.limit
    buffer = agent.model.replay_buffer
    assert np.allclose(buffer.rewards[:len(env.steps), 0], demo.reward)
    assert np.allclose(buffer.actions[:len(env.steps), 0], env.actions_for_state(demo.as_state()))
    assert agent.best.accuracy >= scanned[-1].accuracy
    agent.search(2, max_episodes=20)  # a second search (or a resumed one) does not scan again
    assert sum(1 for e in env.history if e.source == "sensitivity") == len(scanned)


def test_agent_config_rejects_a_scan_that_leaves_the_agent_nothing():
    with pytest.raises(ConfigError, match="scan_share"):
        AgentConfig(scan_share=1.0)


def test_the_agent_and_the_baselines_decide_heads_and_attention_density_together(problem):
    env = CompressionEnv(problem, EnvConfig(mode="amc", attention=True, budget=Budget("bitops", ratio=0.8)))
    assert env.knobs == ("keep", "attention")
    agent = CompressionAgent(env, AgentConfig(warmup_episodes=2, updates_per_episode=2, batch_size=4, seed=0))
    episodes = agent.train(3)
    episodes += run_baseline("uniform", env, 1)
    assert all(e.cost <= env.limit * (1 + 1e-9) for e in episodes)
    assert any(min(e.state["attention"]) < 100 for e in episodes)
    uniform = episodes[-1].state["attention"]
    assert len({v for v, s in zip(uniform, problem.slots, strict=True) if s.attention_tokens}) == 1
