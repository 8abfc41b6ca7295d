"""Mixed-length vector pruning and block pruning of linear layers, on their own and in a `gpt` network."""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsearch import spaces
from hwsearch.compress import LayerPolicy, Policy, apply_policy, compressed_netspec, prunable_layers, rebuild
from hwsearch.compress.sparsity import fine_mask
from hwsearch.compress.tiles import (
    choose_length,
    dominant_direction,
    is_tiled,
    tile_mask,
    vector_mask,
    vector_tile,
)
from hwsearch.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _weight(k, c, seed=0):
    return torch.randn(k, c, generator=torch.Generator().manual_seed(seed))


@settings(max_examples=40, deadline=None)
@given(k=st.sampled_from([8, 16, 24, 48]), c=st.sampled_from([8, 16, 32, 40]), length=st.sampled_from([1, 2, 4, 8]),
       direction=st.sampled_from(["row", "col"]), density=st.sampled_from([0.2, 0.3, 0.4, 0.5, 0.75]),
       seed=st.integers(0, 1000))
def test_vector_masks_keep_exactly_the_density_in_whole_vectors_along_the_direction(k, c, length, direction,
                                                                                    density, seed):
    w = _weight(k, c, seed)
    mask, used = vector_mask(w, density, length, direction)
    tile = vector_tile(length, direction)
    vectors = k * c // length
    assert used == direction
    assert int(mask.sum()) == length * max(1, round(density * vectors))
    assert is_tiled(mask, tile)  # every pruned run is a whole vector
    # the kept vectors are the largest in L2 norm
    norms = (w.reshape(k // tile[0], tile[0], c // tile[1], tile[1]) ** 2).sum(dim=(1, 3)).flatten()
    kept = mask.reshape(k // tile[0], tile[0], c // tile[1], tile[1]).amax(dim=(1, 3)).flatten().bool()
    assert norms[kept].min() >= norms[~kept].max()


def test_pruned_runs_lie_along_the_chosen_direction_and_never_across_it():
    w = _weight(16, 32)
    rows, _ = vector_mask(w, 0.5, 8, "row")
    cols, _ = vector_mask(w, 0.5, 8, "col")
    assert is_tiled(rows, (1, 8)) and not is_tiled(rows, (8, 1))
    assert is_tiled(cols, (8, 1)) and not is_tiled(cols, (1, 8))


@pytest.mark.parametrize("direction", ["row", "col"])
def test_the_dominant_direction_of_a_mask_whose_kept_weights_gather_in_some_rows_or_columns(direction):
    rng = np.random.default_rng(0)
    k, c = 24, 96  # not square: the comparison must not favour the longer side
    if direction == "row":
        share = np.where(rng.random(k) < 0.5, 0.9, 0.1)[:, None] * np.ones((1, c))
    else:
        share = np.where(rng.random(c) < 0.5, 0.9, 0.1)[None, :] * np.ones((k, 1))
    mask = rng.random((k, c)) < share
    assert dominant_direction(torch.from_numpy(mask.astype(np.float32))) == direction


def test_random_masks_are_not_pushed_towards_their_longer_side():
    votes = {"row": 0, "col": 0}
    for seed in range(60):
        mask = torch.from_numpy((np.random.default_rng(seed).random((16, 256)) < 0.4).astype(np.float32))
        votes[dominant_direction(mask)] += 1
    assert min(votes.values()) >= 15


def test_auto_direction_follows_the_fine_grained_mask_of_the_weights():
    w = _weight(32, 32)
    w[::2] *= 4.0  # every other output row carries large weights: the fine mask keeps whole rows
    assert dominant_direction(fine_mask(w, 0.3)) == "row"
    assert vector_mask(w, 0.3, 4)[1] == "row"
    assert vector_mask(w.T.contiguous(), 0.3, 4)[1] == "col"


def test_block_masks_keep_whole_blocks_to_the_density():
    mask = tile_mask(_weight(32, 48), 0.25, (8, 8))
    assert float(mask.mean()) == 0.25 and is_tiled(mask, (8, 8))


def test_choose_length_takes_the_longest_length_close_to_fine_grained_and_falls_back_to_one():
    w = _weight(16, 64)
    w[:, :32] *= 10.0  # the left half dominates: row vectors of up to 32 capture it exactly
    assert choose_length(w, 0.5, lengths=(32, 16, 4), direction="row") == 32
    noise = _weight(16, 64, seed=3)
    assert choose_length(noise, 0.2, lengths=(16,), tolerance=0.0, direction="row") == 1


def test_a_tile_that_does_not_divide_the_weight_or_a_conv_weight_is_a_config_error():
    with pytest.raises(ConfigError, match="divisible"):
        tile_mask(_weight(10, 12), 0.5, (1, 8))
    with pytest.raises(ConfigError, match="linear layers"):
        vector_mask(torch.randn(8, 8, 3, 3), 0.5, 4)


@pytest.mark.parametrize("kwargs, match", [
    ({"pattern": "vector", "density": 0.3}, "vector=None"),
    ({"pattern": "vector", "vector": 0, "density": 0.3}, "vector=0"),
    ({"pattern": "fine", "density": 0.3, "vector": 4}, "needs pattern 'vector'"),
    ({"pattern": "fine", "density": 0.3, "direction": "row"}, "needs pattern 'vector'"),
    ({"pattern": "vector", "vector": 4, "direction": "diagonal"}, "direction"),
    ({"pattern": "block", "density": 0.3}, "block=None"),
])
def test_invalid_vector_and_block_policies_name_the_field(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        LayerPolicy(**kwargs)


def test_vector_and_block_policies_round_trip_and_old_policies_keep_their_json():
    policy = Policy({"a": LayerPolicy(pattern="vector", vector=8, direction="col", density=0.3),
                     "b": LayerPolicy(pattern="block", block=4, density=0.2), "c": LayerPolicy(pattern="fine", density=0.5)})
    assert Policy.from_dict(policy.to_dict()) == policy
    assert policy.to_dict()["layers"]["c"] == {"pattern": "fine", "density": 0.5}


# ---- in a gpt network ---------------------------------------------------------------------------
def _gpt(seed=0):
    space = spaces.get("gpt", context=16)
    choice = space.reference("middle")
    torch.manual_seed(seed)
    return space, choice, space.build(choice).eval(), space.input_shape(choice)


RATIO = 0.7  # share of weights removed


@pytest.mark.parametrize("kind", ["fine", "vector", "block"])
def test_a_pruned_gpt_reports_the_density_and_tile_of_every_matrix_in_its_netspec(kind):
    space, choice, model, shape = _gpt()
    names = [layer.name for layer in prunable_layers(model, shape) if layer.name.startswith("blocks.")]
    lp = {"fine": LayerPolicy(pattern="fine", density=1 - RATIO),
          "vector": LayerPolicy(pattern="vector", vector=8, density=1 - RATIO),
          "block": LayerPolicy(pattern="block", block=8, density=1 - RATIO)}[kind]
    small = apply_policy(model, Policy.uniform(names, lp), shape)
    net = compressed_netspec(small, shape)
    dense_layers = {x.name: x for x in space.to_netspec(choice).layers}
    for layer in net.layers:
        if layer.name not in names:
            # Weights untouched; the attention maps keep the causal triangle the space already reports.
            assert layer == dense_layers[layer.name]
            continue
        mask = small.get_submodule(layer.name).weight_mask
        assert layer.density == pytest.approx(float(mask.mean())) == pytest.approx(1 - RATIO, abs=0.01)
        if kind == "fine":
            assert layer.tile is None
        else:
            assert layer.tile in ({(8, 8)} if kind == "block" else {(1, 8), (8, 1)})
            assert is_tiled(mask, layer.tile)
        rows = mask.double().mean(dim=1)  # each output feature's kept share
        assert layer.density_std == pytest.approx(float(rows.std(unbiased=False)), rel=1e-9, abs=1e-12)
        assert 0.0 < layer.density_std <= (layer.density * (1 - layer.density)) ** 0.5
    dense = space.to_netspec(choice)
    assert net.macs == dense.macs and net.effective_macs < dense.macs


def test_a_vector_pruned_gpt_rebuilds_with_the_same_directions_from_its_state_dict():
    space, choice, model, shape = _gpt(1)
    names = [layer.name for layer in prunable_layers(model, shape) if layer.name.startswith("blocks.")]
    policy = Policy.uniform(names, LayerPolicy(pattern="vector", vector=4, density=0.4))
    small = apply_policy(model, policy, shape)
    torch.manual_seed(7)
    again = rebuild(space.build(choice), policy, shape, small.state_dict()).eval()
    x = torch.randint(0, space.vocab, (2, 16))
    with torch.no_grad():
        assert torch.equal(again(x), small(x))
    assert compressed_netspec(again, shape) == compressed_netspec(small, shape)


def test_head_pruning_fine_vector_and_block_are_expressible_at_the_same_ratio():
    space, choice, model, shape = _gpt(2)
    layers = prunable_layers(model, shape)
    heads = {layer.name: LayerPolicy(keep=0.5) for layer in layers if layer.unit == "heads"}
    small = apply_policy(model, Policy(heads), shape)
    net = compressed_netspec(small, shape)
    dense = space.to_netspec(choice)
    qkv = [(a, b) for a, b in zip(net.layers, dense.layers, strict=True) if a.name.endswith("attn.qkv")]
    assert qkv and all(a.k * 2 == b.k for a, b in qkv)



def test_the_row_spread_of_a_linear_mask_is_measured_and_an_even_one_reports_none():
    from hwsearch.compress.modules import QLinear

    torch.manual_seed(0)
    lin = torch.nn.Linear(16, 8)
    # Whole output rows masked (a width that could not shrink): rows keep 1 or 0, the largest spread.
    rows = QLinear.from_linear(lin, LayerPolicy(), "minmax", "minmax", "fc", row_keep=3).describe()
    assert rows["density"] == 3 / 8
    assert rows["density_std"] == pytest.approx((3 / 8 * 5 / 8) ** 0.5)
    # 2:4 keeps exactly half of every row: an even mask, its N:M share carried by ``nm``.
    nm = QLinear.from_linear(lin, LayerPolicy(pattern="nm", nm=(2, 4)), "minmax", "minmax", "fc").describe()
    assert nm["density"] == 1.0 and "density_std" not in nm
    both = QLinear.from_linear(lin, LayerPolicy(pattern="nm", nm=(2, 4)), "minmax", "minmax", "fc", row_keep=2)
    assert both.describe()["density_std"] == pytest.approx((2 / 8 * 6 / 8) ** 0.5)
    # A column-vector mask keeps whole columns: every row keeps the same share.
    col = QLinear.from_linear(lin, LayerPolicy(pattern="vector", vector=8, direction="col", density=0.5),
                              "minmax", "minmax", "fc").describe()
    assert col["tile"] == (8, 1) and col["density"] == 0.5 and col["density_std"] == 0.0
