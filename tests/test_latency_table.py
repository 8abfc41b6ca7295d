import json
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from hwsearch import spaces
from hwsearch.errors import CorruptTable, HwsearchError
from hwsearch.estimators import LatencyTable, MissingEntry, TableEntry
from hwsearch.estimators.latency_table import build_model_table, model_entry, model_fingerprint
from hwsearch.hwmodel import Accelerator, network_cost
from hwsearch.ir import LayerSpec, NetSpec

A = LayerSpec("conv", c=8, k=16, in_h=8, in_w=8, r=3, s=3, pad=1, name="a")
B = LayerSpec("linear", m=4, c=16, k=10, name="b")


def table_with_two() -> LatencyTable:
    t = LatencyTable("measured", {"cpu": "x", "threads": 1})
    t.add(A, TableEntry(1e-3, energy_pj=5.0, spread=0.02, extra={"cycles": 10.0}))
    t.add(B, TableEntry(2e-4))
    return t


def test_saved_table_loads_back_identical(tmp_path):
    t = table_with_two()
    t.save(tmp_path / "t.json")
    u = LatencyTable.load(tmp_path / "t.json", fingerprint={"threads": 1, "cpu": "x"})
    assert u.entries == t.entries and u.source == "measured" and len(u) == 2
    assert A in u and A.with_(k=32) not in u


def test_predict_sums_entries_and_names_a_missing_layer():
    t = table_with_two()
    net = NetSpec((A, B, A), (8, 8, 8))
    assert t.predict(net) == pytest.approx(2e-3 + 2e-4)
    with pytest.raises(MissingEntry, match="'c'"):
        t.predict([A, LayerSpec("conv", c=3, k=3, in_h=4, in_w=4, name="c")])
    with pytest.raises(HwsearchError, match="no energy"):
        t.predict_energy(net)


def test_fill_costs_only_the_missing_layers():
    t = table_with_two()
    calls = []
    c = LayerSpec("softmax", m=4, k=4)
    added = t.fill([A, B, c, c], lambda layer: calls.append(layer) or TableEntry(1.0))
    assert added == 1 and calls == [c] and t.missing([A, B, c]) == []


@pytest.mark.parametrize("damage", ["truncate", "edit", "version", "garbage"])
def test_corrupt_files_are_detected_not_used(tmp_path, damage):
    path = tmp_path / "t.json"
    table_with_two().save(path)
    text = path.read_text()
    if damage == "truncate":
        path.write_text(text[: len(text) // 2])
    elif damage == "edit":
        path.write_text(text.replace("0.001", "0.002"))
    elif damage == "version":
        doc = json.loads(text)
        doc["format_version"] = 99
        path.write_text(json.dumps(doc))
    else:
        path.write_bytes(b"\x00\xff")
    with pytest.raises(CorruptTable):
        LatencyTable.load(path)


def test_a_table_for_another_target_is_stale(tmp_path):
    path = tmp_path / "t.json"
    table_with_two().save(path)
    with pytest.raises(CorruptTable, match="fingerprint"):
        LatencyTable.load(path, fingerprint={"cpu": "y", "threads": 1})


def test_load_or_build_warns_and_rebuilds_a_corrupt_file(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"format_version": 1, "sha256": "0"')
    with pytest.warns(UserWarning, match="rebuilding"):
        t = LatencyTable.load_or_build(path, {"cpu": "x"}, [A, B], lambda layer: TableEntry(3.0), source="measured")
    assert t.predict([A, B]) == 6.0
    assert LatencyTable.load(path, {"cpu": "x"}).entries == t.entries
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = LatencyTable.load_or_build(path, {"cpu": "x"}, [A], lambda layer: TableEntry(9.0))
    assert again.predict([A]) == 3.0


def test_model_table_predicts_what_network_cost_reports(tmp_path):
    space = spaces.get("vit")
    accel = Accelerator.preset("edge-systolic")
    table = build_model_table(space, accel, tmp_path / "vit.json", bases=1, bits=(8,), patience=10)
    rng = np.random.default_rng(3)
    for _ in range(5):
        net = space.to_netspec(space.sample(rng))
        nc = network_cost(net, accel)
        assert table.predict(net) == pytest.approx(nc.latency_s, rel=1e-9)
        assert table.predict_energy(net) == pytest.approx(nc.energy_pj, rel=1e-9)
    loaded = LatencyTable.load(tmp_path / "vit.json", model_fingerprint(accel))
    assert len(loaded) == len(table)
    with pytest.raises(CorruptTable):
        LatencyTable.load(tmp_path / "vit.json", model_fingerprint(accel.with_(pe_rows=8)))


def test_model_entry_carries_cycles_and_energy_by_level():
    e = model_entry(A.with_(w_bits=8, a_bits=8), Accelerator.preset("eyeriss"))
    assert e.energy_pj and e.latency_s > 0
    assert {"compute_cycles", "stall_cycles", "energy_dram_pj", "utilization"} <= set(e.extra)


def test_hw_cost_reads_scalesim_files_and_prints_one_csv_row_per_layer(tmp_path):
    from hwsearch.cli import app

    cfg = tmp_path / "arch.cfg"
    cfg.write_text("[architecture_presets]\nArrayHeight: 8\nArrayWidth: 8\nIfmapSramSzkB: 64\n"
                   "FilterSramSzkB: 64\nOfmapSramSzkB: 64\nDataflow : os\n")
    topo = tmp_path / "topo.csv"
    topo.write_text("Layer, H, W, FH, FW, C, K, S,\nc1, 10, 10, 3, 3, 4, 16, 1,\nc2, 8, 8, 1, 1, 16, 8, 1,\n")
    result = CliRunner().invoke(app, ["hw", "cost", "--accel", str(cfg), "--layers", str(topo), "--format", "csv"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    header = lines[0].split(",")
    assert header[:7] == ["name", "compute_cycles", "stall_cycles", "total_cycles", "latency_s", "energy_pj",
                          "utilization"]
    assert len(lines) == 3 and lines[1].startswith("c1,799,")


def test_hw_cost_json_total_is_exactly_network_cost(tmp_path):
    from hwsearch.cli import app

    net = spaces.get("vit").to_netspec(spaces.get("vit").reference("smallest"))
    net.to_json(str(tmp_path / "netspec.json"))
    accel = Accelerator.preset("bitfusion")
    accel.to_file(tmp_path / "hardware.json")
    result = CliRunner().invoke(app, ["hw", "cost", "--accel", str(tmp_path / "hardware.json"),
                                      "--layers", str(tmp_path / "netspec.json"), "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    nc = network_cost(net, accel, mode="search")
    assert doc["total"]["latency_s"] == nc.latency_s and doc["total"]["energy_pj"] == nc.energy_pj
    assert len(doc["layers"]) == len(net)


def test_lut_build_writes_a_verifiable_table(tmp_path):
    from hwsearch.cli import app

    out = tmp_path / "lut.json"
    result = CliRunner().invoke(app, ["lut", "build", "--space", "vit", "--accel", "eyeriss", "--out", str(out),
                                      "--bases", "0", "--patience", "5"])
    assert result.exit_code == 0, result.output
    t = LatencyTable.load(out, model_fingerprint(Accelerator.preset("eyeriss")))
    assert len(t) > 10 and t.source == "model"
