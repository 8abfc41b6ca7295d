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


@pytest.mark.parametrize("t", [1, 7, 32])
def test_the_causal_maps_carry_the_lower_triangles_density_and_row_spread(t):
    space = spaces.get("gpt", context=t)
    net = space.to_netspec(space.reference("smallest"), batch=2)
    rows = (np.arange(t) + 1) / t  # query row i keeps its first i+1 keys
    maps = [x for x in net.layers if x.op in ("matmul", "softmax")]
    assert {x.name.rsplit(".", 1)[1] for x in maps} == {"qk", "softmax", "av"}
    for layer in maps:
        assert layer.density == pytest.approx((t + 1) / (2 * t), rel=1e-15) == pytest.approx(rows.mean())
        assert layer.density_std == pytest.approx(rows.std(), rel=1e-12, abs=1e-15)
    assert all(x.density == 1.0 and x.density_std == 0.0 for x in net.layers if x.op not in ("matmul", "softmax"))
    # The dense counts stay the full map's (what a FLOP counter and non-skipping hardware see).
    plain = [x.with_(density=1.0, density_std=0.0) for x in net.layers]
    assert net.macs == sum(x.macs for x in plain) and [x.vector_ops for x in net] == [x.vector_ops for x in plain]
    if t > 1:
        assert net.effective_macs < net.macs


def test_hardware_without_sparse_attention_prices_the_causal_maps_exactly_as_the_full_map():
    from hwsearch.hwmodel import Accelerator, cost, network_cost, preset_names

    space = spaces.get("gpt", context=32)
    net = space.to_netspec(space.reference("middle"))
    plain = type(net)(tuple(x.with_(density=1.0, density_std=0.0) for x in net.layers), net.input_shape)
    for name in preset_names():
        accel = Accelerator.preset(name)
        if accel.sparse_attention:
            continue
        assert [c.to_dict() for c in network_cost(net, accel).layers] == \
            [c.to_dict() for c in network_cost(plain, accel).layers], name
    sparse = Accelerator.preset("edge-sparse")
    qk = next(x for x in net.layers if x.name == "blocks.0.attn.qk")
    skipping, full = cost(qk, sparse), cost(qk.with_(density=1.0, density_std=0.0), sparse)
    assert skipping.mapping["skip"] == "attention" and skipping.executed_macs < full.executed_macs
    assert network_cost(net, sparse).total_cycles < network_cost(plain, sparse).total_cycles


def test_a_compression_mask_on_causal_maps_combines_with_the_triangle():
    from hwsearch.compress import LayerPolicy, Policy, apply_policy, compressed_netspec
    from hwsearch.compress.attention_mask import masked_softmaxes
    from hwsearch.spaces.gpt import causal_density

    t = 16
    space = spaces.get("gpt", context=t)
    choice = space.reference("smallest")
    torch.manual_seed(0)
    model = space.build(choice).eval()
    shape = space.input_shape(choice)
    policy = Policy({"blocks.0.attn.qkv": LayerPolicy(attention_density=0.4)})
    causal = causal_density(t)
    planned = {x.name: x for x in compressed_netspec(model, shape, policy).layers}
    share = masked_softmaxes(apply_policy(model, policy, shape))["blocks.0.attn.softmax"].kept_share()
    for part in ("qk", "softmax", "av"):
        # Before data: the policy's share of every row the triangle keeps.
        assert planned[f"blocks.0.attn.{part}"].density == share * causal["density"]
        assert planned[f"blocks.0.attn.{part}"].density_std == share * causal["density_std"]
        assert planned[f"blocks.1.attn.{part}"].density == causal["density"]  # no policy there
    calib = torch.randint(0, space.vocab, (8, t), generator=torch.Generator().manual_seed(1))
    c = apply_policy(model, policy, shape, calib=calib)
    mask = masked_softmaxes(c)["blocks.0.attn.softmax"].mask > 0.5
    keep = mask & torch.ones(t, t, dtype=torch.bool).tril()
    rows = keep.double().mean(dim=-1).flatten()
    measured = {x.name: x for x in compressed_netspec(c, shape).layers}
    for part in ("qk", "softmax", "av"):
        # Once measured: exactly the positions both masks keep.
        assert measured[f"blocks.0.attn.{part}"].density == float(keep.sum()) / keep.numel()
        assert measured[f"blocks.0.attn.{part}"].density_std == pytest.approx(float(rows.std(unbiased=False)))
    assert measured["blocks.0.attn.qk"].density <= causal["density"]
