"""NAAS: co-search of sub-network, bit-widths and accelerator.

`problem` holds the inner co-search (types, inner evolution), `evolution` the outer evolution over
accelerators, `settings` the settings and the hypervolume box, `accuracy` and `assets` the supernet's
accuracy predictor and the run-wide assets, `cosearch` the in-process library loop, `refine` the AMC
agent's refinement of a triple (naas uses amc, never the reverse), `baselines` the comparisons,
`report` the final front, and `plugin` the engine hook-up (searcher and evaluator ``naas``).

Public names load on first use (`hwsearch.registry.lazy_exports`): a config check stays light.
"""

from __future__ import annotations

from hwsearch.registry import lazy_exports

_EXPORTS = {
    "BitsPenalty": "accuracy",
    "CoSearchAccuracy": "accuracy",
    "accuracy_on": "accuracy",
    "measure_bits_penalty": "accuracy",
    "quantize": "accuracy",
    "subnet": "accuracy",
    "OneHotRidge": "assets",
    "build_assets": "assets",
    "load_assets": "assets",
    "open_assets": "assets",
    "prepare_assets": "assets",
    "BASELINES": "baselines",
    "edp_at_accuracy": "baselines",
    "nsga2_joint": "baselines",
    "preset_inner": "baselines",
    "presets_network_only": "baselines",
    "random_joint": "baselines",
    "register": "baselines",
    "run_baseline": "baselines",
    "ASSETS": "cosearch",
    "Assets": "cosearch",
    "BASELINE_PRESETS": "cosearch",
    "NaasRun": "cosearch",
    "NaasSettings": "cosearch",
    "evaluate_accelerator": "cosearch",
    "reference_for": "cosearch",
    "retarget": "cosearch",
    "run_naas": "cosearch",
    "FINISHED": "evolution",
    "NaasEvolution": "evolution",
    "OuterSettings": "evolution",
    "WAIT": "evolution",
    "NaasEvaluator": "plugin",
    "NaasSearcher": "plugin",
    "naas_searcher": "plugin",
    "representative": "plugin",
    "AccuracyModel": "problem",
    "CoSearchProblem": "problem",
    "CostTables": "problem",
    "InnerResult": "problem",
    "InnerSettings": "problem",
    "QuantizedSpace": "problem",
    "Reference": "problem",
    "Triple": "problem",
    "front_of": "problem",
    "inner_search": "problem",
    "layer_group": "problem",
    "quantize_layer": "problem",
    "RefineSettings": "refine",
    "Refined": "refine",
    "refine": "refine",
    "best_pair": "report",
    "final_front": "report",
    "measured_rows": "report",
    "plot_fronts": "report",
    "write_report": "report",
    "NAAS_REPORTS": "settings",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
