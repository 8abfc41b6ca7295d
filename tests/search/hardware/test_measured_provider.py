import pytest

from hwsearch import spaces
from hwsearch.errors import ConfigError
from hwsearch.estimators.measured import estimator
from hwsearch.kernels import TimerConfig
from hwsearch.search import (
    device_latency,  # noqa: F401  (registers the "device" provider)
    metrics,
)
from hwsearch.search.engine.config import parse_config
from hwsearch.search.hardware.device import device_settings


def config(tmp_path, **device):
    return parse_config({
        "space": {"name": "vit"},
        "metrics": ["netspec", "device"],
        "hardware": {"device": {"name": "cpu", "cache_dir": str(tmp_path), **device}},
        "objectives": [{"metric": "val_acc", "mode": "max"}, {"metric": "latency_ms", "mode": "min"}],
        "constraints": ["cpu_latency_ms <= 1000"],
    })


def test_device_provider_reports_predicted_latency_a_config_can_constrain(tmp_path):
    cfg = config(tmp_path, measure=True)
    shared = estimator("vit", "cpu", None, "median", str(tmp_path))  # the one the provider will use
    shared.layer_timer = shared.network_timer = TimerConfig.quick()
    net = spaces.get("vit").to_netspec(spaces.get("vit").reference("smallest"))
    out = metrics.measure(net, cfg)
    assert out["latency_ms"] == out["cpu_latency_ms"] > 0
    assert out["cpu_lut_latency_ms"] > 0 and out["cpu_measured_layers_ms"] > 0
    assert cfg.feasible(out) and "macs" in out


def test_device_settings_accept_a_bare_name_and_refuse_unknown_keys():
    assert device_settings({"device": "cpu"})["statistic"] == "median"
    with pytest.raises(ConfigError, match="unknown setting"):
        device_settings({"device": {"name": "cpu", "thread": 1}})
    with pytest.raises(ConfigError, match="hardware.device is required"):
        device_settings({})
