"""The contract every registered space keeps, and what the ofa-mbv3 and vit spaces promise besides."""

import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hwsearch import spaces
from hwsearch.cli import app
from hwsearch.errors import ConfigError, SpecError, UnknownName
from hwsearch.estimators.counters import count_params, trace_netspec
from hwsearch.ir import NetSpec
from hwsearch.spaces.profiles import PROFILES

SPACES = spaces.names()
RANDOM_CHOICES = 100
# fbnet builds 224x224 networks of ~60 blocks; a cheaper count keeps the file under a minute.
RANDOM_CHOICES_PER_SPACE = {"fbnet": 25}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _traced(space, choice, batch=1):
    with torch.no_grad():
        model = space.build(choice)
        return model, trace_netspec(model, space.input_shape(choice), batch=batch)


def _assert_same_layers(traced: NetSpec, analytic: NetSpec) -> None:
    assert len(traced.layers) == len(analytic.layers)
    for got, want in zip(traced.layers, analytic.layers, strict=True):
        assert (got.name, got) == (want.name, want)
    assert traced.input_shape == analytic.input_shape


@pytest.mark.parametrize("name", SPACES)
def test_hook_traced_netspec_equals_to_netspec_layer_by_layer_for_random_choices(name):
    space = spaces.get(name)
    rng = np.random.default_rng(1234)
    for _ in range(RANDOM_CHOICES_PER_SPACE.get(name, RANDOM_CHOICES)):
        choice = space.sample(rng)
        model, traced = _traced(space, choice)
        analytic = space.to_netspec(choice)
        _assert_same_layers(traced, analytic)
        assert traced.macs == analytic.macs
        assert count_params(model) == analytic.params


@pytest.mark.parametrize("name", SPACES)
def test_reference_choices_exist_and_trace_to_their_netspec(name):
    space = spaces.get(name)
    assert {"largest", "smallest"} <= set(space.references())
    for ref in space.references():
        choice = space.reference(ref)
        assert space.validate(choice) == choice
        model, traced = _traced(space, choice)
        _assert_same_layers(traced, space.to_netspec(choice))
        assert count_params(model) == space.to_netspec(choice).params
    largest, smallest = (space.to_netspec(space.reference(r)) for r in ("largest", "smallest"))
    assert largest.macs > smallest.macs


@pytest.mark.parametrize("name", SPACES)
def test_netspec_at_a_larger_batch_matches_the_trace_at_that_batch(name):
    space = spaces.get(name)
    choice = space.sample(np.random.default_rng(7))
    _, traced = _traced(space, choice, batch=3)
    _assert_same_layers(traced, space.to_netspec(choice, batch=3))


@pytest.mark.parametrize("name", SPACES)
def test_an_unknown_reference_is_an_unknown_name_error(name):
    with pytest.raises(UnknownName, match="largest"):
        spaces.get(name).reference("no-such-reference")


@pytest.mark.parametrize("name", SPACES)
def test_sample_mutate_and_crossover_give_valid_choices(name):
    space = spaces.get(name)
    rng = np.random.default_rng(0)
    for _ in range(20):
        a, b = space.sample(rng), space.sample(rng)
        child = space.crossover(a, b, rng)
        mutant = space.mutate(a, rng)
        for c in (a, b, child, mutant):
            assert space.validate(c) == c
        assert mutant != a
        assert all(child[g] in (a[g], b[g]) for g in space.dim_names)


@pytest.mark.parametrize("name", SPACES)
@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1))
def test_encode_decode_round_trip_with_fixed_length_encodings(name, seed):
    space = spaces.get(name)
    choice = space.sample(np.random.default_rng(seed))
    assert space.decode(space.encode(choice)) == choice
    assert len(space.encode(choice)) == len(space.dims)
    hot = space.one_hot(choice)
    assert hot.shape == (sum(len(d.options) for d in space.dims),)
    assert hot.sum() == len(space.dims)


@pytest.mark.parametrize("name", SPACES)
def test_a_choice_survives_a_json_round_trip_with_the_same_netspec(name):
    space = spaces.get(name)
    choice = space.sample(np.random.default_rng(3))
    again = json.loads(json.dumps(choice))
    assert again == choice
    assert space.to_netspec(again) == space.to_netspec(choice)
    assert NetSpec.from_dict(json.loads(json.dumps(space.to_netspec(choice).to_dict()))) == space.to_netspec(choice)


@pytest.mark.parametrize("name", SPACES)
def test_a_choice_with_a_missing_or_disallowed_gene_is_refused(name):
    space = spaces.get(name)
    choice = space.sample(np.random.default_rng(0))
    gene = space.dim_names[0]
    with pytest.raises(SpecError, match="missing"):
        space.to_netspec({k: v for k, v in choice.items() if k != gene})
    with pytest.raises(SpecError, match=gene):
        space.to_netspec({**choice, gene: "not-an-option"})


@pytest.mark.parametrize("name", SPACES)
def test_cli_sample_json_prints_the_choice_and_its_costs(name):
    runner = CliRunner()
    result = runner.invoke(app, ["spaces", "sample", name, "--seed", "0", "--format", "json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert {"choice", "macs", "params", "peak_activation_bytes", "netspec"} <= set(out)
    space = spaces.get(name)
    assert out["choice"] == space.sample(np.random.default_rng(0))
    assert out["macs"] == space.to_netspec(out["choice"]).macs > 0
    ref = runner.invoke(app, ["spaces", "sample", name, "--reference", "largest", "--format", "json"])
    assert ref.exit_code == 0, ref.output
    assert json.loads(ref.stdout)["choice"] == space.reference("largest")


def test_cli_sample_with_an_unknown_reference_fails_with_an_unknown_name_error():
    result = CliRunner().invoke(app, ["spaces", "sample", "vit", "--reference", "huge"])
    assert isinstance(result.exception, UnknownName)


# ---- ofa-mbv3 --------------------------------------------------------------------------------------
def test_ofa_mbv3_skips_the_last_blocks_of_a_shallow_stage():
    space = spaces.get("ofa-mbv3")
    choice = {**space.reference("largest"), "stage1.depth": 2}
    net = space.to_netspec(choice)
    assert any(layer.name.startswith("stages.1.1.") for layer in net.layers)
    assert not any(layer.name.startswith("stages.1.2.") for layer in net.layers)
    # genes of a skipped block change nothing
    assert space.to_netspec({**choice, "stage1.block3.kernel": 3}) == net


def test_ofa_mbv3_resolution_gene_sets_the_input_shape_and_in_channels_follow_the_data():
    space = spaces.get("ofa-mbv3", in_channels=1, resolutions=(16, 24))
    choice = {**space.reference("smallest"), "resolution": 24}
    assert space.input_shape(choice) == (1, 24, 24)
    _, traced = _traced(space, choice)
    _assert_same_layers(traced, space.to_netspec(choice))
    assert traced.layers[0].c == 1


def test_ofa_mbv3_kernel_and_expand_genes_shape_the_depthwise_conv():
    space = spaces.get("ofa-mbv3")
    choice = {**space.reference("smallest"), "stage2.block0.kernel": 7, "stage2.block0.expand": 6}
    dw = next(layer for layer in space.to_netspec(choice).layers if layer.name == "stages.2.0.dw.conv")
    assert (dw.op, dw.r, dw.s, dw.c) == ("dwconv", 7, 7, 6 * space.widths[1])


def test_ofa_mbv3_default_networks_stay_small_enough_to_train_on_a_laptop():
    space = spaces.get("ofa-mbv3")
    assert space.to_netspec(space.reference("largest")).macs < 20_000_000
    assert space.to_netspec(space.reference("smallest")).macs > 500_000


@pytest.mark.parametrize("kwargs, match", [
    ({"widths": (16, 24), "strides": (2, 2, 2)}, "strides"),
    ({"kernels": (3, 4)}, "odd"),
    ({"acts": ("relu", "relu", "swish", "hswish", "hswish")}, "swish"),
    ({"resolutions": ()}, "resolutions"),
    ({"in_channels": 0}, "in_channels"),
    ({"expand_ratios": (0.5, 3)}, "expand"),
])
def test_ofa_mbv3_rejects_bad_settings_with_a_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        spaces.get("ofa-mbv3", **kwargs)


# ---- vit --------------------------------------------------------------------------------------------
def test_vit_attention_shows_matmuls_softmax_and_norms_as_their_own_layers():
    space = spaces.get("vit")
    choice = {**space.reference("smallest"), "depth": 2, "layer0.heads": 3}
    net = space.to_netspec(choice)
    ops = [layer.op for layer in net.layers if layer.name.startswith("blocks.0.")]
    assert ops.count("matmul") == 2 and ops.count("softmax") == 1 and ops.count("norm") == 2
    qk = next(layer for layer in net.layers if layer.name == "blocks.0.attn.qk")
    tokens = (space.resolution // space.patch_size) ** 2
    assert (qk.n, qk.m, qk.c, qk.k) == (3, tokens, space.head_dim, tokens)
    qkv = next(layer for layer in net.layers if layer.name == "blocks.0.attn.qkv")
    assert qkv.k == 3 * 3 * space.head_dim
    assert net.layers[1].op == "eltwise" and net.layers[1].bias  # position embedding


def test_vit_skips_the_layers_beyond_its_depth():
    space = spaces.get("vit")
    choice = {**space.reference("largest"), "depth": 2}
    net = space.to_netspec(choice)
    assert not any(layer.name.startswith("blocks.2.") for layer in net.layers)
    assert space.to_netspec({**choice, "layer3.heads": 1}) == net


def test_vit_with_grey_input_and_another_patch_size_still_traces_exactly():
    space = spaces.get("vit", in_channels=1, resolution=24, patch_size=6, num_classes=7)
    choice = space.sample(np.random.default_rng(5))
    model, traced = _traced(space, choice)
    _assert_same_layers(traced, space.to_netspec(choice))
    assert model(torch.zeros(2, 1, 24, 24)).shape == (2, 7)


@pytest.mark.parametrize("kwargs, match", [
    ({"resolution": 30, "patch_size": 4}, "multiple"),
    ({"heads": (1, 1.5)}, "heads"),
    ({"embeds": ()}, "embeds"),
    ({"head_dim": 0}, "head_dim"),
])
def test_vit_rejects_bad_settings_with_a_config_error(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        spaces.get("vit", **kwargs)


@pytest.mark.parametrize("name", ["ofa-mbv3", "vit"])
def test_built_networks_script_and_give_the_same_logits(name):
    space = spaces.get(name)
    choice = space.sample(np.random.default_rng(11))
    model = space.build(choice).eval()
    x = torch.randn(2, *space.input_shape(choice))
    with torch.no_grad():
        assert torch.allclose(torch.jit.script(model)(x), model(x), atol=1e-5)


# ---- CIFAR-10 shapes (the cifar10 profile) ----------------------------------------------------------
CIFAR_SPACES = ["ofa-mbv3", "vit"]


@pytest.mark.parametrize("name", CIFAR_SPACES)
def test_cifar10_profile_networks_trace_exactly_to_their_netspec(name):
    space = spaces.get(name, profile="cifar10")
    rng = np.random.default_rng(20)
    for choice in [space.reference(r) for r in space.references()] + [space.sample(rng) for _ in range(30)]:
        model, traced = _traced(space, choice)
        analytic = space.to_netspec(choice)
        _assert_same_layers(traced, analytic)
        assert traced.macs == analytic.macs
        assert count_params(model) == analytic.params


@pytest.mark.parametrize("name", CIFAR_SPACES)
def test_cifar10_profile_keeps_the_named_references(name):
    default, cifar = spaces.get(name), spaces.get(name, profile="cifar10")
    assert cifar.references() == default.references()
    assert {"largest", "smallest"} <= set(cifar.references())
    assert cifar.input_shape(cifar.reference("largest")) == (3, 32, 32)
    largest, smallest = (cifar.to_netspec(cifar.reference(r)) for r in ("largest", "smallest"))
    assert largest.macs > smallest.macs


def test_cifar10_ofa_mbv3_ends_its_last_stage_above_1x1_at_32x32_where_the_default_reaches_1x1():
    def last_stage_side(space):
        choice = {**space.reference("mbv3-like"), "resolution": 32}
        return next(layer.in_h for layer in space.to_netspec(choice).layers if layer.name == "pool")

    assert last_stage_side(spaces.get("ofa-mbv3")) == 1
    assert last_stage_side(spaces.get("ofa-mbv3", profile="cifar10")) >= 2


def test_cifar10_vit_cuts_a_32x32_image_into_64_tokens():
    space = spaces.get("vit", profile="cifar10")
    qk = next(layer for layer in space.to_netspec(space.reference("middle")).layers if layer.name == "blocks.0.attn.qk")
    assert (qk.m, qk.k) == (64, 64)


def test_the_defaults_stay_imagenet_strides_and_8x8_patches_without_a_profile():
    mbv3, vit = spaces.get("ofa-mbv3"), spaces.get("vit")
    assert (mbv3.stem_stride, mbv3.strides) == (2, (2, 2, 2, 1, 2))
    assert (vit.resolution, vit.patch_size) == (32, 8)


def test_options_given_beside_a_profile_override_it():
    space = spaces.get("ofa-mbv3", profile="cifar10", strides=[2, 2, 2, 1, 2], resolutions=[32])
    assert space.strides == (2, 2, 2, 1, 2) and space.resolutions == (32,)
    assert space.stem_stride == PROFILES["cifar10"]["ofa-mbv3"].get("stem_stride", 2)


@pytest.mark.parametrize("name, profile, match", [
    ("ofa-mbv3", "imagenet-21k", "cifar10"),
    ("nb201", "cifar10", "no settings"),
])
def test_an_unknown_profile_or_one_without_settings_for_the_space_is_a_config_error(name, profile, match):
    with pytest.raises(ConfigError, match=match):
        spaces.get(name, profile=profile)


def test_the_supernet_cache_key_counts_a_profile_by_its_settings():
    from hwsearch.spaces.supernet import schedule, supernet_key

    plan = schedule("tiny")
    by_name = supernet_key("ofa-mbv3", {"profile": "cifar10"}, "cifar10", plan, 0)
    spelled = supernet_key("ofa-mbv3", dict(PROFILES["cifar10"]["ofa-mbv3"]), "cifar10", plan, 0)
    assert by_name == spelled != supernet_key("ofa-mbv3", {}, "cifar10", plan, 0)
