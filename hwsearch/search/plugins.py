"""Every built-in plug-in of the engine, registered in one place.

The engine's registries (`engine.searchers.SEARCHERS`, `engine.evaluators.EVALUATORS`,
`engine.metrics.PROVIDERS`) import this module on their first lookup. Each entry names its
implementation by module path (`hwsearch.registry.lazy`) and carries what a config is validated
against (a searcher's settings model, the metrics an evaluator or provider reports), so that loading and
validating a config imports no searcher, evaluator, torch, Ray or Optuna; the implementation is
imported when a run builds it. Adding a built-in is one entry here; the command line lists it unedited.
"""

from __future__ import annotations

from hwsearch.registry import lazy
from hwsearch.search.amc.settings import COMPRESSION_REPORTS, CompressionSettings, HaqSettings
from hwsearch.search.engine.evaluators import EVALUATORS, EvaluatorPlugin, TrainEvaluator
from hwsearch.search.engine.metrics import PROVIDERS, ProviderPlugin
from hwsearch.search.engine.searchers import SEARCHERS, SearcherPlugin
from hwsearch.search.generic.settings import OptunaSettings, RandomSettings
from hwsearch.search.hardware.accelerator import accelerator_metrics
from hwsearch.search.hardware.device import device_metrics
from hwsearch.search.naas.settings import NAAS_REPORTS, NaasSettings
from hwsearch.search.ofa.settings import SUPERNET_REPORTS, EvolutionSettings

# Searchers: name -> settings model, factory of a Ray Tune searcher.
SEARCHERS.add("random", SearcherPlugin(RandomSettings, lazy("hwsearch.search.generic.random_search:random_searcher")))
SEARCHERS.add("optuna", SearcherPlugin(OptunaSettings, lazy("hwsearch.search.generic.optuna_search:optuna_searcher")))
SEARCHERS.add("evolution", SearcherPlugin(EvolutionSettings, lazy("hwsearch.search.ofa.searcher:evolution_searcher")))
SEARCHERS.add("amc", SearcherPlugin(CompressionSettings, lazy("hwsearch.search.amc.plugin:amc_searcher")))
SEARCHERS.add("haq", SearcherPlugin(HaqSettings, lazy("hwsearch.search.amc.plugin:haq_searcher")))
SEARCHERS.add("naas", SearcherPlugin(NaasSettings, lazy("hwsearch.search.naas.plugin:naas_searcher")))

# Evaluators: name -> factory, the metrics it reports.
EVALUATORS.add("train", EvaluatorPlugin(TrainEvaluator, TrainEvaluator.reports))
EVALUATORS.add("supernet", EvaluatorPlugin(lazy("hwsearch.search.ofa.evaluator:SupernetEvaluator"), SUPERNET_REPORTS))
EVALUATORS.add("compression", EvaluatorPlugin(lazy("hwsearch.search.amc.plugin:CompressionEvaluator"),
                                              COMPRESSION_REPORTS))
EVALUATORS.add("naas", EvaluatorPlugin(lazy("hwsearch.search.naas.plugin:NaasEvaluator"), NAAS_REPORTS))

# Metric providers besides ``netspec`` (which `engine.metrics` defines): name -> function, metrics reported.
PROVIDERS.add("accelerator", ProviderPlugin(accelerator_metrics,
                                            ("latency_ms", "energy_mj", "edp", "area_mm2", "peak_power_w")))
PROVIDERS.add("device", ProviderPlugin(device_metrics, ("latency_ms", "*_latency_ms", "*_lut_latency_ms",
                                                        "*_measured_layers_ms")))
