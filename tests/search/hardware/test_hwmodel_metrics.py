import pytest

from hwsearch import spaces
from hwsearch.errors import ConfigError
from hwsearch.hwmodel import Accelerator, network_cost
from hwsearch.search.engine import metrics
from hwsearch.search.engine.config import parse_config


def vit_net():
    space = spaces.get("vit")
    return space.to_netspec(space.reference("smallest"))


def test_accelerator_provider_reports_model_costs_in_declared_units():
    net = vit_net()
    config = parse_config({"metrics": ["netspec", "accelerator"], "hardware": {"accelerator": "edge-systolic"}})
    m = metrics.measure(net, config)
    nc = network_cost(net.with_batch(1), Accelerator.preset("edge-systolic"))
    assert m["latency_ms"] == pytest.approx(nc.latency_s * 1e3)
    assert m["energy_mj"] == pytest.approx(nc.energy_pj * 1e-9)
    assert m["edp"] == pytest.approx(m["latency_ms"] * m["energy_mj"])
    assert m["area_mm2"] == pytest.approx(Accelerator.preset("edge-systolic").area_mm2)
    assert "macs" in m  # the netspec provider still runs beside it


def test_constraints_on_accelerator_metrics_are_honoured():
    net = vit_net()
    base = {"metrics": ["accelerator"], "hardware": {"accelerator": "eyeriss"}}
    m = metrics.measure(net, parse_config(base))
    loose = parse_config({**base, "constraints": [f"latency_ms <= {m['latency_ms'] * 2}", "area_mm2 <= 100"]})
    tight = parse_config({**base, "constraints": [f"energy_mj <= {m['energy_mj'] / 2}"]})
    assert loose.feasible(m) and not tight.feasible(m)


def test_an_accelerator_given_as_fields_is_costed_and_a_missing_one_is_a_config_error():
    net = vit_net()
    fields = Accelerator.preset("bitfusion").to_dict()
    m = metrics.measure(net, parse_config({"metrics": ["accelerator"], "hardware": {"accelerator": fields}}))
    assert m["latency_ms"] > 0
    with pytest.raises(ConfigError, match="hardware.accelerator"):
        metrics.measure(net, parse_config({"metrics": ["accelerator"]}))
