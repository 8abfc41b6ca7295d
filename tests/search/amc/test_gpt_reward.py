"""The AMC/HAQ reward of a language model: minus the log of its perplexity, measured as `apply_policy` would."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hwsearch import spaces
from hwsearch.datasets.tinyshakespeare import Corpus
from hwsearch.lm_eval import lm_score
from hwsearch.search.amc.budget import Budget
from hwsearch.search.amc.env import CompressionEnv, EnvConfig
from hwsearch.search.amc.problem import TorchProblem
from hwsearch.train import Recipe, train_and_evaluate

TEXT = "".join(f"Line {i}: to be, or not to be; that is the question? {'xyz'[i % 3]}\n" for i in range(80))


@pytest.fixture(scope="module")
def problem() -> TorchProblem:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    data = Corpus(TEXT, context=8).split("text", 0)
    space = spaces.get("gpt", num_classes=data.num_classes, context=8, embeds=[16], head_dim=4, depths=[2],
                       heads=[2], mlp_ratios=[2])
    choice = space.reference("largest")
    torch.manual_seed(0)
    model = space.build(choice)
    train_and_evaluate(model, data, seed=0, recipe=Recipe(epochs=1, batch_size=32, label_smoothing=0.0))
    yield TorchProblem(model, space.input_shape(choice), data.x_val[:32], data.y_val[:32], data.x_test, data.y_test,
                       calib=data.x_train[:8], round_to=1)
    torch.set_num_threads(threads)


def test_a_language_models_score_is_minus_its_loss_and_has_no_confidence(problem):
    env = CompressionEnv(problem, EnvConfig(budget=Budget("macs", ratio=0.8), round_to=1))
    full = env.max_state_full()
    x, y = problem.data["val"]
    assert problem.language_model
    assert env.reference_accuracy == pytest.approx(-lm_score(problem.model, x, y).loss, rel=1e-12)
    assert math.isnan(problem.confidence(full))
    assert -env.reference_accuracy == pytest.approx(math.log(lm_score(problem.model, x, y).perplexity))


def test_the_masked_score_of_a_pruned_gpt_equals_the_applied_policys(problem):
    env = CompressionEnv(problem, EnvConfig(budget=Budget("macs", ratio=0.8), round_to=1))
    rng = np.random.default_rng(0)
    x, y = problem.data["val"]
    for _ in range(3):
        state = env.state_from_actions(rng.uniform(-1, 1, size=(len(env.steps), len(env.knobs))))
        assert (state["keep"] < env.max_state["keep"]).any()  # a MACs budget of 0.8 prunes something
        fast, exact = problem.accuracy(state), problem.accuracy(state, exact=True)
        assert fast == pytest.approx(exact, abs=1e-5)
        assert exact == pytest.approx(-lm_score(problem.apply(state), x, y).loss, rel=1e-12)
        episode = env.record(state, "test")
        assert episode.reward == pytest.approx(fast - env.reference_accuracy)


def test_the_fast_netspec_of_a_gpt_with_attention_masks_takes_their_share_of_the_causal_triangle(problem):
    from hwsearch.compress import compressed_netspec

    env = CompressionEnv(problem, EnvConfig(mode="joint", attention=True, budget=Budget("macs", ratio=0.8),
                                            round_to=1))
    rng = np.random.default_rng(3)
    state = env.state_from_actions(rng.uniform(-1, 1, size=(len(env.steps), len(env.knobs))))
    assert (np.asarray(state["attention"]) < 100).any()
    planned = compressed_netspec(problem.model, problem.input_shape, problem.policy(state))
    fast = problem.netspec(state)
    assert [x.key for x in fast.layers] == [x.key for x in planned.layers]
    t = problem.input_shape[-1]
    maps = [x for x in fast.layers if x.op == "softmax"]
    assert maps and all(x.density <= (t + 1) / (2 * t) for x in maps)
    assert any(x.density < (t + 1) / (2 * t) for x in maps)
