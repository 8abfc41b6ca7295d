"""The mapping search: valid mappings, never worse than the fast mode, and the replication it finds."""

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from hwsearch.errors import SpecError
from hwsearch.hwmodel import Accelerator, cache_clear, cost, network_cost
from hwsearch.hwmodel.cost import fits, score
from hwsearch.hwmodel.energy import TABLES, mac_pj
from hwsearch.hwmodel.mapping import mac_widths
from hwsearch.ir import LayerSpec

KiB = 1024
# Timeloop's Eyeriss-like exercise layer: 3 channels, 32 filters, 3x3, stride 2, 112x112 outputs.
FIRST = LayerSpec("conv", c=3, k=32, in_h=224, in_w=224, r=3, s=3, stride=2, pad=1, w_bits=8, a_bits=8)
# Timeloop's Eyeriss-like architecture: 14x12 PEs, 128 KiB buffer, DRAM bandwidth not a limit.
EYERISS_LIKE = Accelerator.preset("eyeriss").with_(glb_bytes=128 * KiB, dram_bw=1e4, clock_hz=1e9)


@st.composite
def layers(draw):
    op = draw(st.sampled_from(["conv", "dwconv", "linear", "matmul"]))
    bits = st.sampled_from([2, 4, 8, 16, 32])
    w_bits, a_bits = draw(bits), draw(bits)
    density = draw(st.sampled_from([1.0, 0.5]))
    if op in ("conv", "dwconv"):
        c = draw(st.integers(1, 64))
        r = draw(st.sampled_from([1, 3, 5, 7]))
        hw = draw(st.integers(r, 40))
        k = c if op == "dwconv" else draw(st.integers(1, 64))
        return LayerSpec(op, n=draw(st.integers(1, 2)), c=c, k=k, groups=c if op == "dwconv" else 1, in_h=hw,
                         in_w=hw, r=r, s=r, stride=draw(st.sampled_from([1, 2])), pad=r // 2, w_bits=w_bits,
                         a_bits=a_bits, density=density)
    if op == "linear":
        return LayerSpec(op, m=draw(st.integers(1, 100)), c=draw(st.integers(1, 600)), k=draw(st.integers(1, 600)),
                         w_bits=w_bits, a_bits=a_bits, density=density)
    return LayerSpec(op, n=draw(st.integers(1, 8)), m=draw(st.integers(1, 64)), c=draw(st.integers(1, 64)),
                     k=draw(st.integers(1, 64)), a_bits=a_bits)


@st.composite
def accelerators(draw):
    unified = draw(st.booleans())
    bufs = ({"glb_bytes": draw(st.integers(32, 1024)) * KiB} if unified else
            {f"{x}_sram_bytes": draw(st.integers(16, 512)) * KiB for x in ("ifmap", "filter", "ofmap")})
    native = draw(st.sampled_from([8, 16]))
    return Accelerator(pe_rows=draw(st.integers(1, 32)), pe_cols=draw(st.integers(1, 32)),
                       rf_bytes=draw(st.integers(6, 600)), dram_bw=draw(st.floats(1, 1e4)),
                       dataflow=draw(st.sampled_from(["ws", "os", "is", "rs"])), native_bits=native,
                       precisions=draw(st.sampled_from([(native,), tuple(p for p in (2, 4, 8, 16) if p <= native)])),
                       sparsity=draw(st.sampled_from(["none", "zero_skip"])), tech=draw(st.sampled_from(sorted(TABLES))),
                       pipelined_folds=draw(st.booleans()), **bufs)


def _both(layer, accel, objective):
    try:
        return cost(layer, accel, objective, "fast"), cost(layer, accel, objective, "search")
    except SpecError as e:  # a buffer too small for any tile is a user error, in both modes
        assert "smallest tile" in str(e)
        assume(False)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer=layers(), accel=accelerators(), objective=st.sampled_from(["latency", "energy", "edp"]))
def test_the_search_respects_capacities_and_never_loses_to_a_valid_fast_mapping(layer, accel, objective):
    fast, found = _both(layer, accel, objective)
    assert fits(found, accel)
    m = found.mapping
    assert m["pe_rows_used"] * m["pe_cols_used"] <= accel.num_pes
    if fits(fast, accel):
        assert score(found, objective) <= score(fast, objective)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer=layers(), accel=accelerators())
def test_searched_mappings_obey_the_roofline_laws(layer, accel):
    _, c = _both(layer, accel, "latency")
    assert 0 < c.utilization <= 1 + 1e-9
    assert c.compute_cycles >= c.executed_macs / c.peak_macs_per_cycle * (1 - 1e-9)
    pw, pa, passes = mac_widths(layer, accel)
    assert c.total_energy_pj >= c.executed_macs * passes * mac_pj(TABLES[accel.tech], pw, pa) * (1 - 1e-9)
    assert c.writes["dram"] >= layer.out_bytes * (1 - 1e-9)


def test_the_first_layer_of_timeloops_eyeriss_example_fills_the_array():
    c = cost(FIRST, EYERISS_LIKE, mode="search")
    ideal = FIRST.macs / EYERISS_LIKE.num_pes
    assert ideal <= c.compute_cycles <= 1.01 * ideal + EYERISS_LIKE.pe_rows + EYERISS_LIKE.pe_cols


def test_tall_filters_are_folded_so_that_several_pe_sets_share_the_rows():
    dw7 = LayerSpec("dwconv", c=64, k=64, groups=64, in_h=56, in_w=56, r=7, s=7, pad=3, w_bits=8, a_bits=8)
    fast, found = cost(dw7, EYERISS_LIKE, mode="fast"), cost(dw7, EYERISS_LIKE, mode="search")
    assert found.compute_cycles < 0.7 * fast.compute_cycles
    assert found.compute_cycles >= dw7.macs / EYERISS_LIKE.num_pes
    assert found.mapping["mapper"] == "search" and found.mapping["pe_rows_used"] == EYERISS_LIKE.pe_rows


@pytest.mark.parametrize("preset", ["nvdla-small", "bitfusion"])
def test_depthwise_reductions_are_packed_side_by_side_on_a_weight_stationary_array(preset):
    a = Accelerator.preset(preset).with_(dram_bw=1e4)
    dw3 = LayerSpec("dwconv", c=64, k=64, groups=64, in_h=56, in_w=56, r=3, s=3, pad=1, w_bits=8, a_bits=8)
    fast, found = cost(dw3, a, mode="fast"), cost(dw3, a, mode="search")
    assert found.compute_cycles < 0.7 * fast.compute_cycles
    assert found.mapping["pe_cols_used"] > fast.mapping["pe_cols_used"]


def test_the_default_mode_is_fast_and_the_cache_returns_identical_results():
    a = Accelerator.preset("bitfusion")
    assert cost(FIRST, a) is cost(FIRST, a, mode="fast")
    first = cost(FIRST, a, "edp", "search")
    assert cost(FIRST.with_(name="renamed"), a, "edp", "search") is first
    cache_clear()
    again = cost(FIRST, a, "edp", "search")
    assert again is not first and again.to_dict() == first.to_dict()


def test_network_cost_in_search_mode_is_no_slower_layer_by_layer():
    a = Accelerator.preset("eyeriss").with_(dram_bw=64.0)
    net = [FIRST, LayerSpec("dwconv", c=32, k=32, groups=32, in_h=112, in_w=112, r=7, s=7, pad=3, w_bits=8,
                            a_bits=8), LayerSpec("conv", c=32, k=16, in_h=112, in_w=112, w_bits=8, a_bits=8)]
    fast, found = network_cost(net, a, mode="fast"), network_cost(net, a, mode="search")
    assert all(s.total_cycles <= f.total_cycles for s, f in zip(found.layers, fast.layers, strict=True))
    assert found.total_cycles < fast.total_cycles


def test_an_unknown_mode_or_objective_names_what_is_accepted():
    with pytest.raises(SpecError, match="search"):
        cost(FIRST, EYERISS_LIKE, mode="exhaustive")
    with pytest.raises(SpecError, match="energy"):
        cost(FIRST, EYERISS_LIKE, objective="power")
