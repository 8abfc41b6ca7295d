"""The nb201 space: NAS-Bench-201's cells, arch strings and index order, and networks that trace exactly."""

import gzip
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from hwsearch import spaces
from hwsearch.cli import app
from hwsearch.errors import ConfigError, SpecError, UnknownName
from hwsearch.estimators.counters import count_params, trace_netspec
from hwsearch.search.engine.config import parse_config
from hwsearch.search.engine.trial import evaluate_trial
from hwsearch.spaces import nb201_arch

ROOT = Path(__file__).resolve().parent.parent
TABLE = ROOT / "hwsearch" / "spaces" / "data" / "nb201_arch_index.txt.gz"
# From the README that came with the table: its sha256 and its line 0 (the cell with index 0).
TABLE_SHA256 = "125a427f9cfe60ca5cce097cd47416b3f668f2618dd8df4637280051e422e75b"
INDEX_0 = "|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|"
BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def space():
    return spaces.get("nb201")


def _assert_traces_exactly(space, choice, batch=1):
    model = space.build(choice)
    traced = trace_netspec(model, space.input_shape(choice), batch=batch)
    net = space.to_netspec(choice, batch=batch)
    assert [(layer.name, layer) for layer in traced.layers] == [(layer.name, layer) for layer in net.layers]
    assert traced.macs == net.macs
    assert count_params(model) == net.params
    return net


def test_space_has_one_gene_per_edge_with_nas_bench_201s_five_operators(space):
    assert space.dim_names == ["e0to1", "e0to2", "e1to2", "e0to3", "e1to3", "e2to3"]
    assert all(d.options == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
               for d in space.dims)
    assert np.prod([len(d.options) for d in space.dims]) == nb201_arch.NUM_CELLS == 15_625
    assert space.input_shape(space.reference("largest")) == (3, 32, 32)


def test_hook_traced_layers_macs_and_params_equal_the_netspec_for_100_random_cells(space):
    rng = np.random.default_rng(201)
    for _ in range(100):
        _assert_traces_exactly(space, space.sample(rng))


def test_references_and_a_larger_batch_trace_exactly(space):
    for name in space.references():
        _assert_traces_exactly(space, space.reference(name))
    _assert_traces_exactly(space, space.from_arch_str(BEST), batch=2)


def test_shipped_index_table_is_the_published_file(space):
    assert hashlib.sha256(TABLE.read_bytes()).hexdigest() == TABLE_SHA256
    assert gzip.decompress(TABLE.read_bytes()).decode().splitlines()[0] == INDEX_0
    assert space.arch_str_of_index(0) == INDEX_0


def test_index_and_arch_string_round_trip_for_all_15625_cells(space):
    seen = set()
    for index in range(nb201_arch.NUM_CELLS):
        arch = space.arch_str_of_index(index)
        choice = space.from_arch_str(arch)
        assert space.to_arch_str(choice) == arch
        assert space.index_of(arch) == space.index_of(choice) == index
        seen.add(arch)
    assert len(seen) == nb201_arch.NUM_CELLS


def test_arch_string_lists_each_nodes_inputs_in_order(space):
    choice = space.from_arch_str(BEST)
    assert (choice["e0to1"], choice["e0to3"], choice["e2to3"]) == ("nor_conv_3x3", "skip_connect", "nor_conv_3x3")
    assert space.reference("best-known") == choice
    assert space.reference(BEST) == choice
    assert space.notation(choice) == BEST


@pytest.mark.parametrize("arch, match", [
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|", "2 node"),
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|", "node 2 has 1 input"),
    ("|conv_5x5~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|", "conv_5x5"),
    ("|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|", "op~0"),
    ("nor_conv_3x3~0+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|", "'\\|'"),
])
def test_a_malformed_arch_string_is_a_spec_error_naming_the_fault(space, arch, match):
    with pytest.raises(SpecError, match=match):
        space.from_arch_str(arch)
    with pytest.raises(SpecError, match=match):
        space.index_of(arch)


def test_out_of_range_indices_and_unknown_references_are_clear_errors(space):
    for bad in (-1, 15_625, 2.0):
        with pytest.raises(SpecError, match="0 to 15624"):
            space.arch_str_of_index(bad)
    with pytest.raises(UnknownName, match="arch string"):
        space.reference("resnet")
    with pytest.raises(ConfigError, match="multiple of 4"):
        spaces.get("nb201", resolution=30)


def test_none_edges_have_no_layer_and_a_cell_of_only_none_paths_outputs_zeros(space):
    choice = space.from_arch_str("|nor_conv_1x1~0|+|none~0|none~1|+|avg_pool_3x3~0|none~1|none~2|")
    net = _assert_traces_exactly(space, choice)
    cell = [layer.name for layer in net.layers if layer.name.startswith("cells.0.")]
    # Node 2 has only none inputs (a zero map); node 3 = pool(node 0) + 0 needs no add.
    assert cell == ["cells.0.e0to1.relu", "cells.0.e0to1.conv", "cells.0.e0to1.bn", "cells.0.e0to3"]
    # Every cell outputs zeros when node 3's inputs are all none: the logits no longer depend on the input.
    dead = space.build(space.from_arch_str("|nor_conv_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|none~0|none~1|none~2|"))
    dead.eval()
    with torch.no_grad():
        a, b = dead(torch.randn(1, 3, 32, 32)), dead(torch.randn(1, 3, 32, 32))
    assert torch.equal(a, b)


def test_reductions_are_residual_blocks_with_a_pooled_1x1_shortcut(space):
    layers = {layer.name: layer for layer in space.to_netspec(space.reference("smallest")).layers}
    assert (layers["cells.5.conv_a.conv"].stride, layers["cells.5.conv_a.conv"].k) == (2, 32)
    assert (layers["cells.5.shortcut.pool"].r, layers["cells.5.shortcut.pool"].stride) == (2, 2)
    assert (layers["cells.11.shortcut.conv"].c, layers["cells.11.shortcut.conv"].k, layers["cells.11.add"].in_h) \
        == (32, 64, 8)
    assert layers["classifier"].c == 64


def test_cli_sample_prints_the_arch_string_and_accepts_one_as_reference(space):
    runner = CliRunner()
    out = runner.invoke(app, ["spaces", "sample", "nb201", "--seed", "0"])
    assert out.exit_code == 0, out.output
    arch = space.to_arch_str(space.sample(np.random.default_rng(0)))
    assert arch in out.output.splitlines()
    assert "cells.0" in out.output and "classifier" in out.output
    out = runner.invoke(app, ["spaces", "sample", "nb201", "--reference", BEST, "--format", "json"])
    assert out.exit_code == 0, out.output
    assert f'"notation": "{BEST}"' in out.output and space.to_netspec(space.from_arch_str(BEST)).macs > 0


def test_cli_with_a_malformed_arch_string_prints_one_line_and_exits_2():
    bad = "|nor_conv_3x3~0|+|bogus~0|none~1|+|none~0|none~1|none~2|"
    proc = subprocess.run([sys.executable, "-m", "hwsearch.cli", "spaces", "sample", "nb201", "--reference", bad],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and re.search("bogus", proc.stderr)


def test_a_small_nb201_trains_through_the_engine(tiny_experiment, tmp_path):
    # The engine sizes the space for the data (digits: 1 channel, 10 classes) and trains space.build(choice).
    options = {"resolution": 8, "channels": 4, "cells_per_stage": 1}
    cfg = parse_config(tiny_experiment(tmp_path, space={"name": "nb201", "options": options},
                                       evaluation={"epochs": 1, "seed": 0, "recipe": {"batch_size": 64, "threads": 1}}))
    best = spaces.get("nb201", in_channels=1, **options)
    choice = best.from_arch_str(BEST)
    report = evaluate_trial({"choice": {g: int(i) for g, i in zip(best.dim_names, best.encode(choice), strict=True)}},
                            cfg, tmp_path / "t0")
    assert json.loads(report["choice"]) == choice
    assert 0.0 <= report["val_acc"] <= 1.0 and np.isfinite(report["final_loss"])
    assert report["macs"] == best.to_netspec(choice).macs


def test_a_forward_and_backward_pass_reaches_every_weight_of_a_live_cell():
    space = spaces.get("nb201", resolution=8, channels=4, cells_per_stage=1)
    model = space.build(space.reference("largest"))
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 8, 8)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
