"""Validation loss and perplexity as engine metrics: declared for configs, reported by trials of a `gpt`."""

from __future__ import annotations

import math

import pytest

from hwsearch.errors import ConfigError
from hwsearch.lm_eval import lm_score
from hwsearch.search.engine import evaluators
from hwsearch.search.engine.config import parse_config
from hwsearch.search.engine.trial import evaluate_trial

TEXT = "".join(f"Line {i}: to be, or not to be; that is the question? {'xyz'[i % 3]}\n" for i in range(80))
TINY = {"context": 8, "embeds": [8, 16], "head_dim": 4, "depths": [1, 2], "heads": [1, 2], "mlp_ratios": [1, 2]}
LM = ("val_loss", "val_perplexity", "test_loss", "test_perplexity")


pytestmark = pytest.mark.usefixtures("isolated_data", "one_torch_thread")


def _config(tmp_path, evaluator: str, objective: str = "val_perplexity", **sections):
    (tmp_path / "text.txt").write_text(TEXT, encoding="utf-8")
    raw = {
        "name": "lm",
        "space": {"name": "gpt", "options": TINY},
        "data": {"source": f"tinyshakespeare:{tmp_path / 'text.txt'}?context=8"},
        "objectives": [{"metric": objective, "mode": "min"}, {"metric": "macs", "mode": "min"}],
        "evaluation": {"evaluator": evaluator, "epochs": 1, "schedule": "tiny",
                       "recipe": {"batch_size": 32, "label_smoothing": 0.0}},
        "output": {"root": str(tmp_path / "runs")},
        **sections,
    }
    return parse_config(raw)


def _choice(space, name: str) -> dict:
    choice = space.reference(name)
    return {"choice": {d.name: d.options.index(choice[d.name]) for d in space.dims}}


@pytest.mark.parametrize("evaluator", ["train", "supernet", "compression"])
@pytest.mark.parametrize("metric", LM)
def test_every_evaluator_that_measures_networks_declares_loss_and_perplexity(tmp_path, evaluator, metric):
    searcher = {"name": "amc", "settings": {"network": "largest"}} if evaluator == "compression" else {}
    cfg = _config(tmp_path, evaluator, metric, **({"searcher": searcher} if searcher else {}))
    assert cfg.primary.metric == metric
    cfg = _config(tmp_path, evaluator, "val_acc", constraints=[f"{metric} <= 100"],
                  **({"searcher": searcher} if searcher else {}))
    assert cfg.constraints[0].metric == metric


def test_a_metric_nothing_reports_is_still_refused_and_naas_reports_no_perplexity(tmp_path):
    with pytest.raises(ConfigError, match="'val_perplexityy' is reported by neither"):
        _config(tmp_path, "train", "val_perplexityy")
    with pytest.raises(ConfigError, match="'val_perplexity' is reported by neither evaluator 'naas'"):
        _config(tmp_path, "naas", searcher={"name": "naas"})


def _reloaded(cfg, folder):
    saved = evaluators.SavedTrial(folder)
    data = evaluators.cached_data(cfg.data.source, cfg.data.seed)
    space = evaluators.build_space(cfg, data)
    return evaluators.get(cfg.evaluation.evaluator).rebuild(saved, space), data


@pytest.mark.parametrize("evaluator", ["train", "supernet"])
def test_a_gpt_trial_reports_loss_and_perplexity_of_the_network_it_saved(tmp_path, evaluator):
    cfg = _config(tmp_path, evaluator)
    data = evaluators.cached_data(cfg.data.source, cfg.data.seed)
    space = evaluators.build_space(cfg, data)
    report = evaluate_trial(_choice(space, "smallest"), cfg, tmp_path / "trials" / "t0")
    model, data = _reloaded(cfg, tmp_path / "trials" / "t0")
    for split in ("val", "test"):
        x, y = data.split(split)
        score = lm_score(model, x, y)
        assert report[f"{split}_loss"] == pytest.approx(score.loss, rel=1e-9)
        assert report[f"{split}_perplexity"] == pytest.approx(math.exp(report[f"{split}_loss"]), rel=1e-12)
    assert 1 < report["val_perplexity"] < 10 * data.num_classes  # near a guess, trained a few steps only
    assert report["resolution"] == 8.0


def test_an_image_trial_reports_no_perplexity(tmp_path, tiny_experiment):
    report = evaluate_trial({"choice": {}} | _image_params(tiny_experiment, tmp_path), parse_config(
        tiny_experiment(tmp_path / "runs", evaluation={"epochs": 0})), tmp_path / "trials" / "t0")
    assert "val_acc" in report and not set(LM) & set(report)


def _image_params(tiny_experiment, tmp_path) -> dict:
    cfg = parse_config(tiny_experiment(tmp_path / "runs"))
    data = evaluators.cached_data(cfg.data.source, cfg.data.seed)
    return _choice(evaluators.build_space(cfg, data), "smallest")


def test_the_amc_agent_prunes_a_gpt_for_perplexity_and_reports_it(tmp_path):
    from hwsearch.search.amc.plugin import CompressionSearcher, CompressionSettings

    cfg = _config(tmp_path, "compression", searcher={"name": "amc", "settings": {
        "network": "largest", "metric": "macs", "budgets": [0.8], "episodes": 3, "warmup_episodes": 2,
        "updates_per_episode": 2, "val_samples": 16, "calib_samples": 8}})
    params = CompressionSearcher(CompressionSettings.model_validate(cfg.searcher.settings)).suggest("t0")
    report = evaluate_trial(params, cfg, tmp_path / "trials" / "t0")
    assert report["budget_cost"] <= report["budget_limit"]
    assert "search_val_acc" not in report and report["search_val_loss"] > 0
    assert report["val_perplexity"] == pytest.approx(math.exp(report["val_loss"]), rel=1e-12)
    assert report["val_perplexity"] == report["val_perplexity_before_finetune"]  # no fine-tuning asked for
    assert math.isfinite(report["base_val_perplexity"]) and math.isfinite(report["base_test_perplexity"])
    model, data = _reloaded(cfg, tmp_path / "trials" / "t0")
    assert report["test_loss"] == pytest.approx(lm_score(model, data.x_test, data.y_test).loss, rel=1e-6)


@pytest.mark.parametrize("name", ["gpt-ofa", "gpt-amc"])
def test_the_shipped_gpt_configs_run_a_trial_on_a_small_text(tmp_path, name):
    import yaml

    from hwsearch.search.amc.plugin import CompressionSearcher, CompressionSettings
    from hwsearch.search.engine.config import default_config_path

    raw = yaml.safe_load((default_config_path().parent / f"{name}.yaml").read_text())
    (tmp_path / "text.txt").write_text(TEXT, encoding="utf-8")
    raw["data"]["source"] = f"tinyshakespeare:{tmp_path / 'text.txt'}?context=8"
    raw["space"]["options"] = TINY
    raw["output"] = {"root": str(tmp_path / "runs")}
    raw["evaluation"].update(schedule="tiny", epochs=1)
    if name == "gpt-amc":
        raw["searcher"]["settings"].update(network="largest", budgets=[0.9], episodes=3, warmup_episodes=2,
                                           updates_per_episode=2, val_samples=16, calib_samples=8, round_to=1)
        cfg = parse_config(raw)
        params = CompressionSearcher(CompressionSettings.model_validate(cfg.searcher.settings)).suggest("t0")
    else:
        cfg = parse_config(raw)
        params = _choice(evaluators.build_space(cfg, evaluators.cached_data(cfg.data.source, cfg.data.seed)), "largest")
    report = evaluate_trial(params, cfg, tmp_path / "trials" / "t0")
    assert all(math.isfinite(report[o.metric]) for o in cfg.objectives)
    assert report["val_perplexity"] > 1 and report["latency_ms"] > 0


def test_an_exported_gpt_reloads_at_its_reported_test_perplexity(tmp_path):
    from hwsearch.search.engine.bundle import export_trial
    from hwsearch.search.engine.rundir import RunDir

    cfg = _config(tmp_path, "train")
    space = evaluators.build_space(cfg, evaluators.cached_data(cfg.data.source, cfg.data.seed))
    run = RunDir.create(tmp_path / "runs" / "lm", cfg)
    report = evaluate_trial(_choice(space, "largest"), cfg, run.trial_dir("t0"))
    run.write_trials([{**report, "trial_id": "t0", "status": "ok", "error": None, "artifacts": "trials/t0"}])
    res = export_trial(run, "best", tmp_path / "bundle")
    assert res.reported_test_perplexity == report["test_perplexity"]
    assert res.torchscript_test_perplexity == pytest.approx(report["test_perplexity"], rel=1e-5)
    assert res.onnx_test_perplexity == pytest.approx(report["test_perplexity"], rel=1e-4)
    assert res.torchscript_test_acc == pytest.approx(report["test_acc"], abs=1e-9)
