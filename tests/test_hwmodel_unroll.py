"""Costing a layer under a spatial unrolling the caller fixes, and systolic arrays with pipelined folds."""

import pickle

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hwsearch.cli import app
from hwsearch.errors import SpecError
from hwsearch.hwmodel import Accelerator, Unrolling, cost, network_cost
from hwsearch.ir import LayerSpec, NetSpec

KiB = 1024
# Timeloop's exercise layer (3 channels, 32 filters, 3x3, stride 2, 112x112 outputs) on its
# Eyeriss-like array, and the unrolling its mapper chose: channels x filter rows on the 12 PE rows,
# 8 filters on the 14 columns.
FIRST = LayerSpec("conv", c=3, k=32, in_h=224, in_w=224, r=3, s=3, stride=2, pad=1, w_bits=8, a_bits=8)
EYERISS_LIKE = Accelerator.preset("eyeriss").with_(glb_bytes=128 * KiB, dram_bw=1e4, clock_hz=1e9)
TIMELOOPS = Unrolling(rows=(("c", 3), ("r", 3)), cols=(("k", 8),))
TPU = Accelerator(pe_rows=32, pe_cols=32, glb_bytes=2048 * KiB, dram_bw=1e4, dataflow="ws")


def test_the_unrolling_decides_how_many_pes_work_and_so_the_cycles():
    c = cost(FIRST, EYERISS_LIKE, unroll=TIMELOOPS)
    assert (c.mapping["pe_rows_used"], c.mapping["pe_cols_used"]) == (9, 8)
    ideal = FIRST.macs / 72
    assert ideal <= c.compute_cycles <= ideal + EYERISS_LIKE.pe_rows + EYERISS_LIKE.pe_cols
    assert c.compute_cycles > 2 * cost(FIRST, EYERISS_LIKE, mode="search").compute_cycles
    assert c.mapping["mapper"] == "given" and c.mapping["unroll"] == "given: rows=c:3,r:3 cols=k:8"


def test_a_factor_larger_than_the_layer_leaves_the_rest_of_the_side_idle():
    # ZigZag's TPU-like mapping file: 32 input channels on the rows, whatever the layer has.
    conv1 = LayerSpec("conv", c=3, k=96, in_h=227, in_w=227, r=11, s=11, stride=4, w_bits=8, a_bits=8)
    c = cost(conv1, TPU, unroll=Unrolling(rows=(("c", 32),), cols=(("k", 32),)))
    assert c.mapping["pe_rows_used"] == 3 and c.utilization <= 3 / 32


@st.composite
def linear_on_a_systolic_array(draw):
    layer = LayerSpec("linear", m=draw(st.integers(1, 300)), c=draw(st.integers(1, 300)), k=draw(st.integers(1, 300)),
                      w_bits=8, a_bits=8)
    accel = Accelerator(pe_rows=draw(st.integers(1, 32)), pe_cols=draw(st.integers(1, 32)), glb_bytes=256 * KiB,
                        dram_bw=draw(st.floats(1, 1e3)), dataflow=draw(st.sampled_from(["ws", "os", "is"])),
                        pipelined_folds=draw(st.booleans()))
    return layer, accel


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=linear_on_a_systolic_array())
def test_an_unrolling_that_states_the_fast_mapping_costs_what_the_fast_mode_costs(case):
    layer, a = case
    # The fast mode's fixed unrollings: ws holds (reduction, filters), os (tokens, filters) and
    # is (reduction, tokens) on (rows, columns); a linear layer's tokens are its output rows h.
    rows, cols = {"ws": ("c", "k"), "os": ("h", "k"), "is": ("c", "h")}[a.dataflow]
    given_ = cost(layer, a, unroll=Unrolling(rows=((rows, a.pe_rows),), cols=((cols, a.pe_cols),)))
    fast = cost(layer, a, mode="fast")
    assert given_.compute_cycles == fast.compute_cycles
    assert given_.total_cycles == fast.total_cycles
    assert given_.total_energy_pj == pytest.approx(fast.total_energy_pj, rel=1e-9)


def test_one_unrolling_costs_a_whole_network_and_is_cached_apart_from_the_modes():
    net = NetSpec((FIRST, LayerSpec("conv", c=32, k=64, in_h=112, in_w=112, r=3, s=3, pad=1, w_bits=8, a_bits=8),
                   LayerSpec("linear", m=1, c=64, k=10, w_bits=8, a_bits=8)), (3, 224, 224))
    nc = network_cost(net, EYERISS_LIKE, unroll=TIMELOOPS)
    assert all(c.mapping["mapper"] == "given" for c in nc.layers)
    assert cost(FIRST, EYERISS_LIKE, unroll=TIMELOOPS) is nc.layers[0]
    assert cost(FIRST, EYERISS_LIKE, mode="fast") is not nc.layers[0]


@st.composite
def unrolled_cases(draw):
    accel = Accelerator(pe_rows=draw(st.integers(1, 24)), pe_cols=draw(st.integers(1, 24)), glb_bytes=512 * KiB,
                        rf_bytes=draw(st.integers(6, 512)), dram_bw=draw(st.floats(1, 1e4)),
                        dataflow=draw(st.sampled_from(["ws", "os", "is", "rs"])), native_bits=8,
                        precisions=draw(st.sampled_from([(8,), (2, 4, 8)])), pipelined_folds=draw(st.booleans()))
    if draw(st.booleans()):
        c = draw(st.integers(1, 48))
        r = draw(st.sampled_from([1, 3, 5]))
        hw = draw(st.integers(r, 28))
        dw = draw(st.booleans())
        layer = LayerSpec("dwconv" if dw else "conv", n=draw(st.integers(1, 2)), c=c, k=c if dw else draw(st.integers(1, 48)),
                          groups=c if dw else 1, in_h=hw, in_w=hw, r=r, s=r, stride=draw(st.sampled_from([1, 2])),
                          pad=r // 2, w_bits=draw(st.sampled_from([4, 8])), a_bits=8)
    else:
        layer = LayerSpec("linear", m=draw(st.integers(1, 64)), c=draw(st.integers(1, 256)), k=draw(st.integers(1, 256)),
                          w_bits=8, a_bits=8)

    def side(most):
        dims = draw(st.lists(st.sampled_from(["g", "n", "k", "c", "r", "s", "h", "w"]), max_size=2, unique=True))
        out = []
        for d in dims:
            f = draw(st.integers(1, max(1, most)))
            out.append((d, f))
            most //= f
        return tuple(out)

    return layer, accel, Unrolling(rows=side(accel.pe_rows), cols=side(accel.pe_cols))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=unrolled_cases())
def test_no_unrolling_beats_the_pes_it_occupies(case):
    layer, a, unroll = case
    c = cost(layer, a, unroll=unroll)
    m = c.mapping
    used = m["pe_rows_used"] * m["pe_cols_used"]
    assert m["pe_rows_used"] <= a.pe_rows and m["pe_cols_used"] <= a.pe_cols
    assert c.compute_cycles >= c.executed_macs / (used * m["macs_per_pe_cycle"]) * (1 - 1e-9)
    assert 0 < c.utilization <= 1 + 1e-9
    assert all(v >= 0 for v in c.energy_pj.values()) and c.writes["dram"] >= layer.out_bytes * (1 - 1e-9)


@pytest.mark.parametrize("unroll, words", [
    (Unrolling(rows=(("c", 3), ("r", 5))), "needs 15 x 1 PEs.*12 rows x 14 columns"),
    (Unrolling(cols=(("k", 16),)), "needs 1 x 16 PEs"),
])
def test_an_unrolling_the_array_cannot_hold_is_a_one_line_error(unroll, words):
    with pytest.raises(SpecError, match=words) as e:
        cost(FIRST, EYERISS_LIKE, unroll=unroll)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("text, words", [
    ("rows=q:3", "dimension 'q' is unknown"), ("rows=c:0", "must be a positive integer"),
    ("rows=c3", "must be DIM:FACTOR"), ("diag=c:3", "expected 'rows="),
])
def test_a_malformed_unrolling_names_what_is_wrong(text, words):
    with pytest.raises(SpecError, match=words):
        Unrolling.parse(text)


def test_an_unrolling_reads_back_from_its_text():
    u = Unrolling.parse("rows=c:3,r:3 cols=k:8")
    assert u == TIMELOOPS and Unrolling.parse(str(u)) == u and u.pes == (9, 8) and u.factor("k") == 8
    assert Unrolling.parse("cols=k:4") == Unrolling(cols={"k": 4})


def test_hw_cost_takes_an_unrolling_on_the_command_line(tmp_path):
    NetSpec((FIRST,), (3, 224, 224)).to_json(str(tmp_path / "net.json"))
    args = ["hw", "cost", "--accel", "eyeriss", "--layers", str(tmp_path / "net.json"), "--format", "csv"]
    given_ = CliRunner().invoke(app, [*args, "--unroll", "rows=c:3,r:3 cols=k:8"])
    free = CliRunner().invoke(app, args)
    assert given_.exit_code == 0 and "given: rows=c:3" in given_.output
    assert "given" not in free.output


# ---- pipelined folds ----------------------------------------------------------------------------------
CONV3 = LayerSpec("conv", c=256, k=384, in_h=12, in_w=12, r=3, s=3, pad=1, w_bits=8, a_bits=8)


def test_pipelined_folds_pay_the_fill_once_per_layer_and_are_off_by_default():
    assert not TPU.pipelined_folds
    on = TPU.with_(pipelined_folds=True)
    # 256 * 9 reduction rows over 32 and 384 filters over 32: 72 * 12 folds streaming 144 pixels each.
    folds, fill = 72 * 12, 2 * 32 + 32 - 2
    assert cost(CONV3, TPU, mode="fast").compute_cycles == folds * (144 + fill) - 1
    assert cost(CONV3, on, mode="fast").compute_cycles == folds * 144 + fill - 1


def test_a_fold_shorter_than_the_array_still_waits_for_its_tile_to_shift_in():
    one_pixel = LayerSpec("linear", m=1, c=1024, k=1024, w_bits=8, a_bits=8)
    on = TPU.with_(pipelined_folds=True)
    assert cost(one_pixel, on, mode="fast").compute_cycles == 32 * 32 * 32 + (2 * 32 + 32 - 2) - 1


def test_row_stationary_arrays_have_no_folds_to_pipeline():
    on = EYERISS_LIKE.with_(pipelined_folds=True)
    for mode in ("fast", "search"):
        assert cost(FIRST, on, mode=mode).to_dict() == cost(FIRST, EYERISS_LIKE, mode=mode).to_dict()


def test_the_option_is_left_out_of_old_fingerprints_and_survives_json_and_pickles():
    assert "pipelined_folds" not in TPU.to_dict()
    on = TPU.with_(pipelined_folds=True)
    assert on.key != TPU.key and Accelerator.from_dict(on.to_dict()) == on
    old = TPU.__getstate__()
    del old["pipelined_folds"]  # an accelerator pickled before the option existed
    revived = Accelerator.__new__(Accelerator)
    revived.__setstate__(old)
    assert revived == TPU and hash(revived) == hash(TPU)
    assert pickle.loads(pickle.dumps(on)) == on
    with pytest.raises(SpecError, match="pipelined_folds"):
        TPU.with_(pipelined_folds="yes")


def test_scalesim_cfg_files_never_pipeline_their_folds(tmp_path):
    cfg = tmp_path / "arch.cfg"
    cfg.write_text("[architecture_presets]\nArrayHeight: 8\nArrayWidth: 8\nIfmapSramSzkB: 64\n"
                   "FilterSramSzkB: 64\nOfmapSramSzkB: 64\nDataflow : ws\n")
    assert not Accelerator.resolve(str(cfg)).pipelined_folds
