"""The `gpt` space: exact NetSpecs, causal attention, references and settings."""

import numpy as np
import pytest
import torch

from hwsearch import spaces
from hwsearch.errors import ConfigError
from hwsearch.estimators.counters import count_params, trace_netspec

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("kwargs", [{}, {"num_classes": 17, "context": 12, "head_dim": 8, "embeds": [16, 24]}])
def test_hook_traced_netspec_equals_to_netspec_for_random_choices(kwargs):
    space = spaces.get("gpt", **kwargs)
    rng = np.random.default_rng(24)
    for _ in range(8):
        choice = space.sample(rng)
        model = space.build(choice)
        for batch in (1, 2):
            traced = trace_netspec(model, space.input_shape(choice), batch=batch)
            analytic = space.to_netspec(choice, batch=batch)
            assert [(x.name, x) for x in traced.layers] == [(x.name, x) for x in analytic.layers]
            assert traced.input_shape == analytic.input_shape == (1, 1, space.context)
        assert count_params(model) == analytic.params


def test_each_block_shows_its_causal_mask_between_the_scores_and_the_softmax():
    space = spaces.get("gpt", context=32)
    choice = {**space.reference("smallest"), "layer0.heads": 3}
    names = [layer.name for layer in space.to_netspec(choice).layers]
    i = names.index("blocks.0.attn.qk")
    assert names[i + 1:i + 3] == ["blocks.0.attn.mask", "blocks.0.attn.softmax"]
    mask = space.to_netspec(choice).layers[i + 1]
    assert (mask.op, mask.fn, mask.c, mask.in_h, mask.in_w) == ("eltwise", "add", 3, 32, 32)
    head = space.to_netspec(choice).layers[-1]
    assert (head.name, head.op, head.m, head.k, head.bias) == ("head", "linear", 32, 65, False)


@pytest.mark.parametrize("reference", ["smallest", "middle", "largest"])
def test_changing_a_future_token_leaves_the_logits_of_earlier_positions_unchanged(reference):
    space = spaces.get("gpt", context=16)
    torch.manual_seed(0)
    model = space.build(space.reference(reference)).eval()
    x = torch.randint(0, space.vocab, (3, 16), generator=torch.Generator().manual_seed(1))
    for pos in (0, 7, 15):
        changed = x.clone()
        changed[:, pos] = (changed[:, pos] + 1) % space.vocab
        with torch.no_grad():
            a, b = model(x), model(changed)
        assert torch.equal(a[:, :pos], b[:, :pos])
        assert not torch.allclose(a[:, pos:], b[:, pos:])


def test_the_token_table_is_the_heads_weight_and_counted_once():
    space = spaces.get("gpt")
    choice = space.reference("smallest")
    model = space.build(choice)
    names = [n for n, _ in model.named_parameters()]
    assert "head.weight" in names and not any(n.startswith("tokens") for n in names)
    e = choice["embed"]
    assert space.to_netspec(choice).layers[-1].params == e * space.vocab


def test_references_are_ordered_by_size_and_middle_lies_between():
    space = spaces.get("gpt")
    macs = {r: space.to_netspec(space.reference(r)).macs for r in space.references()}
    assert set(macs) == {"largest", "middle", "smallest"}
    assert macs["smallest"] < macs["middle"] < macs["largest"]


def test_logits_have_one_row_per_position_and_a_window_of_another_length_is_refused():
    space = spaces.get("gpt", num_classes=11, context=8)
    model = space.build(space.reference("smallest"))
    assert model(torch.zeros(2, 8, dtype=torch.int64)).shape == (2, 8, 11)
    assert model(torch.zeros(2, 1, 1, 8)).shape == (2, 8, 11)
    with pytest.raises(ConfigError, match="8 tokens"):
        model(torch.zeros(2, 5, dtype=torch.int64))


@pytest.mark.parametrize("kwargs, match", [
    ({"context": 0}, "context"),
    ({"num_classes": 1}, "vocabulary"),
    ({"in_channels": 3}, "in_channels"),
    ({"embeds": [64, 64]}, "gpt: embeds"),
    ({"mlp_ratios": [0]}, "gpt: mlp_ratios"),
])
def test_bad_settings_are_config_errors_naming_the_field(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        spaces.get("gpt", **kwargs)


def test_shrinking_heads_and_the_embedding_width_keeps_the_token_table_tied_to_the_head():
    from hwsearch.compress import LayerPolicy, Policy, apply_policy, compressed_netspec, prunable_layers

    space = spaces.get("gpt", context=16)
    choice = space.reference("largest")
    torch.manual_seed(0)
    model = space.build(choice).eval()
    shape = space.input_shape(choice)
    leaders = {layer.name: layer for layer in prunable_layers(model, shape) if layer.leader}
    width = next(n for n, layer in leaders.items() if layer.unit == "channels" and layer.units == choice["embed"])
    heads = [n for n, layer in leaders.items() if layer.unit == "heads"]
    small = apply_policy(model, Policy({width: LayerPolicy(keep=0.5), **{n: LayerPolicy(keep=0.5) for n in heads}}),
                         shape)
    assert small.head.weight.shape == (space.vocab, choice["embed"] // 2)
    x = torch.randint(0, space.vocab, (2, 16))
    with torch.no_grad():
        assert small(x).shape == (2, 16, space.vocab)
    net = compressed_netspec(small, shape)
    assert net.params == count_params(small)
    assert [layer.k for layer in net.layers if layer.name.endswith("attn.qkv")] == [3 * 2 * space.head_dim] * 4
