"""Search: one sub-package per search family, and the engine that knows none of them.

``engine/`` runs an experiment config as Ray Tune trials (config, registries, trials, run folders,
inspection, trial bundles); ``hardware/`` holds the metric providers that price a network on an
accelerator or this machine; ``generic/`` the random and Optuna searchers; ``ofa/``, ``amc/`` and
``naas/`` one search family each (naas may use amc, never the reverse); `pareto` the dominance, fronts
and hypervolume they share; `plugins` registers every built-in searcher, evaluator and provider.
The modules directly in this folder besides those two are the old import paths, kept for one release.
Nothing is imported here, so importing one searcher does not start Ray. See docs/architecture.md.
"""
