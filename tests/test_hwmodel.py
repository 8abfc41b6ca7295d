import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hwsearch.cli import app
from hwsearch.errors import SpecError, UnknownName
from hwsearch.hwmodel import (
    LEVELS,
    Accelerator,
    cost,
    hardware_metrics,
    network_cost,
    preset_names,
    read_topology,
)
from hwsearch.ir import LayerSpec, NetSpec

ROOT = Path(__file__).resolve().parent.parent
KiB = 1024


def conv(op="conv", **kw):
    d = dict(c=64, k=64, in_h=14, in_w=14, r=3, s=3, pad=1, w_bits=8, a_bits=8)
    d.update(kw)
    return LayerSpec(op, **d)


def systolic(rows, cols, df, **kw):
    d = dict(pe_rows=rows, pe_cols=cols, ifmap_sram_bytes=1 << 20, filter_sram_bytes=1 << 20,
             ofmap_sram_bytes=1 << 20, dataflow=df, dram_bw=10)
    d.update(kw)
    return Accelerator(**d)


@pytest.mark.parametrize("name", ["eyeriss", "nvdla-small", "tpu-v1", "edge-systolic", "bitfusion"])
def test_every_preset_is_valid_and_round_trips_through_json_and_yaml(name, tmp_path):
    a = Accelerator.preset(name)
    assert a.area_mm2 > 0 and a.peak_power_w > 0
    for suffix in (".json", ".yaml"):
        path = tmp_path / f"a{suffix}"
        a.to_file(path)
        b = Accelerator.from_file(path)
        assert b == a and b.key == a.key and b.name == a.name


def test_presets_match_their_published_shapes():
    assert set(preset_names()) >= {"eyeriss", "nvdla-small", "tpu-v1", "edge-systolic", "bitfusion"}
    e = Accelerator.preset("eyeriss")
    assert (e.pe_rows, e.pe_cols, e.dataflow, e.glb_bytes) == (12, 14, "rs", 108 * KiB)
    t = Accelerator.preset("tpu-v1")
    assert (t.pe_rows, t.pe_cols, t.dataflow, t.ifmap_sram_bytes) == (256, 256, "ws", 24 * KiB * KiB)
    assert Accelerator.preset("nvdla-small").num_pes == 64
    assert Accelerator.preset("bitfusion").precisions == (2, 4, 8)


def test_a_pickled_accelerator_hashes_like_a_fresh_one_in_another_process():
    import pickle
    import subprocess
    import sys

    a = Accelerator.preset("tpu-v1")
    assert pickle.loads(pickle.dumps(a)) == a and hash(pickle.loads(pickle.dumps(a))) == hash(a)
    code = ("import pickle, sys; from hwsearch.hwmodel import Accelerator; "
            "b = pickle.loads(sys.stdin.buffer.read()); print(hash(b) == hash(Accelerator.preset('tpu-v1')))")
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(a), capture_output=True, check=True,
                         env={"PYTHONHASHSEED": "123", "PATH": ""}, cwd=ROOT)
    assert out.stdout.strip() == b"True"


def test_name_is_not_part_of_an_accelerators_identity():
    a = Accelerator.preset("eyeriss")
    assert a.with_(name="other") == a and hash(a.with_(name="other")) == hash(a)
    assert a.with_(pe_rows=13).key != a.key


@pytest.mark.parametrize("changes, words", [
    ({"pe_rows": 0}, "pe_rows"),
    ({"pe_cols": -3}, "pe_cols"),
    ({"dataflow": "xs"}, "dataflow"),
    ({"glb_bytes": 0}, "buffers missing"),
    ({"ifmap_sram_bytes": 1024}, "not both"),
    ({"precisions": (3, 8)}, "precisions"),
    ({"precisions": (4,)}, "must include native_bits"),
    ({"sparsity": "magic"}, "sparsity"),
    ({"dram_bw": 0}, "dram_bw"),
    ({"clock_hz": float("nan")}, "clock_hz"),
    ({"rf_bytes": 1}, "rf_bytes"),
    ({"tech": "3nm"}, "tech"),
])
def test_invalid_fields_are_rejected_with_the_field_named(changes, words):
    base = Accelerator.preset("eyeriss").to_dict()
    base.update(changes)
    with pytest.raises(SpecError, match=words):
        Accelerator.from_dict(base)


def test_unknown_preset_and_unknown_field_name_what_is_accepted():
    with pytest.raises(UnknownName, match="eyeriss"):
        Accelerator.preset("eyeris")
    with pytest.raises(SpecError, match="pe_rowz"):
        Accelerator.from_dict({"pe_rows": 2, "pe_cols": 2, "glb_bytes": 4096, "pe_rowz": 1})


def test_buffer_smaller_than_one_tile_is_a_clear_error():
    tiny = Accelerator(pe_rows=4, pe_cols=4, glb_bytes=64, rf_bytes=8)
    with pytest.raises(SpecError, match="smallest tile"):
        cost(conv(in_h=56, in_w=56), tiny)


def test_scalesim_cfg_is_read_into_an_accelerator(tmp_path):
    cfg = tmp_path / "arch.cfg"
    cfg.write_text(
        "[general]\nrun_name = mine\n[architecture_presets]\nArrayHeight: 32\nArrayWidth: 16\n"
        "IfmapSramSzkB: 64\nFilterSramSzkB: 32\nOfmapSramSzkB: 16\nDataflow : ws\nBandwidth : 20\n"
        "[run_presets]\nInterfaceBandwidth: USER\n"
    )
    a = Accelerator.from_scalesim_cfg(cfg)
    assert (a.pe_rows, a.pe_cols, a.dataflow, a.name) == (32, 16, "ws", "mine")
    assert (a.ifmap_sram_bytes, a.filter_sram_bytes, a.ofmap_sram_bytes) == (64 * KiB, 32 * KiB, 16 * KiB)
    assert a.dram_bw == 20.0
    assert Accelerator.resolve(str(cfg)) == a


def test_topology_csv_rows_become_layers_with_scalesims_shapes(tmp_path):
    conv_csv = tmp_path / "c.csv"
    conv_csv.write_text("Layer, H, W, FH, FW, C, K, S,\nc1, 10, 10, 3, 3, 4, 16, 1,\nDP1, 9, 9, 3, 3, 8, 1, 2,\n")
    c1, *dp = read_topology(conv_csv)
    assert (c1.op, c1.h, c1.w, c1.c, c1.k) == ("conv", 8, 8, 4, 16)
    # SCALE-Sim runs a depthwise (DP) row as one single-channel layer per input channel.
    assert [(d.name, d.op, d.c, d.k, d.h) for d in dp] == [(f"DP1Channel_{j}", "conv", 1, 1, 4) for j in range(8)]
    gemm_csv = tmp_path / "g.csv"
    gemm_csv.write_text("Layer, M, N, K,\nqkv, 16, 2304, 768,\n")
    (g,) = read_topology(gemm_csv)
    assert (g.op, g.m, g.k, g.c, g.macs) == ("linear", 16, 2304, 768, 16 * 2304 * 768)


def test_topology_layers_round_their_output_size_up_as_scalesim_does(tmp_path):
    conv_csv = tmp_path / "c.csv"
    conv_csv.write_text("Layer, H, W, FH, FW, C, K, S,\nodd, 10, 11, 3, 3, 4, 16, 2,\n")
    (layer,) = read_topology(conv_csv)
    # ceil((10 - 3 + 2) / 2) = 5 and ceil((11 - 3 + 2) / 2) = 5, where a framework gets 4 and 5.
    assert (layer.h, layer.w, layer.ceil_mode, layer.pad) == (5, 5, True, 0)
    assert layer.macs == 5 * 5 * 16 * 4 * 3 * 3


def test_a_topology_row_with_two_different_strides_is_a_clear_error(tmp_path):
    conv_csv = tmp_path / "c.csv"
    conv_csv.write_text("Layer, H, W, FH, FW, C, K, SH, SW,\nc, 10, 10, 3, 3, 4, 16, 2, 1,\n")
    with pytest.raises(SpecError, match="strides 2 .height. and 1 .width. differ"):
        read_topology(conv_csv)


@pytest.mark.parametrize("df", ["os", "ws", "is"])
def test_hw_cost_of_a_scalesim_topology_with_an_odd_stride_gives_scalesims_compute_cycles(df, tmp_path):
    cfg = tmp_path / "arch.cfg"
    cfg.write_text("[architecture_presets]\nArrayHeight: 8\nArrayWidth: 8\nIfmapSramSzkB: 1024\n"
                   f"FilterSramSzkB: 1024\nOfmapSramSzkB: 1024\nDataflow : {df}\n")
    topo = tmp_path / "t.csv"
    topo.write_text("Layer, H, W, FH, FW, C, K, S,\nodd, 10, 10, 3, 3, 4, 16, 2,\n")
    (row,) = network_cost(read_topology(topo), Accelerator.resolve(str(cfg))).rows()
    # SCALE-Sim's operand matrices for this layer: ceil((10 - 3 + 2) / 2) = 5, so 5 x 5 = 25 output
    # pixels (a framework's floor gives 4 x 4 = 16), 16 filters, window 3 * 3 * 4 = 36. Each fold of the
    # 8 x 8 array streams T operands and waits for the skewed pipeline, so SCALE-Sim reports
    # folds * (T + fill) - 1 cycles: os maps (pixels, filters) over (rows, cols) with T = window and
    # fill = 8 + 8 - 2; ws maps (window, filters) with T = pixels and is maps (window, pixels) with
    # T = filters, both with fill = 2 * 8 + 8 - 2.
    expected = {
        "os": math.ceil(25 / 8) * math.ceil(16 / 8) * (36 + 14) - 1,   # 4 * 2 folds: 399
        "ws": math.ceil(36 / 8) * math.ceil(16 / 8) * (25 + 22) - 1,   # 5 * 2 folds: 469
        "is": math.ceil(36 / 8) * math.ceil(25 / 8) * (16 + 22) - 1,   # 5 * 4 folds: 759
    }[df]
    assert row["compute_cycles"] == expected
    # what a user gets from the command line on the same files, without naming a mapper
    result = CliRunner().invoke(app, ["hw", "cost", "--accel", str(cfg), "--layers", str(topo), "--format", "csv"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[1].startswith(f"odd,{expected},")


def test_a_framework_layer_keeps_floor_rounding_and_its_key():
    layer = LayerSpec("conv", c=4, k=16, in_h=10, in_w=10, r=3, s=3, stride=2, w_bits=8, a_bits=8)
    assert (layer.h, layer.w, layer.ceil_mode) == (4, 4, False)
    assert "ceil_mode" not in layer.key and "ceil_mode" not in layer.to_dict()
    scalesim = layer.with_(ceil_mode=True)
    assert (scalesim.h, scalesim.w) == (5, 5) and scalesim.key != layer.key
    assert LayerSpec.from_dict(scalesim.to_dict()) == scalesim


# Cycle counts SCALE-Sim 3.0.0 printed for a 10x10x4 input, 3x3 filters, 16 filters on an 8x8 array.
@pytest.mark.parametrize("df, cycles", [("os", 799), ("ws", 859), ("is", 1519)])
def test_systolic_compute_cycles_equal_scalesims_on_a_hand_checked_layer(df, cycles):
    layer = LayerSpec("conv", c=4, k=16, in_h=10, in_w=10, r=3, s=3, w_bits=8, a_bits=8)
    assert cost(layer, systolic(8, 8, df)).compute_cycles == cycles


def test_compute_cycles_agree_with_the_stored_scalesim_reference():
    doc = json.loads((ROOT / "benchmarks" / "data" / "scalesim_reference.json").read_text())
    assert len(doc["cases"]) >= 200
    errors = []
    for case in doc["cases"]:
        a = systolic(case["rows"], case["cols"], case["dataflow"])
        if case["kind"] == "conv":
            _, h, w, fh, fw, c, k, s = case["layer"]
            layer = LayerSpec("conv", c=c, k=k, in_h=h, in_w=w, r=fh, s=fw, stride=s, ceil_mode=True,
                              w_bits=8, a_bits=8)
        else:
            _, m, n, k = case["layer"]
            layer = LayerSpec("linear", m=m, c=k, k=n, w_bits=8, a_bits=8)
        ref = case["scalesim"]["compute_cycles"]
        errors.append(abs(cost(layer, a).compute_cycles - ref) / ref)
    within = sum(e <= 0.05 for e in errors) / len(errors)
    assert within >= 0.95


def test_bit_fusion_runs_low_bit_layers_proportionally_faster():
    bf = Accelerator.preset("bitfusion")
    c8 = cost(conv(), bf)
    c4 = cost(conv(w_bits=4, a_bits=4), bf)
    c2 = cost(conv(w_bits=2, a_bits=8), bf)
    assert c4.compute_cycles < c8.compute_cycles / 3
    assert c2.compute_cycles < c8.compute_cycles / 2.5
    assert c4.energy_pj["mac"] == pytest.approx(c8.energy_pj["mac"] / 4)
    assert c4.dram_bytes < c8.dram_bytes


def test_wider_than_native_operands_take_several_passes():
    a = systolic(16, 16, "os")
    c8, c16 = cost(conv(), a), cost(conv(w_bits=16, a_bits=16), a)
    assert c16.mapping["passes"] == 4
    assert c16.compute_cycles > 3 * c8.compute_cycles
    assert c16.energy_pj["mac"] == pytest.approx(4 * c8.energy_pj["mac"])


def test_low_bits_give_no_speedup_on_an_array_without_fused_precisions():
    a = systolic(16, 16, "ws")
    assert cost(conv(w_bits=4, a_bits=4), a).compute_cycles == cost(conv(), a).compute_cycles


def test_zero_skipping_hardware_exploits_fine_grained_sparsity_and_dense_hardware_does_not():
    dense_hw = systolic(16, 16, "os")
    skip_hw = dense_hw.with_(sparsity="zero_skip")
    sparse = conv(density=0.25)
    assert cost(sparse, dense_hw).compute_cycles == cost(conv(), dense_hw).compute_cycles
    s = cost(sparse, skip_hw)
    assert s.executed_macs == pytest.approx(0.25 * sparse.macs)
    assert s.compute_cycles < 0.4 * cost(conv(), skip_hw).compute_cycles
    assert s.reads["dram"] < cost(sparse, dense_hw).reads["dram"]


def test_nm_hardware_skips_nm_structured_sparsity_only():
    nm_hw = systolic(16, 16, "ws", sparsity="nm")
    dense = cost(conv(), nm_hw)
    assert cost(conv(nm=(2, 4)), nm_hw).compute_cycles < 0.6 * dense.compute_cycles
    assert cost(conv(density=0.5), nm_hw).compute_cycles == dense.compute_cycles


@pytest.mark.parametrize("df", ["ws", "os", "is", "rs"])
def test_every_dataflow_costs_every_op_with_positive_energy_at_every_level(df):
    a = Accelerator(pe_rows=8, pe_cols=8, glb_bytes=256 * KiB, dataflow=df, rf_bytes=64)
    layers = [conv(), conv(op="dwconv", c=32, k=32, groups=32),
              LayerSpec("linear", n=1, m=16, c=128, k=256, w_bits=8, a_bits=8),
              LayerSpec("matmul", n=4, m=16, c=32, k=16, a_bits=8),
              LayerSpec("softmax", n=4, m=16, k=16), LayerSpec("norm", c=64, in_h=14, in_w=14),
              LayerSpec("eltwise", c=64, in_h=14, in_w=14, fn="add"),
              LayerSpec("pool", c=64, in_h=14, in_w=14, r=2, s=2, stride=2)]
    for layer in layers:
        c = cost(layer, a)
        assert c.total_cycles >= c.compute_cycles >= 1
        assert 0 < c.utilization <= 1 + 1e-9
        assert c.total_energy_pj > 0 and c.energy_pj["dram"] > 0
        if layer.macs:
            assert all(c.energy_pj[k] > 0 for k in LEVELS)


def test_costs_are_cached_per_layer_and_accelerator():
    a = Accelerator.preset("edge-systolic")
    assert cost(conv(), a) is cost(conv(name="renamed"), a)


def test_network_cost_sums_its_layers_and_metrics_use_declared_units():
    a = Accelerator.preset("eyeriss")
    net = NetSpec((conv(name="a"), conv(c=64, k=128, name="b"), LayerSpec("softmax", m=8, k=8, name="s")), (64, 14, 14))
    nc = network_cost(net, a)
    assert nc.names == ("a", "b", "s")
    assert nc.latency_s == pytest.approx(sum(cost(x, a).latency_s for x in net.layers))
    assert nc.energy_pj == pytest.approx(sum(cost(x, a).total_energy_pj for x in net.layers))
    assert 0 < nc.utilization <= 1
    m = hardware_metrics(net, a)
    assert m["latency_ms"] == pytest.approx(nc.latency_s * 1e3)
    assert m["energy_mj"] == pytest.approx(nc.energy_pj * 1e-9)
    assert m["edp"] == pytest.approx(m["energy_mj"] * m["latency_ms"])
    assert m["area_mm2"] == a.area_mm2 and math.isfinite(m["peak_power_w"])


def test_latency_objective_is_never_slower_than_the_edp_objective():
    a = Accelerator.preset("edge-systolic")
    for layer in (conv(), conv(c=256, k=256, in_h=7, in_w=7), LayerSpec("linear", m=64, c=768, k=3072, w_bits=8, a_bits=8)):
        fast, lean = cost(layer, a, "latency"), cost(layer, a, "edp")
        assert fast.total_cycles <= lean.total_cycles * 1.02 + 1


def test_larger_arrays_and_more_bandwidth_never_slow_a_layer_down():
    layer = conv(c=128, k=128, in_h=28, in_w=28)
    small = Accelerator(pe_rows=8, pe_cols=8, glb_bytes=512 * KiB, dram_bw=4)
    assert cost(layer, small.with_(dram_bw=64)).total_cycles <= cost(layer, small).total_cycles
    assert cost(layer, small.with_(pe_rows=16, pe_cols=16)).compute_cycles < cost(layer, small).compute_cycles
