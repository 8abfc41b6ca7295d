"""The NAAS co-search (configs/default.yaml) on the engine survives kill -9: ``--resume`` continues the evolution.

The config is the flagship one shrunk to the smallest run that still has a bred generation and a
refinement: a "tiny" supernet, 16 measured sub-networks, 2 accelerators x 2 generations, one refined
triple (one agent episode, no fine-tuning). The supernet is trained into the test's folder, never
the user's cache.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]  # the repository
METRICS = ["accuracy", "predicted_acc", "latency_ms", "energy_mj", "edp", "area_mm2", "hypervolume", "generation",
           "choice"]


def _tiny_naas(root: Path, name: str) -> dict:
    raw = yaml.safe_load((ROOT / "configs" / "default.yaml").read_text())
    settings = raw["searcher"]["settings"]
    settings.update(supernet_schedule="tiny", predictor_samples=16, population=2, generations=2, parents=1,
                    inner_population=8, inner_generations=1, top_k=1, agent_episodes=1, finetune_epochs=2,
                    finetune_patience=1,
                    penalty_reference="smallest")
    raw.update(name=name, budget={"trials": 2 * 2 + 1}, ray={"workers": 1, "cpus_per_trial": 1},
               output={"root": str(root)})
    return raw


@pytest.fixture
def one_torch_thread():
    """torch on one thread in this process, as Ray gives each trial one CPU: on two busy cores, torch's
    two threads wait on each other and a supernet or an export takes many times longer."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.slow
def test_naas_resumed_after_kill_9_breeds_from_the_kept_generation_and_writes_its_front(
        ray_local, one_torch_thread, tmp_path, monkeypatch, killed_run):
    from typer.testing import CliRunner

    from hwsearch.cli import app
    from hwsearch.search.engine.driver import resume_experiment

    raw = _tiny_naas(tmp_path, "killed")
    budget = raw["budget"]["trials"]
    (tmp_path / "killed.yaml").write_text(yaml.safe_dump(raw))
    run_path = tmp_path / "killed"
    monkeypatch.setenv("HWSEARCH_CACHE", str(tmp_path / "cache"))  # the supernet is trained there, not in the user's
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # see one_torch_thread
    before = killed_run(tmp_path / "killed.yaml", run_path, env=env)
    assert 2 <= len(before) < budget

    run = resume_experiment(run_path, quiet=True)
    after = run.trials()
    assert len(after) == budget and after["trial_id"].is_unique and set(after["status"]) == {"ok"}
    kept = after.set_index("trial_id").loc[before["trial_id"], METRICS]
    assert kept.equals(before.set_index("trial_id")[METRICS])
    accel = after[after["measured"] == 0.0]
    assert sorted(accel["generation"]) == [0.0, 0.0, 1.0, 1.0]  # the evolution went on, not over from the presets
    designs = {(run_path / "trials" / t / "hardware.json").read_text() for t in accel["trial_id"]}
    assert len(designs) == 4 and (after["measured"] == 1.0).sum() == 1  # no accelerator evaluated twice
    refined = after[after["measured"] == 1.0].iloc[0]
    assert 1 <= refined["finetune_best_epoch"] <= refined["finetune_epochs_run"] <= 2  # final training ran
    assert run.state == "finished"

    # the final report is part of the run: written (best pair exported) before resume_experiment returns
    front = json.loads((run_path / "naas" / "front.json").read_text())
    assert len(front["final_front"]) >= 1 and front["best"] in set(after["trial_id"]) and "export" in front
    assert (run_path / "exports" / "best" / "report.json").is_file()
    out = tmp_path / "export"
    result = CliRunner().invoke(app, ["export", str(run_path), "--trial", "best", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "hardware.json").is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["trial_id"] == front["best"]
    cost = CliRunner().invoke(app, ["hw", "cost", "--accel", str(out / "hardware.json"),
                                    "--layers", str(out / "netspec.json"), "--format", "json", "--mapper", "fast"])
    assert cost.exit_code == 0, cost.output
    total = json.loads(cost.output)["total"]
    assert total["latency_s"] * 1e3 == pytest.approx(report["latency_ms"], rel=1e-9)
    assert total["energy_pj"] * 1e-9 == pytest.approx(report["energy_mj"], rel=1e-9)
