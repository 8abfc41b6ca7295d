import json
import multiprocessing as mp

import pytest
from typer.testing import CliRunner

from hwsearch.cli import app
from hwsearch.estimators import LatencyTable, TableEntry
from hwsearch.estimators.measured import MeasuredLatency, cache_root, predicted_latency_ms
from hwsearch.ir import LayerSpec
from hwsearch.kernels import TimerConfig

LAYERS = [
    LayerSpec("conv", c=4, k=8, in_h=8, in_w=8, r=3, s=3, pad=1),
    LayerSpec("linear", c=16, k=8, m=4, bias=True),
    LayerSpec("eltwise", fn="relu", c=8, in_h=4, in_w=4),
    LayerSpec("linear", c=16, k=8, m=4, bias=True, w_bits=8, a_bits=8),
]


def estimator(cache, space="vit"):
    q = TimerConfig.quick()
    return MeasuredLatency(space, "cpu", threads=1, cache_dir=cache, layer_timer=q, network_timer=q)


def test_layers_are_measured_once_then_read_back_by_a_fresh_estimator(tmp_path):
    first = estimator(tmp_path)
    first.ensure(LAYERS)
    saved = {k: e.latency_s for k, e in first.table.entries.items()}
    again = estimator(tmp_path)
    assert not again.table.missing(LAYERS)
    again.ensure(LAYERS)
    assert {k: e.latency_s for k, e in again.table.entries.items()} == saved


def test_table_file_carries_space_and_device_fingerprint_and_entry_statistics(tmp_path):
    est = estimator(tmp_path)
    est.ensure(LAYERS[:2])
    table = LatencyTable.load(est.table_path, fingerprint=est.table_fingerprint)
    assert table.source == "measured"
    assert table.fingerprint["space"] == "vit" and table.fingerprint["threads"] == 1
    assert table.fingerprint["clock"] == "thread" and table.fingerprint["torch"]
    entry = table.entries[LAYERS[0].key]
    assert entry.latency_s > 0 and entry.spread is not None
    assert {"samples", "ci_rel", "int8", "sparse"} <= set(entry.extra)
    assert est.table_path.is_relative_to(tmp_path)


def test_int8_layers_are_marked_as_measured_on_int8_kernels(tmp_path):
    est = estimator(tmp_path)
    est.ensure(LAYERS)
    assert est.table.entries[LAYERS[3].key].extra["int8"] == 1.0
    assert est.table.entries[LAYERS[1].key].extra["int8"] == 0.0


@pytest.mark.parametrize("damage", ["truncate", "garbage", "edit"])
def test_a_corrupt_table_file_is_detected_reported_and_rebuilt(tmp_path, damage):
    est = estimator(tmp_path)
    est.ensure(LAYERS[:2])
    path = est.table_path
    text = path.read_text()
    if damage == "truncate":
        path.write_text(text[: len(text) // 2])
    elif damage == "garbage":
        path.write_bytes(b"\x00\xff not json")
    else:
        doc = json.loads(text)
        key = LAYERS[0].key
        doc["entries"][key]["latency_s"] = 123.0
        path.write_text(json.dumps(doc))
    fresh = estimator(tmp_path)
    with pytest.warns(UserWarning, match="rebuilding"):
        fresh.ensure(LAYERS[:2])
    rebuilt = LatencyTable.load(path, fingerprint=fresh.table_fingerprint)
    assert len(rebuilt) == 2 and rebuilt.entries[LAYERS[0].key].latency_s != 123.0


def test_a_table_recorded_on_another_setup_is_rebuilt_not_used(tmp_path):
    est = estimator(tmp_path)
    other = {**est.table_fingerprint, "model": "some other CPU", "threads": 2}
    stale = LatencyTable("measured", other)
    stale.add(LAYERS[0], TableEntry(latency_s=123.0))
    stale.save(est.table_path)
    with pytest.warns(UserWarning, match="another target"):
        est.ensure(LAYERS[:1])
    assert est.table.entries[LAYERS[0].key].latency_s != 123.0
    assert LatencyTable.load(est.table_path).fingerprint == est.table_fingerprint


def _worker(cache: str, which: int) -> None:
    estimator(cache).ensure(LAYERS[which::2])


def test_parallel_workers_fill_one_shared_table_without_losing_entries(tmp_path):
    other = mp.get_context("spawn").Process(target=_worker, args=(str(tmp_path), 1))
    other.start()
    _worker(str(tmp_path), 0)
    other.join(120)
    assert other.exitcode == 0
    est = estimator(tmp_path)
    assert not LatencyTable.load(est.table_path, fingerprint=est.table_fingerprint).missing(LAYERS)


def test_cache_root_follows_the_environment_and_an_explicit_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HWSEARCH_CACHE", str(tmp_path / "env"))
    assert cache_root() == tmp_path / "env"
    assert cache_root(tmp_path / "x") == tmp_path / "x"


def test_latency_ms_provider_predicts_a_space_choice_and_optionally_measures_it(tmp_path):
    from hwsearch import spaces

    choice = spaces.get("vit").reference("smallest")
    out = predicted_latency_ms("vit", choice, cache_dir=tmp_path, measure=True)
    assert out["latency_ms"] > 0 and out["measured_latency_ms"] > 0


def test_lut_check_prints_json_with_the_documented_keys(tmp_path):
    res = CliRunner().invoke(app, ["lut", "check", "--space", "vit", "--device", "cpu", "--n", "2", "--seed", "7",
                                   "--quick", "--noise-floor", "--uncorrected", "--cache-dir", str(tmp_path), "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert {"within_10pct", "rmspe", "kendall_tau", "n"} <= set(out) and out["n"] == 2
    assert 0 <= out["within_10pct"] <= 1 and out["rmspe"] >= 0 and set(out["noise_floor"]) >= {"rmspe"}


def test_profile_builds_the_table_and_fits_the_correction(tmp_path):
    res = CliRunner().invoke(app, ["profile", "--space", "vit", "--networks", "2", "--fit", "8", "--quick",
                                   "--cache-dir", str(tmp_path), "--format", "json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["layers"] > 0 and out["fit"]["n_train"] + out["fit"]["n_test"] == 8
    est = estimator(tmp_path)
    assert est.predictor is not None and len(est.predictor.report["fitted_networks"]) == 8
    # a later check never draws a network used for fitting
    fitted = set(est.predictor.report["fitted_networks"])
    assert not fitted & {s.net.key for s in est.sample(5, 0, exclude=fitted)}


def test_profile_on_cuda_without_a_gpu_is_a_one_line_error(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    res = CliRunner().invoke(app, ["profile", "--space", "vit", "--device", "cuda", "--cache-dir", str(tmp_path)])
    assert res.exit_code != 0 and "no CUDA GPU" in str(res.exception)


def test_sampling_refuses_zero_networks(tmp_path):
    from hwsearch.errors import ConfigError

    with pytest.raises(ConfigError, match="at least 1"):
        estimator(tmp_path).sample(0, 0)


def test_half_precision_tables_on_cpu_are_refused_with_the_dtype_it_runs(tmp_path):
    res = CliRunner().invoke(app, ["lut", "check", "--space", "vit", "--dtype", "fp16", "--cache-dir", str(tmp_path)])
    assert res.exit_code != 0 and "use fp32" in str(res.exception)


def test_lut_check_of_a_space_never_profiled_says_to_profile_it_and_measures_nothing(tmp_path):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "hwsearch.cli", "lut", "check", "--space", "vit", "--n", "2",
                           "--quick", "--cache-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "hwsearch profile --space vit" in proc.stderr
    assert not list(tmp_path.rglob("*.json"))  # no table was measured into the cache
