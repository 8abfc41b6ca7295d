"""Run an experiment on Ray Tune: local Ray on loopback by default, a cluster with ``address``.

`run_experiment` starts a new run, `resume_experiment` continues one through ``Tuner.restore``
(finished trials are kept, unfinished ones rerun, the searcher reloads its saved state).
`RecordCallback` records every finished or failed trial as it ends: it appends the trial's row to the
run table (`TrialLog`: one small file, the table compacted now and then) and rewrites ``pareto.json``
(the front only), then prints one progress line (trials done / budget, best so far, elapsed). It
keeps the counts, the front and the best trial in memory (`RunTally`), built from the table once on
setup or resume, so recording a trial costs the same at the 100,000th trial as at the first. Tune's
own console output is switched off.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from pathlib import Path
from typing import Any

from hwsearch.errors import HwsearchError, RunError
from hwsearch.search.engine import searchers
from hwsearch.search.engine.config import ExperimentConfig, parse_config
from hwsearch.search.engine.evaluators import build_space, cached_data
from hwsearch.search.engine.inspection import write_plots
from hwsearch.search.engine.rundir import MARKER, RunDir, RunTally, current_folder, resuming, row_document
from hwsearch.search.engine.searchers import searcher_done, wait_for_end_work
from hwsearch.search.engine.table import TrialLog

# Set before Ray is imported: no usage reporting over the network, no TensorBoard/CSV loggers.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "60")
# Ray lowers its workers' priority (nice 15) to keep the driver responsive; here the trials are the
# work and the driver mostly waits, so on a shared machine they should not starve behind other jobs.
os.environ.setdefault("RAY_worker_niceness", "0")

import ray  # noqa: E402
from ray import tune  # noqa: E402


class RecordCallback(tune.Callback):
    """Keeps the run table and ``pareto.json`` current and prints progress (picklable: Tune stores it)."""

    def __init__(self, run_path: str, quiet: bool = False):
        self.run_path = run_path
        self.quiet = quiet
        self._config: ExperimentConfig | None = None  # read once, not per trial (BENCHMARKS.md, engine overhead)
        self._log: TrialLog | None = None
        self._tally: RunTally | None = None
        self._start = time.time()

    def __getstate__(self) -> dict[str, Any]:
        # Only the settings: what it holds of the run is rebuilt from the run folder, never from a pickle.
        return {"run_path": self.run_path, "quiet": self.quiet}

    def __setstate__(self, state: dict[str, Any]) -> None:
        # One pickled by an older hwsearch also holds its rows then (``_rows``): the run folder is newer.
        # The folder is the one being resumed, which the run may have been moved to since.
        self.__init__(str(current_folder(state["run_path"])), bool(state.get("quiet", False)))

    def setup(self, **info: Any) -> None:
        """Read the trials already recorded (on resume) and restart the clock."""
        self._load()
        self._start = time.time()

    def _load(self) -> tuple[TrialLog, RunTally]:
        if self._log is None or self._tally is None:
            run = RunDir(Path(self.run_path))
            if self._config is None:
                self._config = run.config()
            self._log = run.trial_log()
            self._tally = RunTally.from_frame(run.trials(), self._config)
        return self._log, self._tally

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Record a finished trial, with its failed attempts before (a lost node: ``ray.max_failures``)."""
        self._record({**finished_row(trial.trial_id, dict(trial.last_result or {})),
                      "failures": int(getattr(trial, "num_failures", 0) or 0)})

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        """Record a failed trial with its reason."""
        self._record({"trial_id": trial.trial_id, "status": "failed", "feasible": False,
                      "error": _error_line(trial), "choice": json.dumps(_choice_of(trial), sort_keys=True),
                      "finished_at": time.time(), "artifacts": None,
                      "failures": int(getattr(trial, "num_failures", 0) or 0)})

    def _record(self, row: dict[str, Any]) -> None:
        run = RunDir(Path(self.run_path))
        log, tally = self._load()
        config = tally.config
        log.append([row])
        if not tally.add(row):  # it replaced a trial on the front: what that trial hid may come back
            self._tally = tally = RunTally.from_frame(run.trials(), config)
        run.write_front(tally.front(), config)
        if not self.quiet:
            self._print(tally)

    def _print(self, tally: RunTally) -> None:
        from rich.console import Console

        config = tally.config
        done, failed, best = tally.done, tally.failed, tally.best()
        o = config.primary
        best_text = f"best {o.metric} {best[o.metric]:.4g} (trial {best['trial_id']})" if best else "no feasible trial yet"
        elapsed = time.time() - self._start
        Console().print(f"[bold]trials {done}/{config.budget.trials}[/bold]"
                        + (f" ({failed} failed)" if failed else "")
                        + f"  {best_text}  elapsed {elapsed:.0f}s", highlight=False)


def finished_row(trial_id: str, result: dict[str, Any]) -> dict[str, Any]:
    """The run-table row of a finished trial from its reported result (or its saved ``report.json``)."""
    row = {k: v for k, v in result.items() if k in _KEEP or _is_metric(k, v)}
    if isinstance(row.get("choice"), dict):
        row["choice"] = json.dumps(row["choice"], sort_keys=True)
    row.update(trial_id=trial_id, status="ok", error=None, artifacts=f"trials/{trial_id}")
    return row


def record_saved_trials(run_path: str | Path, trial_ids: list[str]) -> list[str]:
    """Add to the run table the trials among ``trial_ids`` whose folder is complete but which it misses.

    A kill -9 can land after a trial saved its folder and before the table recorded it, and Tune's
    own state can be seconds behind; a searcher that knows such a trial is its own (NAAS keeps a
    write-ahead state) calls this on resume, before the engine reloads the table. Returns the ids added."""
    run = RunDir(Path(run_path))
    df = run.trials()
    have = set(df["trial_id"].astype(str)) if not df.empty else set()
    new = []
    for t in trial_ids:
        report = run.path / "trials" / t / "report.json"
        if t not in have and report.is_file():
            new.append(finished_row(t, json.loads(report.read_text())))
    if new:
        run.append_trials(new)
        run.write_pareto(run.trials(), run.config())
    return [r["trial_id"] for r in new]


def tune_trial_states(run_path: str | Path) -> dict[str, str] | None:
    """Trial id -> status in the Tune experiment state a resume restores: empty when Tune saved none (the
    run restarts from nothing), None when a saved state cannot be read.

    Tune restores from the experiment-state file whose name sorts last; so does this."""
    files = sorted(Path(run_path).glob("experiment_state-*.json"))
    if not files:
        return {}
    try:
        state = json.loads(files[-1].read_text())
        trials = [json.loads(t[0]) for t in state["trial_data"]]
        return {str(t["trial_id"]): str(t.get("status", "")) for t in trials}
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return None


_KEEP = {"feasible", "choice", "started_at", "finished_at", "duration_s", "node"}
_TUNE_KEYS = {"timestamp", "training_iteration", "time_this_iter_s", "time_total_s", "pid", "time_since_restore",
              "iterations_since_restore", "done", "date", "hostname", "node_ip", "trial_id", "experiment_tag",
              "checkpoint_dir_name", "should_checkpoint"}


def _is_metric(k: str, v: Any) -> bool:
    return k not in _TUNE_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)


def _choice_of(trial: Any) -> dict[str, Any]:
    return dict((trial.config or {}).get("choice", {}))


def _error_line(trial: Any) -> str:
    """The last line of the trial's traceback: the exception and its message."""
    text = ""
    path = getattr(trial, "error_file", None)
    if path and os.path.isfile(path):
        with open(path, errors="replace") as f:
            text = f.read()
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1][:500] if lines else "trial failed without an error message"


# ---- Ray ----------------------------------------------------------------------------------------
def init_ray(address: str | None, config: ExperimentConfig) -> bool:
    """Connect to ``address`` or start a local instance on loopback; True when this call started it."""
    if ray.is_initialized():
        return False
    common = dict(include_dashboard=False, log_to_driver=False, logging_level="error", configure_logging=True)
    if address:
        token = use_cluster_token()
        try:
            ray.init(address=address, **common)
        except ConnectionError as e:
            hint = ("the token in RAY_AUTH_TOKEN/RAY_AUTH_TOKEN_PATH may not be this cluster's" if token else
                    "if the cluster uses token authentication, set RAY_AUTH_TOKEN to its token "
                    "(`ray get-auth-token` on the head node) or RAY_AUTH_TOKEN_PATH to a file holding it")
            raise RunError(f"cannot connect to the Ray cluster at {address}: {e}; {hint}") from None
    else:
        # Ray's servers listen on every interface (it swaps 127.0.0.1 for a reachable address), so a
        # local instance gets a random token that only this process and its Ray children know.
        if not os.environ.get("RAY_AUTH_MODE"):
            _enable_token_auth()
        need = config.ray.workers * config.ray.cpus_per_trial
        ray.init(address="local", num_cpus=max(os.cpu_count() or 1, int(need + 0.999)),
                 num_gpus=None if config.ray.gpus_per_trial else 0, **common)
    return True


def use_cluster_token() -> bool:
    """Turn on Ray's token authentication when the user gave a token (True) and did not set the mode.

    Ray (2.5x/2.60) sends a token to an explicit cluster address only with ``RAY_AUTH_MODE=token``;
    with just ``RAY_AUTH_TOKEN`` set it connects without one and the cluster refuses it after
    retrying for about 20 s. ``RAY_AUTH_MODE=disabled`` set by the user is respected."""
    if os.environ.get("RAY_AUTH_MODE"):
        return os.environ["RAY_AUTH_MODE"].lower() == "token"
    if not (os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")):
        return False
    os.environ["RAY_AUTH_MODE"] = "token"
    _reload_ray_config()
    return True


def _reload_ray_config() -> bool:
    """Make an already imported Ray read ``RAY_AUTH_MODE`` again (it caches its config on import);
    False for a Ray without token authentication."""
    try:
        from ray._raylet import Config

        Config.initialize("")
    except (ImportError, AttributeError):
        return False
    return True


def _enable_token_auth() -> None:
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    if not _reload_ray_config():
        # A Ray without token support: run without it rather than fail to start.
        del os.environ["RAY_AUTH_MODE"], os.environ["RAY_AUTH_TOKEN"]


def _trainable(run: RunDir, config: ExperimentConfig):
    # deferred: the trial module imports torch, which the driver process never needs
    from hwsearch.search.engine.trial import trainable

    resources = {"cpu": config.ray.cpus_per_trial, "gpu": config.ray.gpus_per_trial}
    fn = tune.with_parameters(trainable, run_path=str(run.path), config=config.model_dump(mode="json"))
    return tune.with_resources(fn, resources)


def _fit(tuner: Any, run: RunDir, config: ExperimentConfig) -> RunDir:
    try:
        tuner.fit()
        wait_for_end_work()  # a searcher's final report (NAAS: front, plot, export) is part of the run
    except KeyboardInterrupt:
        run.set_state("stopped")
        raise
    run.trial_log().finish()  # a run that ended leaves its whole table in trials.parquet, for other tools
    done = len(run.trials())
    run.set_state("finished" if done >= config.budget.trials or searcher_done(run.path) else "stopped")
    write_plots(run)
    return run


def run_experiment(config: ExperimentConfig, name: str | None = None, address: str | None = None,
                   workers: int | None = None, root: str | Path | None = None, quiet: bool = False) -> RunDir:
    """Start the experiment ``config`` in ``<root>/<name>/`` and run it to its budget."""
    raw = config.model_dump(mode="json")
    if name:
        raw["name"] = name
    if workers:
        raw["ray"]["workers"] = workers
    if address:
        raw["ray"]["address"] = address
    config = parse_config(raw, where="run options")
    root = Path(root or config.output.root)
    fresh = not (root / config.name).exists()
    run = RunDir.create(root / config.name, config)
    try:
        searcher = _build_searcher(run)
    except HwsearchError:
        # A user mistake found while setting up (data, space, searcher settings): nothing has run yet,
        # so what this call created is removed and the same command can be run again as it is.
        if fresh:
            shutil.rmtree(run.path, ignore_errors=True)
        else:  # a folder of the user's: only the run's own files go
            for name in ("config.yaml", MARKER):
                (run.path / name).unlink(missing_ok=True)
        raise
    return _tune(run, searcher, quiet)


def _build_searcher(run: RunDir) -> Any:
    """The run's searcher over its space, built from its saved config (data loaded, assets prepared)."""
    config = run.config()
    data = cached_data(config.data.source, config.data.seed)
    return searchers.build(build_space(config, data), config, run.path)


def _tune(run: RunDir, searcher: Any, quiet: bool, address: str | None = None) -> RunDir:
    """Run a new Tune experiment for ``run`` with ``searcher`` to the run's budget."""
    config = run.config()
    started = init_ray(address or config.ray.address, config)
    try:
        tuner = tune.Tuner(
            _trainable(run, config),
            tune_config=tune.TuneConfig(
                search_alg=searcher, num_samples=config.budget.trials, max_concurrent_trials=config.ray.workers,
                time_budget_s=config.budget.time_s, trial_dirname_creator=lambda t: t.trial_id,
            ),
            run_config=tune.RunConfig(
                name=run.path.name, storage_path=str(run.path.parent), verbose=0,
                callbacks=[RecordCallback(str(run.path), quiet=quiet)],
                failure_config=tune.FailureConfig(max_failures=config.ray.max_failures, fail_fast=False),
            ),
        )
        return _fit(tuner, run, config)
    finally:
        if started:
            ray.shutdown()


def resume_experiment(path: str | Path, address: str | None = None, quiet: bool = False) -> RunDir:
    """Continue the run at ``path``: finished trials stay, the searcher continues from its saved state."""
    run = RunDir.open(path)
    config = run.config()
    if run.state == "running":
        raise RunError(f"run {run.path} is still running (pid {run.info().get('pid')}); stop it before resuming")
    if not tune.Tuner.can_restore(str(run.path)):
        if len(run.trials()):
            raise RunError(f"run {run.path} has finished trials but no Tune experiment state to resume from; "
                           "its Tune files were removed or never synced to this folder")
        # Killed while setting up (data, supernet, predictor) or before Tune's first save: nothing
        # finished, so the run starts again in its folder from its saved config; what setting up
        # cached (a trained supernet) is reused, and a searcher's own saved state is reconciled.
        run.set_state("running")
        return _tune(run, _build_searcher(run), quiet, address)
    run.set_state("running")
    started = init_ray(address or config.ray.address, config)
    try:
        # Tune restores the searcher and the callback as they were saved: `resuming` points them at
        # the run's folder as it is now, wherever the run was when it stopped.
        with resuming(run.path):
            tuner = tune.Tuner.restore(str(run.path), _trainable(run, config), resume_unfinished=True,
                                       resume_errored=False, restart_errored=False)
            return _fit(tuner, run, config)
    finally:
        if started:
            ray.shutdown()


def finished_rows(run: RunDir) -> list[dict[str, Any]]:
    """The recorded trials as JSON-able dicts."""
    return [row_document(r) for _, r in run.trials().iterrows()]


__all__ = ["RecordCallback", "finished_row", "finished_rows", "init_ray", "record_saved_trials", "resume_experiment",
           "run_experiment", "tune_trial_states", "use_cluster_token"]
