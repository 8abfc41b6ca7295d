"""The experiment engine on Ray Tune; it knows no search family.

A config (`config`) names a searcher (`searchers` registry), an evaluator (`evaluators`) and metric
providers (`metrics`); the driver (`driver`) runs them as Ray Tune trials (`trial`), the run folder
(`rundir`, its table in `table`) records every finished one, `inspection` summarises it and `bundle`
exports a trial. The built-in plug-ins are registered in `hwsearch.search.plugins`.

Public names load on first use (`hwsearch.registry.lazy_exports`): a config check stays light.
"""

from __future__ import annotations

from hwsearch.registry import lazy_exports

_EXPORTS = {
    "ExportResult": "bundle",
    "export_trial": "bundle",
    "find_trial": "bundle",
    "BudgetConfig": "config",
    "CONFIG_VERSION": "config",
    "Constraint": "config",
    "DataConfig": "config",
    "EvaluationConfig": "config",
    "ExperimentConfig": "config",
    "Objective": "config",
    "OutputConfig": "config",
    "RayConfig": "config",
    "SearcherConfig": "config",
    "SpaceConfig": "config",
    "apply_override": "config",
    "default_config_path": "config",
    "load_config": "config",
    "parse_config": "config",
    "RecordCallback": "driver",
    "finished_row": "driver",
    "finished_rows": "driver",
    "init_ray": "driver",
    "record_saved_trials": "driver",
    "resume_experiment": "driver",
    "run_experiment": "driver",
    "tune_trial_states": "driver",
    "EVALUATORS": "evaluators",
    "Evaluation": "evaluators",
    "Evaluator": "evaluators",
    "EvaluatorPlugin": "evaluators",
    "SavedTrial": "evaluators",
    "TrialContext": "evaluators",
    "build_space": "evaluators",
    "cached_data": "evaluators",
    "choice_from_params": "evaluators",
    "get": "evaluators",
    "names": "evaluators",
    "register": "evaluators",
    "summary": "inspection",
    "trials_frame": "inspection",
    "write_plots": "inspection",
    "MetricProvider": "metrics",
    "PROVIDERS": "metrics",
    "ProviderPlugin": "metrics",
    "TRIAL_METRICS": "metrics",
    "measure": "metrics",
    "reported": "metrics",
    "BASE_COLUMNS": "rundir",
    "MARKER": "rundir",
    "RUN_FORMAT": "rundir",
    "RunDir": "rundir",
    "best_trial": "rundir",
    "candidates": "rundir",
    "pareto_front": "rundir",
    "row_document": "rundir",
    "sort_by_primary": "rundir",
    "SEARCHERS": "searchers",
    "SEARCHER_DONE": "searchers",
    "SearchContext": "searchers",
    "SearcherPlugin": "searchers",
    "build": "searchers",
    "mark_searcher_done": "searchers",
    "plugin": "searchers",
    "run_at_end": "searchers",
    "searcher_done": "searchers",
    "validate_settings": "searchers",
    "wait_for_end_work": "searchers",
    "ObjectiveMissing": "trial",
    "evaluate_trial": "trial",
    "save_trial": "trial",
    "trainable": "trial",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
