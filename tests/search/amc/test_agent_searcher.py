"""The AMC/HAQ agent inside the experiment engine: searcher proposals and state, the compression
evaluator's export (pruned + quantized) reloading with its reported accuracy, MACs and parameters."""

from __future__ import annotations

import json

import pytest
import torch

from hwsearch.compress.attention_mask import masked_softmaxes
from hwsearch.errors import ConfigError
from hwsearch.estimators.counters import count_macs, trace_netspec
from hwsearch.search.amc.plugin import CompressionSearcher, CompressionSettings, HaqSettings
from hwsearch.search.engine import evaluators
from hwsearch.search.engine.config import parse_config
from hwsearch.search.engine.trial import evaluate_trial
from hwsearch.train import evaluate

TINY_VIT = {"resolution": 16, "embeds": [16], "depths": [2], "heads": [2], "mlp_ratios": [3]}


def _config(mode: str, metric: str, budgets: list[float], absolute: bool, **settings):
    return parse_config({
        "name": "agent-test",
        "space": {"name": "vit", "options": TINY_VIT},
        "objectives": [{"metric": "test_acc_before_finetune", "mode": "max"}],
        "searcher": {"name": "amc", "settings": {
            "network": "middle", "mode": mode, "metric": metric, "budgets": budgets, "absolute": absolute,
            "episodes": 3, "warmup_episodes": 2, "updates_per_episode": 2, "val_samples": 32,
            "calib_samples": 16, "fixed_a_bits": 32, **settings}},
        "evaluation": {"evaluator": "compression", "epochs": 1, "recipe": {"batch_size": 128}},
        "budget": {"trials": len(budgets)},
    })


def test_searcher_proposes_one_trial_per_budget_then_finishes_and_restores(tmp_path):
    searcher = CompressionSearcher(CompressionSettings(budgets=[0.3, 0.6]))
    first, second = searcher.suggest("a"), searcher.suggest("b")
    assert first["compression"]["budget"] == {"metric": "macs", "ratio": 0.3, "value": None}
    assert second["compression"]["budget_index"] == 1
    assert searcher.suggest("c") == CompressionSearcher.FINISHED
    assert searcher.suggest("a") == first  # Tune may ask again for a restored trial
    searcher.save(str(tmp_path / "state.json"))
    again = CompressionSearcher(CompressionSettings())
    again.restore(str(tmp_path / "state.json"))
    assert again.suggest("b") == second and again.suggest("d") == CompressionSearcher.FINISHED


def test_haq_settings_default_to_a_four_bit_average_weight_budget():
    s = HaqSettings()
    assert (s.mode, s.budget(s.budgets[0])) == ("haq", {"metric": "avg_w_bits", "ratio": None, "value": 4.0})
    with pytest.raises(ValueError):
        CompressionSettings(episodes=2, warmup_episodes=5)


def test_compression_evaluator_needs_the_amc_or_haq_searcher():
    ctx = evaluators.TrialContext(config=_config("amc", "macs", [0.8], False), space=None, data=None, threads=1)
    with pytest.raises(ConfigError, match="amc or haq searcher"):
        evaluators.get("compression").evaluate({"choice": {}}, ctx)


def test_pruned_and_quantized_export_reloads_with_its_reported_accuracy_macs_and_params(tmp_path, monkeypatch):
    monkeypatch.setenv("HWSEARCH_CACHE", str(tmp_path / "cache"))
    # final training (early stopping, distillation from the uncompressed network) before the export
    config = _config("joint", "model_size", [0.3], False, finetune_epochs=2, finetune_patience=1)
    params = CompressionSearcher(CompressionSettings.model_validate(config.searcher.settings)).suggest("t0")
    report = evaluate_trial(params, config, tmp_path / "trials" / "t0")
    assert report["budget_cost"] <= report["budget_limit"] and report["episodes"] == 3
    assert 1 <= report["finetune_epochs_run"] <= 2
    policy = json.loads((tmp_path / "trials" / "t0" / "policy.json").read_text())
    assert any(lp.get("keep", 1) < 1 for lp in policy["layers"].values())
    assert any(lp.get("w_bits", 32) < 32 for lp in policy["layers"].values())

    saved = evaluators.SavedTrial(tmp_path / "trials" / "t0")
    data = evaluators.cached_data("digits", 0)
    space = evaluators.build_space(config, data)
    model = evaluators.get("compression").rebuild(saved, space)
    shape = space.input_shape(saved.choice)
    test = data.at_resolution(shape[1])
    assert abs(evaluate(model, test.x_test, test.y_test) - report["test_acc"]) <= 0.005
    netspec = saved.netspec
    assert count_macs(model, shape) == netspec.macs == report["macs"]
    assert sum(p.numel() for p in model.parameters()) == netspec.params
    assert [x.key for x in trace_netspec(model, shape).layers if not x.has_weights] == \
        [x.key for x in netspec.layers if not x.has_weights]
    assert torch.isfinite(torch.tensor(report["test_acc_before_finetune"]))


def test_a_scan_before_the_agent_adds_its_evaluations_and_a_demonstration(tmp_path, monkeypatch):
    monkeypatch.setenv("HWSEARCH_CACHE", str(tmp_path / "cache"))
    config = _config("amc", "macs", [0.6], False)
    settings = {**config.searcher.settings, "scan_evaluations": 3}
    params = CompressionSearcher(CompressionSettings.model_validate(settings)).suggest("t0")
    report = evaluate_trial(params, config, tmp_path / "trials" / "t0")
    episodes = json.loads((tmp_path / "trials" / "t0" / "agent.json").read_text())["episodes"]
    sources = [e["source"] for e in episodes]
    assert sources.count("sensitivity") == 3 and sources[3] == "agent"  # the scanned policy, replayed
    assert episodes[3]["state"] == episodes[2]["state"]
    assert report["episodes"] == 3 + 1 + 3 and report["budget_cost"] <= report["budget_limit"]


def test_an_attention_density_search_exports_masks_that_reload_with_its_accuracy_and_densities(tmp_path, monkeypatch):
    monkeypatch.setenv("HWSEARCH_CACHE", str(tmp_path / "cache"))
    config = _config("attention", "bitops", [0.99], False)
    params = CompressionSearcher(CompressionSettings.model_validate(config.searcher.settings)).suggest("t0")
    report = evaluate_trial(params, config, tmp_path / "trials" / "t0")
    assert report["budget_cost"] <= report["budget_limit"]
    policy = json.loads((tmp_path / "trials" / "t0" / "policy.json").read_text())
    assert any(lp.get("attention_density", 1) < 1 for lp in policy["layers"].values())

    saved = evaluators.SavedTrial(tmp_path / "trials" / "t0")
    data = evaluators.cached_data("digits", 0)
    space = evaluators.build_space(config, data)
    model = evaluators.get("compression").rebuild(saved, space)
    test = data.at_resolution(space.input_shape(saved.choice)[1])
    assert abs(evaluate(model, test.x_test, test.y_test) - report["test_acc"]) <= 0.005
    masks = {n: float(m.mask.mean()) for n, m in masked_softmaxes(model).items()}
    assert masks and {x.name: x.density for x in saved.netspec.layers if x.name in masks} == masks
