import json

import numpy as np
import pytest

from hwsearch.errors import ConfigError, CorruptTable
from hwsearch.estimators.latency_predictor import (
    FEATURES,
    LatencyPredictor,
    accuracy_report,
    fit_predictor,
    lut_sum_s,
    network_features,
)
from hwsearch.ir import LayerSpec, NetSpec

FP = {"device": "cpu", "model": "test cpu", "threads": 1, "dtype": "fp32"}


def toy_net(rng: np.random.Generator) -> NetSpec:
    """A small conv net whose widths and depth vary with ``rng``."""
    layers, c, hw = [], 3, 16
    for i in range(int(rng.integers(2, 7))):
        k = int(rng.choice([8, 16, 24]))
        layers += [
            LayerSpec("conv", c=c, k=k, in_h=hw, in_w=hw, r=3, s=3, pad=1, name=f"b{i}.conv"),
            LayerSpec("norm", fn="batch", c=k, in_h=hw, in_w=hw, bias=True, name=f"b{i}.bn"),
            LayerSpec("eltwise", fn="relu", c=k, in_h=hw, in_w=hw, name=f"b{i}.act"),
        ]
        c = k
    layers += [LayerSpec("pool", fn="avg", c=c, in_h=hw, in_w=hw, r=hw, s=hw), LayerSpec("linear", c=c, k=10)]
    return NetSpec(tuple(layers), (3, 16, 16))


def layer_latency(layer: LayerSpec) -> float:
    return 1e-9 * (layer.macs + 4 * layer.out_elems) + 2e-6


def true_latency(net: NetSpec) -> float:
    # What a device "does": 30% slower than the isolated kernels plus 15 us per layer plus 50 us per call.
    return 1.3 * sum(layer_latency(x) for x in net.layers) + 15e-6 * len(net) + 50e-6


def dataset(n: int, seed: int):
    rng = np.random.default_rng(seed)
    nets = [toy_net(rng) for _ in range(n)]
    return [network_features(net, layer_latency) for net in nets], [true_latency(net) for net in nets]


def test_features_hold_the_table_sum_and_layer_counts_by_op():
    net = toy_net(np.random.default_rng(0))
    f = network_features(net, layer_latency)
    assert set(f) == set(FEATURES)
    assert lut_sum_s(f) == pytest.approx(sum(layer_latency(x) for x in net.layers))
    assert f["count_conv"] == sum(x.op == "conv" for x in net.layers) and f["gmacs"] == net.macs / 1e9


def test_fitted_correction_recovers_a_systematic_gap_the_table_sum_misses():
    feats, measured = dataset(60, 0)
    pred = fit_predictor(feats, measured, FP, "toy")
    test_feats, test_measured = dataset(30, 1)
    corrected = accuracy_report([pred.predict_features(f) for f in test_feats], test_measured)
    plain = accuracy_report([lut_sum_s(f) for f in test_feats], test_measured)
    assert corrected["within_10pct"] == 1.0 and corrected["rmspe"] < 2.0
    assert plain["within_10pct"] == 0.0
    assert pred.report["n_train"] + pred.report["n_test"] == 60
    assert set(pred.report["test"]) == {"within_10pct", "rmspe", "kendall_tau", "n"}


def test_predictor_round_trips_through_json_and_predicts_the_same():
    feats, measured = dataset(20, 2)
    pred = fit_predictor(feats, measured, FP, "toy")
    back = LatencyPredictor.from_dict(json.loads(json.dumps(pred.to_dict())))
    assert back == pred
    assert back.predict_features(feats[0]) == pred.predict_features(feats[0])


def test_saved_predictor_is_checksummed_and_refuses_edits_and_other_devices(tmp_path):
    feats, measured = dataset(20, 3)
    pred = fit_predictor(feats, measured, FP, "toy")
    path = tmp_path / "p.json"
    pred.save(path)
    assert LatencyPredictor.load(path, fingerprint=FP) == pred
    with pytest.raises(CorruptTable, match="another device"):
        LatencyPredictor.load(path, fingerprint={**FP, "threads": 2})
    doc = json.loads(path.read_text())
    doc["payload"]["intercept_ms"] += 1.0
    path.write_text(json.dumps(doc))
    with pytest.raises(CorruptTable, match="checksum"):
        LatencyPredictor.load(path)
    path.write_text(path.read_text()[:40])
    with pytest.raises(CorruptTable, match="unreadable"):
        LatencyPredictor.load(path)


def test_accuracy_report_counts_predictions_within_ten_percent_and_ranks():
    r = accuracy_report([1.0, 2.3, 2.95, 4.0], [1.05, 2.0, 3.0, 4.0])
    assert r["within_10pct"] == 0.75 and r["n"] == 4 and r["kendall_tau"] == 1.0
    assert r["rmspe"] == pytest.approx(100 * np.sqrt(np.mean(np.square([-0.05 / 1.05, 0.15, -0.05 / 3, 0]))))


def test_fitting_on_too_few_networks_is_a_config_error():
    feats, measured = dataset(5, 4)
    with pytest.raises(ConfigError, match="at least 8"):
        fit_predictor(feats, measured, FP, "toy")
