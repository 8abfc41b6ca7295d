"""The AMC/HAQ environment: gymnasium contract, exact budgets by clipping, pricing and accuracy equal to
what `hwsearch.compress.apply_policy` really produces."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from hwsearch import spaces
from hwsearch.compress import compressed_netspec
from hwsearch.data import load_data
from hwsearch.errors import ConfigError, UnknownName
from hwsearch.search.amc.budget import METRICS, Budget, FilledTable
from hwsearch.search.amc.env import CompressionEnv, EnvConfig, Episode, channel_options
from hwsearch.search.amc.problem import TorchProblem


def _problem(space: str, **kw) -> TorchProblem:
    data = load_data("digits")
    sp = spaces.get(space, in_channels=1, num_classes=10, **kw)
    choice = sp.reference("middle" if space == "vit" else "smallest")
    shape = sp.input_shape(choice)
    d = data.at_resolution(shape[1])
    torch.manual_seed(0)
    model = sp.build(choice).eval()
    return TorchProblem(model, shape, d.x_val[:48], d.y_val[:48], calib=d.x_train[:32])


@pytest.fixture(scope="module")
def vit_problem() -> TorchProblem:
    return _problem("vit", resolution=16, embeds=(16,), depths=(2,), heads=(2,), mlp_ratios=(3,))


@pytest.fixture(scope="module")
def cnn_problem() -> TorchProblem:
    return _problem("ofa-mbv3", resolutions=(16,), widths=(16, 24), strides=(2, 2), acts=("relu", "hswish"),
                    se=(False, True), depths=(2,), kernels=(3,), expand_ratios=(3,), head_width=32)


def _random_state(env: CompressionEnv, seed: int):
    rng = np.random.default_rng(seed)
    return env.state_from_actions(rng.uniform(-1, 1, size=(len(env.steps), len(env.knobs))))


def test_env_passes_gymnasium_env_checker(vit_problem):
    for mode, budget in (("amc", Budget("macs", ratio=0.7)), ("joint", Budget("model_size", ratio=0.3))):
        check_env(CompressionEnv(vit_problem, EnvConfig(mode=mode, budget=budget)), skip_render_check=True)


@pytest.mark.parametrize("ratio", [0.5, 0.7])
def test_random_actions_meet_macs_budget_within_one_rounding_step(cnn_problem, ratio):
    env = CompressionEnv(cnn_problem, EnvConfig(mode="amc", budget=Budget("macs", ratio=ratio)))
    for seed in range(8):
        state = _random_state(env, seed)
        cost = env.cost(state)
        assert cost <= env.limit
        assert env.limit - cost <= env.step_cost(state)
        assert cost == cnn_problem.netspec(state).macs


def test_random_bit_widths_meet_average_weight_bits_budget_exactly(cnn_problem):
    env = CompressionEnv(cnn_problem, EnvConfig(mode="haq", budget=Budget("avg_w_bits", value=4.0), fixed_a_bits=32))
    assert env.knobs == ("w_bits",)
    for seed in range(5):
        state = _random_state(env, seed)
        assert 4.0 - env.step_cost(state) <= env.cost(state) <= 4.0
        assert set(state["w_bits"].tolist()) <= set(range(2, 9))
        assert abs(cnn_problem.netspec(state).avg_w_bits - env.cost(state)) < 1e-9


def test_episode_walks_every_decided_layer_and_rewards_accuracy_once(vit_problem):
    env = CompressionEnv(vit_problem, EnvConfig(mode="amc", budget=Budget("macs", ratio=0.7)))
    obs, _ = env.reset(seed=0)
    rewards, steps, done = [], 0, False
    while not done:
        assert env.observation_space.contains(obs)
        assert obs.shape == (env.observation_space.shape[0],)
        obs, reward, done, truncated, info = env.step(env.action_space.sample())
        rewards.append(reward)
        steps += 1
    assert steps == len(env.steps) and not truncated
    assert rewards[:-1] == [0.0] * (steps - 1)
    assert info["cost"] <= info["limit"]
    assert rewards[-1] == pytest.approx(info["accuracy"] - env.reference_accuracy)
    assert len(env.history) == 1 and env.best is env.history[0]


def test_observation_reports_budget_removed_so_far(cnn_problem):
    env = CompressionEnv(cnn_problem, EnvConfig(mode="amc", budget=Budget("macs", ratio=0.5)))
    obs, _ = env.reset(seed=0)
    removed = []
    for _ in env.steps:
        obs, *_ = env.step(np.array([1.0], dtype=np.float32))  # as much pruning as allowed
        removed.append(float(obs[1 + env._features.shape[1]]))
    assert removed[-1] > 0.4
    assert all(b >= a - 1e-6 for a, b in zip(removed, removed[1:], strict=False))


def test_fast_pricing_equals_compressed_netspec_of_the_applied_policy(cnn_problem, vit_problem):
    for problem, attention in ((cnn_problem, False), (vit_problem, False), (vit_problem, True)):
        env = CompressionEnv(problem, EnvConfig(mode="joint", attention=attention, budget=Budget("bitops", ratio=0.5)))
        state = _random_state(env, 3)
        assert (state["attention"] < 100).any() == attention
        traced = compressed_netspec(problem.apply(state), problem.input_shape)
        # The fast pricing plans even masks; the rows' spread is measured on the calibrated ones only.
        even = [x.with_(density_std=0.0).key for x in traced.layers]
        assert even == [x.key for x in problem.netspec(state).layers]
        for metric, fn in METRICS.items():
            assert problem.fast_metric(metric)(state) == pytest.approx(fn(traced), rel=1e-9)


def test_attention_density_is_one_more_per_layer_action_decided_on_each_blocks_qkv_layer(vit_problem):
    env = CompressionEnv(vit_problem, EnvConfig(mode="attention", budget=Budget("bitops", ratio=0.99)))
    assert env.knobs == ("attention",)
    decided = [vit_problem.slots[i].name for i in env.steps]
    assert decided == ["blocks.0.attn.qkv", "blocks.1.attn.qkv"]
    assert env.options["attention"][env.steps[0]] == list(range(20, 101, 5))
    obs, _ = env.reset(seed=0)
    done = False
    while not done:
        obs, reward, done, _, info = env.step(np.array([0.6], dtype=np.float32))
    assert info["cost"] <= info["limit"]
    state = env.history[-1].as_state()
    policy = vit_problem.policy(state)
    densities = {n: lp.attention_density for n, lp in policy.layers.items()}
    assert set(densities) == set(decided) and min(densities.values()) < 1.0
    model = vit_problem.apply(state)
    net = compressed_netspec(model, vit_problem.input_shape)
    assert {x.name: x.density for x in net.layers if x.op == "softmax"} == {
        n.replace("qkv", "softmax"): x.density for n in decided for x in vit_problem.netspec(state).layers
        if x.name == n.replace("qkv", "softmax")}
    assert env.action_for("attention", env.steps[0], 60) == pytest.approx(0.0)
    old = Episode.from_dict({"index": 0, "state": {"keep": [1, 2], "w_bits": [32, 32], "a_bits": [32, 32]},
                             "cost": 1.0, "accuracy": 0.5, "reward": 0.0})
    assert old.state["attention"] == (100, 100)  # records written before the knob read as dense attention


def test_masked_evaluation_computes_what_the_pruned_and_quantized_model_computes(vit_problem):
    env = CompressionEnv(vit_problem, EnvConfig(mode="joint", budget=Budget("model_size", ratio=0.3),
                                                fixed_a_bits=32))
    state = _random_state(env, 1)
    assert state["keep"].min() < max(s.channels for s in vit_problem.slots)
    x = vit_problem.data["val"][0][:16]
    real_model = vit_problem.apply(state)
    with torch.no_grad():
        masked = vit_problem._masked_model(state)(x)
        real = real_model(x)
    torch.testing.assert_close(masked, real, rtol=1e-4, atol=1e-4)


def test_layernorm_width_and_classifier_output_are_never_pruned(vit_problem):
    names = {s.name for s in vit_problem.slots if s.prunable}
    assert "patch" not in names and "head" not in names
    assert "patch" in vit_problem.unprunable and any(n.endswith("qkv") for n in names)


def test_unreachable_budget_is_a_config_error_naming_the_smallest_cost(cnn_problem):
    with pytest.raises(ConfigError, match="smallest reachable macs"):
        CompressionEnv(cnn_problem, EnvConfig(mode="amc", budget=Budget("macs", ratio=0.01)))
    with pytest.raises(ConfigError, match="needs a predictor"):
        CompressionEnv(cnn_problem, EnvConfig(mode="amc", budget=Budget("latency", ratio=0.5)))


def test_budget_and_config_reject_bad_input():
    with pytest.raises(UnknownName):
        Budget("flops", ratio=0.5)
    with pytest.raises(ConfigError):
        Budget("macs", ratio=0.5, value=3.0)
    with pytest.raises(ConfigError):
        Budget("macs", ratio=1.5)
    with pytest.raises(ConfigError):
        EnvConfig(mode="prune")
    assert Budget.from_dict(Budget("avg_w_bits", value=4).to_dict()) == Budget("avg_w_bits", value=4)
    assert EnvConfig.from_dict(EnvConfig(mode="haq").to_dict()) == EnvConfig(mode="haq")


def test_latency_and_energy_budgets_use_a_latency_table_filled_by_the_accelerator_model(vit_problem):
    from hwsearch.estimators.latency_table import LatencyTable, model_entry, model_fingerprint
    from hwsearch.hwmodel import Accelerator

    accel = Accelerator.preset("bitfusion")
    table = FilledTable(LatencyTable("model", model_fingerprint(accel)), lambda layer: model_entry(layer, accel))
    for metric in ("latency", "energy"):
        env = CompressionEnv(vit_problem, EnvConfig(mode="joint", budget=Budget(metric, ratio=0.7)), predictor=table)
        state = _random_state(env, 0)
        net = vit_problem.netspec(state)
        expected = table.predict(net) if metric == "latency" else table.predict_energy(net)
        assert env.cost(state) == pytest.approx(expected)
        assert env.cost(state) <= env.limit


def test_channel_options_round_to_multiples_and_respect_max_sparsity():
    assert channel_options(64, 0.8, 8) == [16, 24, 32, 40, 48, 56, 64]
    assert channel_options(20, 0.8, 8) == [8, 16, 20]
    assert channel_options(4, 0.5, 8) == [2, 3, 4]


def test_equally_accurate_policies_are_ranked_by_confidence_then_order(vit_problem, monkeypatch):
    env = CompressionEnv(vit_problem, EnvConfig(mode="amc", budget=Budget("macs", ratio=0.7)))
    states = [_random_state(env, seed) for seed in range(6)]
    keys = [tuple(int(x) for x in s["keep"]) for s in states]
    distinct = [s for i, s in enumerate(states) if keys[i] not in keys[:i]][:3]
    assert len(distinct) == 3
    confidence = {tuple(int(x) for x in s["keep"]): c for s, c in zip(distinct, (0.6, 0.9, 0.9), strict=True)}
    monkeypatch.setattr(vit_problem, "accuracy", lambda state, split="val": 0.5)
    monkeypatch.setattr(vit_problem, "confidence", lambda state, split="val": confidence[tuple(int(x) for x in state["keep"])])
    episodes = [env.record(s, source="test") for s in distinct]
    assert env.best is episodes[1]  # most confident; the later equally confident one loses on order
    again = env.record(distinct[0], source="test")
    assert again.confidence == 0.6 and env.evaluations == 3


def test_episode_confidence_survives_a_round_trip_and_old_records_read_as_unknown(vit_problem):
    env = CompressionEnv(vit_problem, EnvConfig(mode="amc", budget=Budget("macs", ratio=0.7)))
    episode = env.record(_random_state(env, 0), source="test")
    assert 0.0 < episode.confidence <= 1.0
    assert Episode.from_dict(episode.to_dict()) == episode
    old = {k: v for k, v in episode.to_dict().items() if k != "confidence"}
    assert np.isnan(Episode.from_dict(old).confidence)


def test_the_accelerator_pricer_in_milliseconds_equals_the_accelerator_models_network_cost(vit_problem):
    from hwsearch.hwmodel import Accelerator, network_cost
    from hwsearch.search.amc.budget import accelerator_pricer

    accel = Accelerator.preset("bitfusion")
    seconds, millis = accelerator_pricer(accel), accelerator_pricer(accel, "ms_mj")
    env = CompressionEnv(vit_problem, EnvConfig(mode="joint", budget=Budget("macs", ratio=0.7)))
    for seed in range(3):
        net = vit_problem.netspec(_random_state(env, seed))
        cost = network_cost(net, accel)
        assert millis.predict(net) == cost.latency_s * 1e3 and millis.predict_energy(net) == cost.energy_pj * 1e-9
        assert seconds.predict(net) == cost.latency_s and seconds.predict_energy(net) == cost.energy_pj


def test_the_searcher_settings_and_the_agent_refuse_the_same_values_with_the_same_defaults():
    from pydantic import ValidationError

    from hwsearch.search.amc.settings import AgentConfig, CompressionSettings

    s = CompressionSettings()
    assert (s.warmup_episodes, s.sigma, s.max_sparsity, s.round_to, s.min_bits) == (
        AgentConfig().warmup_episodes, AgentConfig().sigma, EnvConfig().max_sparsity, EnvConfig().round_to,
        EnvConfig().min_bits)
    for key, value in (("warmup_episodes", -1), ("sigma_decay", 0.0), ("updates_per_episode", 0)):
        with pytest.raises(ValidationError):
            CompressionSettings(**{key: value, "episodes": 50})
        with pytest.raises(ConfigError, match=key):
            AgentConfig(**{key: value})
    for key, value in (("max_sparsity", 1.0), ("round_to", 0), ("min_bits", 0), ("fixed_a_bits", 16)):
        with pytest.raises(ValidationError):
            CompressionSettings(**{key: value})
        with pytest.raises(ConfigError, match=key):
            EnvConfig(**{key: value})
