"""Attention-map and vector sparsity: skipped only on hardware that declares it, with its overheads."""

from __future__ import annotations

import json

import pytest

from hwsearch.errors import SpecError
from hwsearch.hwmodel import Accelerator, cost, network_cost, preset_names
from hwsearch.hwmodel.sparse import lockstep_share, skip
from hwsearch.ir import LayerSpec, NetSpec

DENSE = Accelerator.preset("edge-systolic")
SPARSE = Accelerator.preset("edge-sparse")

QK = LayerSpec("matmul", n=4, m=64, c=32, k=64, w_bits=8, a_bits=8, name="qk")
SOFTMAX = LayerSpec("softmax", n=4, m=64, k=64, a_bits=8, name="softmax")
AV = LayerSpec("matmul", n=4, m=64, c=64, k=32, w_bits=8, a_bits=8, name="av")
FC = LayerSpec("linear", m=64, c=128, k=512, w_bits=8, a_bits=8, name="fc")
ATTENTION = (QK, SOFTMAX, AV)

# Fingerprints of the presets as they were before the sparsity options existed.
OLD_KEYS = {"bitfusion": "d75b264a6f94c615", "edge-systolic": "39fc092b2bf3d144", "eyeriss": "c278f186095c170e",
            "nvdla-small": "abbdf3f5d50819d3", "tpu-v1": "ea9e055bb2b7aceb"}


def test_existing_preset_fingerprints_and_dicts_do_not_change():
    for name, key in OLD_KEYS.items():
        accel = Accelerator.preset(name)
        assert accel.key == key
        assert not {"sparse_attention", "vector_sparsity", "vector_length"} & set(accel.to_dict())


def test_the_declaring_preset_differs_from_its_base_only_in_the_support_it_declares():
    a, b = DENSE.to_dict(), SPARSE.to_dict()
    assert {k for k in b if a.get(k) != b[k]} == {"name", "sparse_attention", "vector_sparsity", "vector_length"}
    assert "edge-sparse" in preset_names() and SPARSE.key not in OLD_KEYS.values()
    assert Accelerator.from_dict(json.loads(json.dumps(SPARSE.to_dict()))) == SPARSE


@pytest.mark.parametrize("name", sorted(OLD_KEYS))
def test_hardware_without_support_prices_a_masked_layer_dense(name):
    accel = Accelerator.preset(name)
    layers = [*ATTENTION, FC.with_(tile=(1, 8))]
    for layer in layers:
        for d in (0.5, 0.2):
            masked = layer.with_(density=d)
            if layer.op == "linear" and accel.sparsity == "zero_skip":
                continue
            assert cost(masked, accel).total_cycles == cost(layer.with_(density=1.0), accel).total_cycles
            assert cost(masked, accel).total_energy_pj == pytest.approx(cost(layer.with_(density=1.0), accel).total_energy_pj)


def test_declaring_hardware_prices_dense_layers_as_its_base_does():
    for layer in (*ATTENTION, FC, FC.with_(density=0.5)):  # fine-grained density: no vectors to skip
        assert cost(layer, SPARSE).to_dict() == cost(layer, DENSE).to_dict()


@pytest.mark.parametrize("layer", [QK, SOFTMAX, AV, FC.with_(tile=(1, 8))], ids=lambda x: x.name)
def test_with_support_cycles_fall_with_density_but_not_below_the_overhead_floor(layer):
    cycles = [cost(layer.with_(density=d), SPARSE).total_cycles for d in (1.0, 0.6, 0.4, 0.2, 0.1, 0.02, 0.005)]
    assert cycles == sorted(cycles, reverse=True)
    assert cycles[3] < cycles[0]  # at a fifth of the work, the layer is faster
    tiny = layer.with_(density=0.001)
    c = cost(tiny, SPARSE)
    index = layer.map_elems / 8 if layer.op != "linear" else layer.weight_params / SPARSE.vector_length / 8
    assert c.mapping["index_bytes"] == pytest.approx(index)
    # Loading the index is never hidden, and the index decoder steps through the skipped dimension
    # no faster than one native-width word per PE row (or lane) per cycle.
    assert c.stall_cycles >= index / SPARSE.dram_bw
    if layer.op != "softmax":
        assert c.mapping["time_share"] > tiny.density
        assert c.mapping["time_share"] == skip(tiny, SPARSE).time_share
    else:
        assert c.compute_cycles >= layer.map_elems / (SPARSE.vector_lanes * SPARSE.native_bits)


def test_index_storage_is_counted_in_dram_and_buffer_bytes():
    for layer in (QK, AV, FC.with_(tile=(1, 8))):
        masked = layer.with_(density=0.4)
        c = cost(masked, SPARSE)
        sk = skip(masked, SPARSE)
        proxy = cost(sk.proxy, SPARSE)
        assert c.mapping["index_bytes"] == sk.index_bytes > 0
        assert c.reads["dram"] == pytest.approx(proxy.reads["dram"] + sk.index_bytes)
        assert c.reads["buffer"] == pytest.approx(proxy.reads["buffer"] + sk.index_bytes)
        assert c.energy_pj["dram"] > proxy.energy_pj["dram"]
    s = cost(SOFTMAX.with_(density=0.4), SPARSE)
    assert s.reads["dram"] == pytest.approx(SOFTMAX.with_(density=0.4).effective_in_bytes + SOFTMAX.map_elems / 8)


def test_executed_macs_are_the_kept_share_of_the_layer_not_of_its_proxy():
    for layer in (QK, AV, FC.with_(tile=(8, 1))):
        masked = layer.with_(density=0.3, density_std=0.1)
        c = cost(masked, SPARSE)
        assert c.macs == layer.macs and c.executed_macs == masked.effective_macs
        assert 0 < c.utilization <= 1


def test_an_uneven_mask_costs_more_than_an_even_one_at_the_same_density():
    for layer in (QK, AV, FC.with_(tile=(1, 4))):
        even = cost(layer.with_(density=0.3), SPARSE)
        uneven = cost(layer.with_(density=0.3, density_std=0.2), SPARSE)
        assert uneven.total_cycles > even.total_cycles
        assert uneven.executed_macs == even.executed_macs
    # The densest of G lockstep rows: an even mask or a single row waits for nothing, and no row
    # keeps more than all of its entries.
    assert lockstep_share(0.3, 0.0, 16) == 0.3 and lockstep_share(0.3, 0.2, 1) == 0.3
    assert 0.3 < lockstep_share(0.3, 0.2, 16) < lockstep_share(0.3, 0.2, 256) <= 1.0


@pytest.mark.parametrize("tile, support, length, priced", [
    ((1, 8), "row", 4, True),     # hardware vectors of 4 divide the layer's 8
    ((1, 8), "row", 8, True),     # and of 8 match them
    ((1, 4), "row", 8, False),    # a hardware vector longer than the layer's cannot be skipped whole
    ((1, 6), "row", 4, False),    # nor one that does not divide it
    ((8, 1), "row", 4, False),    # column vectors on row-only hardware
    ((8, 1), "col", 4, True),
    ((8, 1), "both", 4, True),
    ((4, 4), "col", 4, True),     # a block is a run of column vectors too
])
def test_vector_sparsity_is_priced_only_when_direction_and_length_fit(tile, support, length, priced):
    accel = DENSE.with_(vector_sparsity=support, vector_length=length)
    layer = FC.with_(tile=tile, density=0.25)
    assert (skip(layer, accel) is not None) == priced
    c, dense = cost(layer, accel), cost(FC, accel)
    if priced:
        assert c.total_cycles < dense.total_cycles and c.mapping["skip"].startswith("vector")
    else:
        assert c.to_dict() == dense.to_dict()


def test_sparse_attention_support_does_not_skip_weight_vectors_nor_the_reverse():
    tiled = FC.with_(tile=(1, 8), density=0.25)
    attention_only = DENSE.with_(sparse_attention=True)
    vectors_only = DENSE.with_(vector_sparsity="row", vector_length=4)
    assert cost(tiled, attention_only).total_cycles == cost(FC, DENSE).total_cycles
    assert cost(QK.with_(density=0.25), vectors_only).total_cycles == cost(QK, DENSE).total_cycles


def test_a_masked_vit_block_is_cheaper_only_on_the_declaring_preset():
    net = NetSpec(tuple(layer.with_(density=0.3) for layer in ATTENTION) + (FC,), (3, 32, 32))
    dense = NetSpec((*ATTENTION, FC), (3, 32, 32))
    assert network_cost(net, DENSE).latency_s == network_cost(dense, DENSE).latency_s
    assert network_cost(net, SPARSE).latency_s < network_cost(dense, SPARSE).latency_s


def test_the_search_mode_prices_sparse_layers_too():
    layer = AV.with_(density=0.3)
    for mode in ("fast", "search"):
        assert cost(layer, SPARSE, mode=mode).total_cycles < cost(AV, SPARSE, mode=mode).total_cycles


@pytest.mark.parametrize("changes, word", [
    ({"vector_sparsity": "row"}, "vector_length"),
    ({"vector_length": 4}, "vector_length"),
    ({"vector_sparsity": "diagonal", "vector_length": 4}, "vector_sparsity"),
    ({"sparse_attention": "yes"}, "sparse_attention"),
])
def test_invalid_sparsity_options_name_the_field(changes, word):
    with pytest.raises(SpecError, match=word):
        DENSE.with_(**changes)


# Areas of the presets that declare no sparsity support, as they were before it had an area.
OLD_AREAS = {"bitfusion": 0.9420799999999999, "edge-systolic": 1.056768, "eyeriss": 4.858386962962962,
             "nvdla-small": 0.7598079999999999, "tpu-v1": 198.57407999999998}


def test_hardware_without_declared_support_keeps_its_area_exactly():
    from hwsearch.hwmodel.energy import sparse_area_um2

    for name, area in OLD_AREAS.items():
        accel = Accelerator.preset(name)
        assert not accel.sparse_attention and accel.vector_sparsity == "none"
        assert accel.area_mm2 == area and sparse_area_um2(accel) == 0.0


def test_declared_support_pays_a_modest_area_for_each_feature():
    from dataclasses import replace

    base = DENSE.area_mm2
    attention = replace(DENSE, sparse_attention=True).area_mm2
    row = replace(DENSE, vector_sparsity="row", vector_length=4).area_mm2
    col = replace(DENSE, vector_sparsity="col", vector_length=4).area_mm2
    both = replace(DENSE, vector_sparsity="both", vector_length=4).area_mm2
    assert base < attention and base < row == col < both
    assert SPARSE.area_mm2 > max(attention, both)
    # skip logic beside the multipliers, not a second array
    assert SPARSE.area_mm2 < 1.2 * base
    # the vector length changes what is skipped, not the logic's area
    assert replace(DENSE, vector_sparsity="row", vector_length=8).area_mm2 == row
