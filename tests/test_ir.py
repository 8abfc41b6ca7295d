import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hwsearch.errors import SpecError
from hwsearch.ir import LayerSpec, NetSpec

convs = st.builds(
    lambda c, k, hw, r, stride, pad, bits, dens: LayerSpec(
        "conv", c=c, k=k, in_h=hw + r, in_w=hw + r, r=r, s=r, stride=stride, pad=pad,
        w_bits=bits, a_bits=bits, density=dens,
    ),
    st.integers(1, 64), st.integers(1, 64), st.integers(1, 40), st.sampled_from([1, 3, 5, 7]),
    st.integers(1, 3), st.integers(0, 3), st.integers(1, 32), st.floats(0.01, 1.0),
)


@given(convs)
def test_layer_dict_round_trip_preserves_identity_and_key(layer):
    back = LayerSpec.from_dict(json.loads(json.dumps(layer.to_dict())))
    assert back == layer and back.key == layer.key and hash(back) == hash(layer)


@given(convs)
def test_conv_output_size_and_macs_follow_the_convolution_formula(layer):
    h = (layer.in_h + 2 * layer.pad - layer.r) // layer.stride + 1
    assert layer.h == h
    assert layer.macs == layer.k * h * layer.w * layer.c * layer.r * layer.s
    assert layer.effective_macs <= layer.macs


def test_name_is_not_part_of_a_layers_identity():
    a = LayerSpec("linear", c=8, k=4, name="fc1")
    b = LayerSpec("linear", c=8, k=4, name="fc2")
    assert a == b and a.key == b.key and len({a, b}) == 1


@pytest.mark.parametrize(
    "kwargs, word",
    [
        ({"op": "conv", "c": 0}, "c=0"),
        ({"op": "conv", "w_bits": 0}, "w_bits=0"),
        ({"op": "nonsense"}, "unknown"),
        ({"op": "dwconv", "c": 8, "k": 8, "groups": 1}, "groups == c"),
        ({"op": "linear", "density": 0.0}, "density"),
        ({"op": "linear", "nm": (4, 2)}, "nm"),
    ],
)
def test_invalid_layers_are_rejected_with_the_field_named(kwargs, word):
    with pytest.raises(SpecError, match=word):
        LayerSpec(**kwargs)


def test_weight_bytes_follow_bits_and_sparsity():
    dense = LayerSpec("linear", c=100, k=10, w_bits=8)
    assert dense.weight_bytes == 1000
    assert dense.with_(nm=(2, 4)).weight_bytes == 500
    assert dense.with_(w_bits=4, density=0.5).weight_bytes == 250


def test_peak_activation_is_the_largest_input_plus_output_of_any_layer():
    a = LayerSpec("conv", c=3, k=16, in_h=32, in_w=32, r=3, s=3, pad=1, a_bits=8)
    b = LayerSpec("pool", c=16, in_h=32, in_w=32, r=32, s=32, stride=32, fn="avg", a_bits=8)
    net = NetSpec((a, b), (3, 32, 32))
    assert net.peak_activation_bytes == 3 * 32 * 32 + 16 * 32 * 32
    assert NetSpec.from_dict(json.loads(json.dumps(net.to_dict()))) == net


def test_matmul_counts_both_operands_as_activations_and_has_no_params():
    qk = LayerSpec("matmul", n=4, m=17, c=16, k=17)
    assert qk.params == 0 and qk.macs == 4 * 17 * 16 * 17
    assert qk.in_elems == 4 * (17 * 16 + 16 * 17) and qk.out_elems == 4 * 17 * 17


def test_with_batch_scales_matmul_batches_by_heads():
    qk = LayerSpec("matmul", n=4, m=17, c=16, k=17)
    fc = LayerSpec("linear", m=17, c=64, k=64)
    net = NetSpec((fc, qk), (3, 32, 32)).with_batch(8)
    assert net.layers[0].n == 8 and net.layers[1].n == 32


def test_layers_without_weights_inherit_the_activation_width_of_the_layer_before_them():
    conv = LayerSpec("conv", c=8, k=8, in_h=4, in_w=4, r=3, s=3, pad=1, w_bits=4, a_bits=4, name="conv")
    act = LayerSpec("eltwise", c=8, in_h=4, in_w=4, fn="relu", name="act")
    pool = LayerSpec("pool", c=8, in_h=4, in_w=4, r=2, s=2, stride=2, fn="avg", name="pool")
    qk = LayerSpec("matmul", n=2, m=4, c=4, k=4, name="qk")
    fc = LayerSpec("linear", c=8, k=10, w_bits=6, a_bits=6, name="fc")
    soft = LayerSpec("softmax", m=1, k=10, name="softmax")
    net = NetSpec((act, conv, act, pool, qk, fc, soft), (8, 4, 4)).with_inherited_activation_bits()
    assert [x.a_bits for x in net.layers] == [32, 4, 4, 4, 4, 6, 6]  # nothing quantized before the first
    assert net.layers[4].w_bits == 4  # a matmul's second operand is an activation
    assert net.layers[2].w_bits == 32 and net.layers[5].w_bits == 6
    assert [x.name for x in net.layers] == ["act", "conv", "act", "pool", "qk", "fc", "softmax"]
    # a layer that states its own width keeps it, and the layers after it inherit from it
    own = NetSpec((conv, act.with_(a_bits=8), pool), (8, 4, 4)).with_inherited_activation_bits()
    assert [x.a_bits for x in own.layers] == [4, 8, 8]
    float_net = NetSpec((conv.with_(w_bits=32, a_bits=32), act, pool), (8, 4, 4))
    assert float_net.with_inherited_activation_bits() == float_net
    with pytest.raises(SpecError, match="policy"):
        conv.with_activation_bits(4)


def test_existing_layer_keys_do_not_change_when_no_tile_is_set():
    plain = LayerSpec("linear", m=64, c=128, k=384, bias=True, density=0.4)
    assert plain.key == ("linear|n=1|c=128|k=384|m=64|in_h=1|in_w=1|r=1|s=1|stride=1|pad=0|groups=1|bias=1|fn=|"
                         "w_bits=32|a_bits=32|density=0.4|nm=-")
    assert plain.with_(tile=(1, 8)).key == plain.key + "|tile=1x8"


@pytest.mark.parametrize("kwargs, word", [
    ({"op": "linear", "tile": (0, 8)}, "tile"),
    ({"op": "conv", "tile": (1, 8)}, "linear layers"),
    ({"op": "linear", "tile": (1, 8), "nm": (2, 4)}, "cannot be combined"),
])
def test_invalid_tiles_are_rejected_with_the_field_named(kwargs, word):
    with pytest.raises(SpecError, match=word):
        LayerSpec(**kwargs)


def test_a_tiled_layer_survives_a_dict_round_trip():
    layer = LayerSpec("linear", m=16, c=64, k=256, density=0.3, tile=(8, 1))
    back = LayerSpec.from_dict(json.loads(json.dumps(layer.to_dict())))
    assert back == layer and back.key == layer.key and back.tile == (8, 1)


def test_attention_density_counts_are_consistent_across_the_masked_layers():
    qk = LayerSpec("matmul", n=4, m=64, c=32, k=64, density=0.25)
    sm = LayerSpec("softmax", n=4, m=64, k=64, density=0.25)
    av = LayerSpec("matmul", n=4, m=64, c=64, k=32, density=0.25)
    assert qk.map_elems == sm.map_elems == av.map_elems == 4 * 64 * 64
    assert not qk.map_is_input and av.map_is_input
    # dense counts stay the unmasked layer's; effective counts keep the density share of the map
    assert qk.macs == qk.with_(density=1.0).macs and qk.effective_macs == qk.macs // 4
    assert av.effective_macs == av.macs // 4
    assert sm.vector_ops == 4 * 64 * 64 and sm.effective_vector_ops == sm.vector_ops // 4
    kept = sm.map_elems // 4 * 4  # bytes at 32 bits
    assert qk.effective_out_bytes == kept and qk.effective_in_bytes == qk.in_bytes
    assert av.effective_in_bytes == kept + 4 * 64 * 32 * 4 and av.effective_out_bytes == av.out_bytes
    assert sm.effective_in_bytes == sm.effective_out_bytes == kept
    fc = LayerSpec("linear", m=8, c=16, k=16, density=0.5)
    assert fc.effective_in_bytes == fc.in_bytes and fc.map_elems == 0


def test_density_std_is_validated_and_left_out_of_keys_at_its_default():
    layer = LayerSpec("matmul", n=4, m=64, c=32, k=64, density=0.3)
    assert "density_std" not in layer.key and "density_std" not in layer.to_dict()
    uneven = layer.with_(density_std=0.1)
    assert uneven.key == layer.key + "|density_std=0.1" and uneven != layer
    assert LayerSpec.from_dict(json.loads(json.dumps(uneven.to_dict()))) == uneven
    for bad, word in [(-0.1, "non-negative"), (0.5, "sqrt"), (float("nan"), "non-negative")]:
        with pytest.raises(SpecError, match=word):
            layer.with_(density_std=bad)
    with pytest.raises(SpecError, match="applies to"):
        LayerSpec("conv", c=4, k=4, in_h=4, in_w=4, density=0.5, density_std=0.1)
