"""The `gpt` supernet: shared weights, progressive shrinking on text, extraction, NetSpecs and the cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwsearch import spaces
from hwsearch.datasets.tinyshakespeare import Corpus, TextDataset
from hwsearch.estimators.counters import trace_netspec
from hwsearch.lm_eval import lm_score
from hwsearch.spaces.supernet import (
    SuperNet,
    calibrated,
    extract_subnet,
    load_or_train,
    schedule,
    subnet_accuracy,
    train_supernet,
)
from hwsearch.train import evaluate

TEXT = "".join(f"Line {i}: to be, or not to be; that is the question? {'xyz'[i % 3]}\n" for i in range(80))
TINY = {"context": 8, "embeds": [8, 16], "head_dim": 4, "depths": [1, 2], "heads": [1, 2], "mlp_ratios": [1, 2]}
PLAN = {"preset": "tiny", "max_steps_per_epoch": 2, "recipe": {"batch_size": 16}}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def text() -> TextDataset:
    return Corpus(TEXT, context=8).split("text", 0)


@pytest.fixture(scope="module")
def trained(text) -> SuperNet:
    torch.manual_seed(0)
    sn = SuperNet(spaces.get("gpt", num_classes=text.num_classes, **TINY))
    log = train_supernet(sn, text, schedule(PLAN), seed=0)
    # a gpt has no kernel gene: progressive shrinking runs the largest network, then depth, then width
    assert [p.phase for p in log.phases] == ["full", "depth", "width"]
    assert all(np.isfinite(p.loss) for p in log.phases)
    return sn


def _choices(sn: SuperNet, n: int = 3) -> list[dict]:
    rng = np.random.default_rng(1)
    return [sn.space.reference("largest"), sn.space.reference("smallest")] + [sn.space.sample(rng) for _ in range(n)]


def test_an_extracted_gpt_gives_the_supernets_logits_and_the_spaces_netspec(trained, text):
    for choice in _choices(trained):
        model = extract_subnet(trained, text, choice)
        assert type(model) is type(trained.space.build(choice))
        shape = trained.space.input_shape(choice)
        assert trace_netspec(model, shape).layers == trained.space.to_netspec(choice).layers
        with torch.no_grad():
            standalone = model(text.x_test)
        assert standalone.shape == (len(text.x_test), 8, text.num_classes)
        assert torch.equal(standalone, trained.logits(choice, text.x_test, calibrated(trained, text, choice)))
        assert subnet_accuracy(trained, text, choice, "test") == evaluate(model, text.x_test, text.y_test)


def test_sub_networks_share_the_supernets_weights_and_the_tied_table_is_its_heads(trained):
    small = trained.space.reference("smallest")
    weights = trained.weights(small)
    full = dict(trained.full.named_parameters())
    e = small["embed"]
    assert weights["head.weight"].shape == (trained.space.vocab, e)
    assert torch.equal(weights["head.weight"], full["head.weight"][:, :e])
    assert weights["head.weight"].data_ptr() == full["head.weight"].data_ptr()  # a view, not a copy
    assert not any(name.startswith("tokens") for name in weights)


def test_a_sub_networks_loss_reaches_the_shared_weights(text):
    torch.manual_seed(0)
    sn = SuperNet(spaces.get("gpt", num_classes=text.num_classes, **TINY))
    small = sn.space.reference("smallest")
    sn.train()
    logits = sn(text.x_train[:4], small)
    torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), text.y_train[:4].reshape(-1)).backward()
    grad = sn.full.head.weight.grad
    e = small["embed"]
    assert grad[:, :e].abs().sum() > 0 and torch.all(grad[:, e:] == 0)


def test_sorting_heads_and_hidden_units_keeps_the_largest_gpts_function(text):
    torch.manual_seed(0)
    sn = SuperNet(spaces.get("gpt", num_classes=text.num_classes, **TINY)).eval()
    largest = sn.largest
    buffers = calibrated(sn, text, largest)
    before = sn.logits(largest, text.x_val, buffers)
    assert sn.reorder_channels() == 2 * max(TINY["depths"])  # an attention and an MLP per block
    assert torch.allclose(sn.logits(largest, text.x_val, buffers), before, atol=1e-5)


def test_a_gpt_supernet_is_cached_under_its_text_and_reused(tmp_path, monkeypatch):
    monkeypatch.setenv("HWSEARCH_CACHE", str(tmp_path / "cache"))
    (tmp_path / "text.txt").write_text(TEXT, encoding="utf-8")
    source = f"tinyshakespeare:{tmp_path / 'text.txt'}?context=8"
    first = load_or_train("gpt", source, PLAN, seed=0, space_kwargs=TINY)
    assert first.trained_now and first.space_options["num_classes"] == len(set(TEXT))
    again = load_or_train("gpt", source, PLAN, seed=0, space_kwargs=TINY)
    assert not again.trained_now and again.key == first.key
    choice = first.space.reference("smallest")
    a, b = extract_subnet(first.supernet, first.data, choice), extract_subnet(again.supernet, again.data, choice)
    assert lm_score(a, first.data.x_val, first.data.y_val) == lm_score(b, again.data.x_val, again.data.y_val)


def test_the_gpt_fast_schedule_is_its_own_and_has_no_kernel_phase():
    plan = schedule("fast", "gpt")
    assert plan != schedule("fast", "vit") and plan.max_steps_per_epoch is not None
    assert plan.epochs_kernel == 0 and plan.recipe.label_smoothing == 0
