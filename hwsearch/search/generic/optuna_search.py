"""Optuna through Ray Tune: TPE for one objective, NSGA-II for several, over a space's option indices.

The study lives in a journal file (``optuna.journal``) inside the run directory: Optuna's SQLite
storage locks under parallel workers, and Tune's own pickled searcher state once lost the study on
restore. Here the saved searcher state is a small JSON document (which Tune trial is which Optuna
trial) and `restore` reopens the study from the journal next to it, so a resumed search continues
with every trial the study saw before the stop.

Tune also pickles the searcher object itself when a `Tuner` is built. Optuna's live objects are not
picklable in every release (5.x samplers hold a thread lock), so the pickled form keeps only what
names the study (journal, name, settings, seed, trial ids) and reopens it from the journal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from ray.tune.search.optuna import OptunaSearch

from hwsearch.errors import RunError
from hwsearch.io import atomic_write_text
from hwsearch.search.engine.rundir import current_folder
from hwsearch.search.engine.searchers import SearchContext
from hwsearch.search.generic.settings import OptunaSettings

JOURNAL = "optuna.journal"


def make_sampler(settings: OptunaSettings, n_objectives: int, seed: int) -> optuna.samplers.BaseSampler:
    """The sampler the settings ask for."""
    kind = settings.sampler
    if kind == "auto":
        kind = "tpe" if n_objectives == 1 else "nsga2"
    if kind == "nsga2":
        return optuna.samplers.NSGAIISampler(population_size=settings.population_size, seed=seed)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(n_startup_trials=settings.n_startup_trials, seed=seed)


def open_study(journal: Path, name: str) -> optuna.Study:
    """Load the study kept in ``journal`` (read-only use: inspection and tests)."""
    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(journal))))


# Attributes of Tune's OptunaSearch that hold live Optuna objects (locks, file handles): never pickled.
_LIVE = ("_storage", "_sampler", "_ot_study", "_ot_trials")


class JournalOptunaSearch(OptunaSearch):
    """Tune's OptunaSearch whose study is a journal file and whose saved state is JSON."""

    def __init__(self, *, journal: Path, study_name: str, settings: OptunaSettings, seed: int, **kwargs: Any):
        self._journal_path = str(Path(journal).resolve())
        self._settings_dict = settings.model_dump()
        self._base_seed = int(seed)
        n_obj = len(kwargs["metric"]) if isinstance(kwargs.get("metric"), list) else 1
        storage = JournalStorage(JournalFileBackend(str(journal)))
        super().__init__(storage=storage, study_name=study_name,
                         sampler=make_sampler(settings, n_obj, seed), **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        """Everything but the live Optuna objects; the trials as Optuna trial numbers."""
        state = {k: v for k, v in self.__dict__.items() if k not in _LIVE}
        state["_ot_trials"] = {tid: t._trial_id for tid, t in (self._ot_trials or {}).items()}
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Rebuild the live objects from the journal (left unset when it is not there: `restore` finds it)."""
        trials = state.pop("_ot_trials", {})
        self.__dict__.update(state)
        # the journal of the run being resumed, which may have moved since this was saved
        journal = Path(self._journal_path)
        self._journal_path = str(current_folder(journal.parent) / journal.name)
        self._storage = self._sampler = self._ot_study = None
        self._ot_trials = {}
        if Path(self._journal_path).is_file():
            self._reopen(Path(self._journal_path), trials)

    def _reopen(self, journal: Path, trials: dict[str, int]) -> None:
        """Load the study from ``journal`` with a sampler seeded by how far it got; reattach ``trials``."""
        n_obj = len(self._metric) if isinstance(self._metric, list) else 1
        storage = JournalStorage(JournalFileBackend(str(journal)))
        probe = optuna.load_study(study_name=self._study_name, storage=storage)
        # A fresh sampler seeded by how far the study got: resumed runs stay reproducible.
        sampler = make_sampler(OptunaSettings(**self._settings_dict), n_obj, self._base_seed + len(probe.trials))
        self._storage = storage
        self._ot_study = optuna.load_study(study_name=self._study_name, storage=storage, sampler=sampler)
        self._sampler = sampler
        self._journal_path = str(journal)
        self._ot_trials = {tid: optuna.Trial(self._ot_study, int(ot_id)) for tid, ot_id in trials.items()}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Tell the study; a trial Tune restarted after a crash but the study never saw is skipped."""
        if trial_id not in self._ot_trials:
            return
        super().on_trial_complete(trial_id, result, error)

    def save(self, checkpoint_path: str) -> None:
        """Write which Tune trial is which Optuna trial; the study itself is already on disk."""
        atomic_write_text(checkpoint_path, json.dumps({
            "kind": "optuna", "journal": self._journal_path, "study_name": self._study_name,
            "trials": {tid: t._trial_id for tid, t in self._ot_trials.items()},
            "completed": sorted(self._completed_trials), "settings": self._settings_dict,
            "seed": self._base_seed,
        }))

    def restore(self, checkpoint_path: str) -> None:
        """Reopen the study from its journal and reattach the trials that were running."""
        with open(checkpoint_path) as f:
            state = json.load(f)
        # Tune hands over a staged copy of the state file; the journal stays in the run directory
        # (or beside the state file when the run directory was moved).
        places = [Path(state["journal"]), Path(checkpoint_path).parent / Path(state["journal"]).name]
        if getattr(self, "_journal_path", None):
            places.insert(0, Path(self._journal_path))
        moved = current_folder(Path(state["journal"]).parent) / Path(state["journal"]).name
        places.insert(0, moved)  # the run being resumed, wherever it is now
        journal = next((p for p in places if p.is_file()), None)
        if journal is None:
            raise RunError(f"the Optuna journal of this run is missing (looked at {', '.join(map(str, places))})")
        self._study_name, self._settings_dict, self._base_seed = state["study_name"], state["settings"], state["seed"]
        self._reopen(journal, state["trials"])
        self._completed_trials = set(state["completed"])


def optuna_searcher(ctx: SearchContext) -> JournalOptunaSearch:
    """Build the Optuna searcher over categorical option indices of every gene."""
    space = {f"choice/{d.name}": optuna.distributions.CategoricalDistribution(list(range(len(d.options))))
             for d in ctx.space.dims}
    multi = len(ctx.metrics) > 1
    return JournalOptunaSearch(
        journal=ctx.run_dir / JOURNAL, study_name=ctx.config.name, settings=ctx.settings, seed=ctx.seed,
        space=space, metric=ctx.metrics if multi else ctx.metrics[0], mode=ctx.modes if multi else ctx.modes[0],
    )


__all__ = ["JOURNAL", "JournalOptunaSearch", "OptunaSettings", "make_sampler", "open_study"]
