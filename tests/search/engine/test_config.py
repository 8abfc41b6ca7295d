"""Experiment configs: defaults, overrides, and errors that name the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hwsearch.errors import ConfigError
from hwsearch.search.engine.config import Constraint, default_config_path, load_config, parse_config

ROOT = Path(__file__).resolve().parents[3]  # the repository


def test_default_config_loads_and_is_the_packaged_copy():
    cfg = load_config()
    assert default_config_path() == ROOT / "configs" / "default.yaml"
    assert (ROOT / "hwsearch" / "configs" / "default.yaml").read_text() == default_config_path().read_text()
    assert cfg.space.name == "ofa-mbv3" and cfg.searcher.name == "naas" and cfg.primary.metric == "accuracy"


def test_every_shipped_config_is_valid():
    for path in sorted((ROOT / "configs").glob("*.yaml")):
        load_config(path)


def test_set_overrides_nested_fields_with_yaml_values():
    cfg = load_config(None, ["budget.trials=4", "evaluation.recipe.lr=1e-3", "space.options.resolutions=[16, 24]",
                             "constraints=['macs <= 1e6']"])
    assert cfg.budget.trials == 4 and cfg.evaluation.recipe.lr == 1e-3
    assert cfg.space.options["resolutions"] == [16, 24]
    assert cfg.constraints == (Constraint(metric="macs", op="<=", bound=1e6),)


@pytest.mark.parametrize("override, field", [
    ("budget.trials=0", "budget.trials"),
    ("ray.workers=-1", "ray.workers"),
    ("ray.max_failures=-2", "ray.max_failures"),
    ("evaluation.recipe.optimizer=lion", "evaluation.recipe.optimizer"),
    ("objectives=[{metric: val_acc, mode: up}]", "objectives.0.mode"),
    ("constraints=['macs << 3']", "constraints"),
    ("searcher.name=grid", "searcher.name"),
    ("searcher.settings.popsize=3", "searcher.settings.popsize"),
    ("space.name=resnet", "space.name"),
    ("metrics=[netspec, magic]", "magic"),
    ("budgett.trials=3", "budgett"),
    ("evaluation.schedule=slow", "evaluation.schedule"),
    ("searcher.settings.supernet_schedule=slow", "searcher.settings"),
])
def test_invalid_fields_raise_a_config_error_naming_the_field(override, field):
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert field in str(info.value) and "\n" not in str(info.value)


def test_set_without_equals_sign_is_an_error():
    with pytest.raises(ConfigError, match="KEY.PATH=VALUE"):
        load_config(None, ["budget.trials"])


def test_missing_and_malformed_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(bad)


def test_constraints_hold_only_for_present_finite_metrics():
    c = Constraint.parse("latency_ms <= 2")
    assert c.holds({"latency_ms": 1.5}) and not c.holds({"latency_ms": 2.5})
    assert not c.holds({}) and not c.holds({"latency_ms": float("nan")})


def test_resolved_config_round_trips_through_yaml(tiny_experiment, tmp_path):
    cfg = parse_config(tiny_experiment(tmp_path, constraints=["macs <= 5e5"]))
    again = parse_config(yaml.safe_load(cfg.to_yaml()))
    assert again == cfg


def test_cli_run_with_a_bad_config_exits_2_with_one_line_and_writes_nothing(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "x", "budget": {"trials": 0}, "output": {"root": str(tmp_path / "runs")}}))
    proc = subprocess.run([sys.executable, "-m", "hwsearch.cli", "run", str(bad)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "budget.trials" in proc.stderr
    assert not (tmp_path / "runs").exists()


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hwsearch.cli", *args], capture_output=True, text=True, cwd=tmp_path,
                          timeout=120)


def _one_line_exit_2(proc: subprocess.CompletedProcess, *words: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert all(w in proc.stderr for w in words), proc.stderr


def test_cli_run_of_an_empty_config_file_is_an_error_not_the_default_experiment(tmp_path):
    (tmp_path / "empty.yaml").write_text("")
    _one_line_exit_2(_cli(tmp_path, "run", "empty.yaml"), "empty")
    assert list(tmp_path.iterdir()) == [tmp_path / "empty.yaml"]  # no runs/ folder


@pytest.mark.parametrize("where", ["file", "--set"])
def test_cli_run_with_a_constraint_on_an_unreported_metric_names_it_and_writes_nothing(tmp_path, tiny_experiment,
                                                                                        where):
    raw = tiny_experiment(tmp_path / "runs", name="x")
    if where == "file":
        raw["constraints"] = ["frobnication <= 3"]
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    extra = ["--set", "constraints=['frobnication <= 3']"] if where == "--set" else []
    _one_line_exit_2(_cli(tmp_path, "run", "c.yaml", *extra), "frobnication", "macs")
    assert not (tmp_path / "runs").exists()


def test_objectives_and_constraints_may_name_any_metric_a_listed_provider_reports(tiny_experiment, tmp_path):
    cfg = parse_config(tiny_experiment(tmp_path, metrics=["netspec", "accelerator", "device"],
                                       hardware={"accelerator": "eyeriss", "device": "cpu"},
                                       constraints=["energy_mj <= 1", "cpu_lut_latency_ms <= 5", "duration_s <= 60"]))
    assert [c.metric for c in cfg.constraints] == ["energy_mj", "cpu_lut_latency_ms", "duration_s"]
    with pytest.raises(ConfigError, match="'energy_mj' is reported by neither"):
        parse_config(tiny_experiment(tmp_path, constraints=["energy_mj <= 1"]))  # no accelerator provider listed


def test_cli_run_whose_searcher_refuses_its_settings_leaves_no_run_folder(tmp_path):
    raw = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    raw.update(name="short", budget={"trials": 2}, output={"root": str(tmp_path / "runs")})  # naas needs 27
    (tmp_path / "short.yaml").write_text(yaml.safe_dump(raw))
    _one_line_exit_2(_cli(tmp_path, "run", "short.yaml"), "budget.trials")
    assert not (tmp_path / "runs" / "short").exists()
