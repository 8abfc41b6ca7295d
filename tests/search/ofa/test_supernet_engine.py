"""configs/ofa.yaml through the engine: evolution proposes, trials extract from the cached supernet, export reloads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from hwsearch import spaces
from hwsearch.search.engine.config import parse_config
from hwsearch.spaces.supernet import SuperNet, schedule, supernet_key
from hwsearch.spaces.supernet.cache import save_supernet

ROOT = Path(__file__).resolve().parents[3]  # the repository


@pytest.mark.slow
def test_ofa_config_runs_on_the_engine_and_exports_the_extracted_subnetwork(tmp_path, monkeypatch):
    import ray

    from hwsearch.search.engine.bundle import export_trial
    from hwsearch.search.engine.driver import run_experiment

    monkeypatch.setenv("HWSEARCH_CACHE", str(tmp_path / "cache"))
    raw = yaml.safe_load((ROOT / "configs" / "ofa.yaml").read_text())
    raw["budget"] = {"trials": 3}
    raw["ray"] = {"workers": 1, "cpus_per_trial": 1}
    raw["output"] = {"root": str(tmp_path / "runs")}
    raw["searcher"]["settings"]["population"] = 2
    raw["constraints"] = []
    # A schedule other than the default: the evaluator must ask the cache for this one.
    raw["evaluation"]["schedule"] = "tiny"
    cfg = parse_config(raw)
    # Put a supernet under the key the evaluator asks for, so the trials load it instead of training
    # one (training is what the benchmark measures; here the wiring is under test).
    options = {"in_channels": 1, "num_classes": 10, **cfg.space.options}
    torch.manual_seed(0)
    supernet = SuperNet(spaces.get(cfg.space.name, **options))
    key = supernet_key(cfg.space.name, options, cfg.data.source, schedule(cfg.evaluation.schedule), cfg.evaluation.seed,
                       cfg.data.seed)
    save_supernet(tmp_path / "cache" / "supernets" / f"{cfg.space.name}-{key}.pt", supernet, {"log": {}})

    ray.init(address="local", num_cpus=1, num_gpus=0, include_dashboard=False, log_to_driver=False,
             logging_level="error")
    try:
        run = run_experiment(cfg, quiet=True)
    finally:
        ray.shutdown()
    df = run.trials()
    assert len(df) == 3 and set(df["status"]) == {"ok"}
    assert df["choice"].nunique() == 3
    res = export_trial(run, trial="best", out=tmp_path / "export")
    assert res.reported_test_acc == pytest.approx(res.torchscript_test_acc, abs=1e-12)
    saved = json.loads((tmp_path / "export" / "choice.json").read_text())
    state = torch.load(tmp_path / "export" / "state_dict.pt", weights_only=True)
    inherited = supernet.weights(saved)  # every exported weight is the supernet's, cut for the choice
    assert inherited and all(torch.equal(state[n], t.detach()) for n, t in inherited.items())
