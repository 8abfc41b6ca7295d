"""NAAS on the experiment engine: searcher ``naas`` (a Ray Tune `Searcher`) and evaluator ``naas``.

One trial is one accelerator (the inner search runs vectorised inside it) or, after the evolution,
the refinement of one top-k triple. The searcher's saved state is the evolution's JSON, so
``hwsearch run --resume`` continues the same evolution: finished trials are kept (the searcher reads
their fronts back from their trial folders when Tune reports them) and none is proposed twice.

Tune saves its trial list and the searcher's state every few seconds, one file after the other, so
after a kill -9 either may lag the trials that really ran. The searcher therefore also writes its
state ahead, into the run directory, each time it proposes or hears of a trial, and on resume it
reconciles that state with what is on disk and what Tune restored: a finished trial folder is read
back (and recorded if the run table missed it), a proposal Tune never recorded is handed to the next
trial Tune asks for, and a trial Tune restored as failed is told as failed. A resumed run thus does
exactly the trials an uninterrupted one would.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ray.tune.search import Searcher

from hwsearch.compress import Policy, rebuild
from hwsearch.errors import ConfigError, HwsearchError, RunError, SpecError
from hwsearch.hwmodel import hardware_metrics
from hwsearch.io import atomic_write_text
from hwsearch.search.engine.driver import record_saved_trials, tune_trial_states
from hwsearch.search.engine.evaluators import Evaluation, Evaluator, SavedTrial, TrialContext
from hwsearch.search.engine.rundir import RunDir, current_folder
from hwsearch.search.engine.searchers import SearchContext, mark_searcher_done, run_at_end
from hwsearch.search.naas.assets import load_assets, prepare_assets
from hwsearch.search.naas.cosearch import evaluate_accelerator
from hwsearch.search.naas.evolution import FINISHED, WAIT, NaasEvolution
from hwsearch.search.naas.problem import Reference, Triple
from hwsearch.search.naas.refine import RefineSettings, refine
from hwsearch.search.naas.report import write_report
from hwsearch.search.naas.settings import ASSETS, NAAS_REPORTS, NaasSettings

STATE = "searcher-state.json"  # the write-ahead copy of the searcher state, in the run's asset folder


class NaasSearcher(Searcher):
    """Proposes accelerators generation by generation, then the refinement of the top-k triples."""

    def __init__(self, evolution: NaasEvolution, run_dir: str, metric: str, mode: str) -> None:
        super().__init__(metric=metric, mode=mode)
        self.evolution = evolution
        self.run_dir = str(run_dir)
        self.reported = False
        self.orphans: list[str] = []  # proposals no trial will run (Tune never recorded them), oldest first
        self.resumed = False  # whether this object has read the run's saved state (False: a new run so far)

    def __setstate__(self, state: dict[str, Any]) -> None:
        # Tune restores this object as it pickled it: its folder is the run being resumed, which may
        # have been moved since.
        self.__dict__.update(state)
        self.run_dir = str(current_folder(self.run_dir))

    @property
    def assets(self) -> str:
        """The run's asset folder (trials read the supernet, predictor and penalty from it)."""
        return str(Path(self.run_dir) / ASSETS)

    @property
    def state_path(self) -> Path:
        """The write-ahead copy of the searcher state."""
        return Path(self.assets) / STATE

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        """The next proposal, None while a generation is still running, or `Searcher.FINISHED`."""
        if not self.resumed:
            self.resumed = True
            if self.state_path.is_file():  # a resume whose Tune state was saved before any searcher state
                self._resume_from(self.state_path)
        if trial_id in self.orphans:  # Tune runs it after all
            self.orphans.remove(trial_id)
        if self.orphans and trial_id not in self.evolution.proposals:
            proposal = self.evolution.reassign(self.orphans.pop(0), trial_id)
        else:
            proposal = self.evolution.ask(trial_id)
        if proposal == WAIT:
            return None
        if proposal == FINISHED:  # every accelerator and refinement answered, maybe below the budget
            mark_searcher_done(self.run_dir)
            return Searcher.FINISHED
        self._write_ahead()  # before Tune records the trial: the proposal survives any kill from here on
        return {**proposal, "assets": self.assets}

    def _write_ahead(self) -> None:
        atomic_write_text(self.state_path, json.dumps(self._state()))

    def _state(self) -> dict[str, Any]:
        return {"run_dir": self.run_dir, "reported": self.reported, "evolution": self.evolution.state()}

    def _all_recorded(self) -> bool:
        try:
            df = RunDir(Path(self.run_dir)).trials()
        except RunError:
            return False
        return set(self.evolution.proposals) <= set(df["trial_id"].astype(str)) if not df.empty else False

    def _start_final_report(self) -> None:
        """Once the last trial is in: final front, plot and export of the best measured pair.

        Tune tells the searcher about a trial before the engine's callback records it in the run
        table, and stops asking for proposals once the budget is spent, so the report runs in a
        thread that waits for the table to hold every trial; the driver waits for the thread before it
        marks the run finished (`searchers.run_at_end`)."""
        self.reported = True
        evo = self.evolution
        predicted = evo.front()
        fitness = {t: r["fitness"] for t, r in evo.results.items() if "accel" in evo.proposals[t]}
        run_at_end(lambda: self._final_report(predicted, fitness), name="naas-report")

    def _final_report(self, predicted: list, fitness: dict) -> None:
        for _ in range(600):
            if self._all_recorded():
                break
            time.sleep(0.2)
        try:
            summary = write_report(self.run_dir, predicted, fitness)
            _say(f"final front: {len(summary['final_front'])} measured triple(s) in "
                 f"{Path(self.run_dir) / 'naas' / 'front.json'}; best pair {summary['best']} exported to "
                 f"{Path(self.run_dir) / 'exports' / 'best'}")
        except (HwsearchError, OSError) as e:
            _say(f"could not write the final report: {e}")

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Record the trial's fitness and front (read from its folder); a failed trial has no fitness."""
        if trial_id not in self.evolution.proposals:
            return
        if trial_id in self.orphans:
            self.orphans.remove(trial_id)
        self._tell(trial_id, result, error)
        self._write_ahead()
        if not self.reported and self.evolution.complete():
            self._start_final_report()

    def _tell(self, trial_id: str, result: Mapping[str, Any] | None, error: bool) -> None:
        evo = self.evolution
        if error or not result:
            evo.tell(trial_id, None)
        elif "accel" in evo.proposals[trial_id]:
            front = _read_front(Path(self.run_dir) / "trials" / trial_id)
            evo.tell(trial_id, float(result.get("hypervolume", 0.0)), front,
                     {"evaluations": int(result.get("evaluations", 0))})
        else:
            evo.tell(trial_id, float(result.get("accuracy", math.nan)), [],
                     {k: float(result[k]) for k in ("accuracy", "latency_ms", "energy_mj") if k in result})

    def save(self, checkpoint_path: str) -> None:
        """Write the evolution's state as JSON (no pickle)."""
        atomic_write_text(checkpoint_path, json.dumps(self._state()))

    def restore(self, checkpoint_path: str) -> None:
        """Continue from the newest state (the write-ahead copy when there is one), reconciled with the run."""
        self._resume_from(self.state_path if self.state_path.is_file() else Path(checkpoint_path))

    def _resume_from(self, path: Path) -> None:
        self.resumed = True
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise RunError(f"cannot read the NAAS searcher state {path}: {e}") from None
        self.evolution.load_state(state["evolution"])
        self.reported = bool(state.get("reported", False))
        self.reconcile(tune_trial_states(self.run_dir))
        if self.evolution.complete():
            # Tune may never ask a restored, finished searcher again: mark it done here too.
            mark_searcher_done(self.run_dir)
        if self.evolution.complete() and not self._report_written():
            # Killed after the last trial but before the report was written: Tune has nothing left to
            # run and calls no hook again, so write it now (the driver waits for it before finishing).
            self._start_final_report()

    def reconcile(self, restored: Mapping[str, str] | None) -> None:
        """Settle every unanswered proposal after a crash, given the trials Tune ``restored`` (id -> status;
        None: unknown, so every unanswered proposal is left to Tune).

        A trial whose folder is complete ran to its end: its result is read back from the folder (and
        added to the run table if the kill came before the table recorded it). A trial Tune restored as
        failed will not run again: it is told as failed. A proposal Tune never recorded goes to the next
        trial Tune asks for. Tune reruns the other restored trials itself."""
        self.orphans = []
        saved = []
        for t in self.evolution.pending():
            report = Path(self.run_dir) / "trials" / t / "report.json"
            if report.is_file():
                self._tell(t, json.loads(report.read_text()), error=False)
                saved.append(t)
            elif restored is not None and restored.get(t) == "ERROR":
                self._tell(t, None, error=True)
            elif restored is not None and t not in restored:
                self.orphans.append(t)
        if saved:
            record_saved_trials(self.run_dir, saved)
        self._write_ahead()

    def _report_written(self) -> bool:
        """Whether the final report is complete: front.json with the export (or no pair to export)."""
        try:
            summary = json.loads((Path(self.run_dir) / "naas" / "front.json").read_text())
        except (OSError, ValueError):
            return False
        return "export" in summary or summary.get("best") is None


def _read_front(trial_dir: Path) -> list[dict[str, Any]]:
    try:
        return list(json.loads((trial_dir / "front.json").read_text())["triples"])
    except (OSError, ValueError, KeyError):
        return []


def naas_searcher(ctx: SearchContext) -> NaasSearcher:
    """Prepare the run's assets (supernet, predictor, bits penalty, normalisation) and the evolution."""
    s: NaasSettings = ctx.settings  # type: ignore[assignment]
    cfg = ctx.config
    if cfg.evaluation.evaluator != "naas":
        raise ConfigError(f"searcher naas needs evaluation.evaluator: naas (got {cfg.evaluation.evaluator!r})")
    if cfg.budget.trials < s.trials:
        raise ConfigError(f"budget.trials={cfg.budget.trials} is below what naas needs: population x generations "
                          f"+ top_k = {s.population} x {s.generations} + {s.top_k} = {s.trials}")
    space = s.space()
    folder = Path(ctx.run_dir) / ASSETS
    info = prepare_assets(folder, cfg.space.name, cfg.space.options, cfg.data.source, cfg.data.seed, s,
                          seed=ctx.seed, progress=_say)
    evo = NaasEvolution(space, s.outer(), ctx.seed, Reference(**info["reference"]))
    return NaasSearcher(evo, str(ctx.run_dir), ctx.metrics[0], ctx.modes[0])


def _say(line: str) -> None:
    print(f"naas: {line}", flush=True)


class NaasEvaluator(Evaluator):
    """An accelerator trial (inner search) or a refinement trial (agent, fine-tune, measure)."""

    name = "naas"
    reports = NAAS_REPORTS

    def evaluate(self, params: Mapping[str, Any], ctx: TrialContext) -> Evaluation:
        """Run the proposal ``params`` made by the naas searcher."""
        if "assets" not in params:
            raise SpecError("the naas evaluator runs proposals of the naas searcher (searcher.name: naas)")
        # A proposal names the asset folder of the run where it was made; a trial Tune runs again after
        # the run folder moved finds them in the folder it runs in now.
        folder = ctx.run_path / ASSETS if ctx.run_path is not None else Path(params["assets"])
        assets = load_assets(str(folder), ctx.config.data.source, ctx.config.data.seed,
                             json.dumps(ctx.config.space.options, sort_keys=True))
        if "accel" in params:
            return self._accelerator(params, assets, ctx)
        if "refine" in params:
            return self._refine(params, assets, ctx)
        raise SpecError(f"a naas proposal holds 'accel' or 'refine', got keys {sorted(params)}")

    def _accelerator(self, params: Mapping[str, Any], assets: Any, ctx: TrialContext) -> Evaluation:
        s = NaasSettings.model_validate(ctx.config.searcher.settings)  # this run's settings, not the assets'
        space = s.space()
        result, accel = evaluate_accelerator(assets.problem, space, params["accel"], s.inner(), int(params["seed"]),
                                             params.get("seeds", ()))
        front = list(result.front)
        rep = representative(front)
        q = assets.problem.space
        net = q.to_netspec(rep.choice)
        hw = hardware_metrics(net, accel)
        net_choice, bits = q.split(rep.choice)
        metrics = {
            "accuracy": rep.accuracy, "predicted_acc": rep.accuracy, "latency_ms": hw["latency_ms"],
            "energy_mj": hw["energy_mj"], "edp": hw["edp"], "area_mm2": hw["area_mm2"],
            "peak_power_w": hw["peak_power_w"], "hypervolume": result.hypervolume,
            "evaluations": float(result.evaluations), "front_size": float(len(front)), "measured": 0.0,
            "generation": float(params.get("generation", -1)),
        }
        docs = {"front": {"accelerator": params["accel"], "hypervolume": result.hypervolume,
                          "triples": [t.to_dict() for t in front]},
                "hardware": accel.to_dict(), "policy": q.policy(rep.choice).to_dict(),
                "bits": bits}
        return Evaluation(choice=net_choice, netspec=net, metrics=metrics, model=None, documents=docs)

    def _refine(self, params: Mapping[str, Any], assets: Any, ctx: TrialContext) -> Evaluation:
        s = NaasSettings.model_validate(ctx.config.searcher.settings)  # this run's settings, not the assets'
        triple = Triple.from_dict(params["refine"])
        rs = RefineSettings(agent_episodes=s.agent_episodes, finetune_epochs=s.finetune_epochs,
                            seed=int(params.get("seed", 0)) % (2**31), patience=s.finetune_patience,
                            kd_ratio=s.finetune_kd_ratio)
        out = refine(assets.supernet, assets.data, assets.problem.space, triple, rs)
        metrics = {**out.metrics, "rank": float(params.get("rank", 0))}
        docs = {"hardware": out.accel.to_dict(), "policy": out.policy.to_dict(), "triple": triple.to_dict()}
        return Evaluation(choice=out.net_choice, netspec=out.netspec, metrics=metrics, model=out.model,
                          documents=docs)

    def rebuild(self, saved: SavedTrial, space: Any) -> Any:
        """The refined, compressed network with its fine-tuned weights."""
        choice = saved.choice
        policy = Policy.from_dict(saved.read_json("policy"))
        model = rebuild(space.build(choice), policy, space.input_shape(choice), saved.state_dict())
        return model.eval()


def representative(front: list[Triple]) -> Triple:
    """The triple a trial reports in the run table: lowest EDP within one point of its best accuracy."""
    if not front:
        raise RunError("the inner search returned an empty front")
    best = max(t.accuracy for t in front)
    near = [t for t in front if t.accuracy >= best - 0.01]
    return min(near, key=lambda t: (t.edp, -t.accuracy))


__all__ = ["NaasEvaluator", "NaasSearcher", "naas_searcher", "representative"]
