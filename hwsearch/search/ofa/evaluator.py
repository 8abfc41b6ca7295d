"""The ``supernet`` evaluator: a trial extracts its sub-network from the cached Once-for-All supernet.

No training per trial: the supernet of (space and its options, data, schedule, seed) is loaded from
the cache, or trained by progressive shrinking once (the first trial to need it trains it, any
other waits for it on the cache's file lock). The trial's network is ``space.build(choice)`` holding
the inherited weights with recalibrated BatchNorm, so the engine saves and exports it like any
trained network, and its accuracy is the one measured inside the supernet. A language model (a
`gpt` on text) also reports its validation and test loss and perplexity (`hwsearch.lm_eval`).

``evaluation.schedule`` names the progressive-shrinking preset (``fast`` unless given);
``evaluation.seed`` seeds the supernet's training.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from hwsearch.lm_eval import is_sequence, lm_metrics
from hwsearch.search.engine.evaluators import Evaluation, Evaluator, TrialContext, choice_from_params
from hwsearch.search.ofa.settings import SUPERNET_REPORTS
from hwsearch.spaces.supernet import CachedSupernet, load_or_train
from hwsearch.spaces.supernet.measure import extract_subnet
from hwsearch.train import evaluate


@lru_cache(maxsize=2)
def _supernet(space: str, options_json: str, data: str, data_seed: int, seed: int, schedule: str) -> CachedSupernet:
    return load_or_train(space, data, schedule, seed, space_kwargs=json.loads(options_json), data_seed=data_seed)


def supernet_for(ctx: TrialContext) -> CachedSupernet:
    """The trained supernet of the trial's config (loaded once per worker process)."""
    cfg = ctx.config
    options = {"in_channels": ctx.data.channels, "num_classes": ctx.data.num_classes, **cfg.space.options}
    return _supernet(cfg.space.name, json.dumps(options, sort_keys=True), cfg.data.source, cfg.data.seed,
                     cfg.evaluation.seed, cfg.evaluation.schedule)


class SupernetEvaluator(Evaluator):
    """Extract the proposed sub-network from the supernet, recalibrate BatchNorm, measure val/test top-1
    (and a language model's loss and perplexity)."""

    name = "supernet"
    reports = SUPERNET_REPORTS

    def evaluate(self, params: Mapping[str, Any], ctx: TrialContext) -> Evaluation:
        choice = choice_from_params(ctx.space, params)
        cached = supernet_for(ctx)
        start = time.perf_counter()
        model = extract_subnet(cached.supernet, cached.data, choice)
        data = cached.data.at_resolution(cached.supernet.resolution(choice))
        metrics = {
            "val_acc": evaluate(model, data.x_val, data.y_val),
            "test_acc": evaluate(model, data.x_test, data.y_test),
            "extract_time_s": time.perf_counter() - start,
            "supernet_train_time_s": cached.log.seconds,
            "resolution": float(data.resolution),
        }
        if is_sequence(data):
            metrics.update(lm_metrics(model, data))
        documents = {"supernet": {"key": cached.key, "schedule": ctx.config.evaluation.schedule, "log": cached.log.to_dict()}}
        return Evaluation(choice=choice, netspec=ctx.space.to_netspec(choice), metrics=metrics, model=model,
                          documents=documents)


__all__ = ["SupernetEvaluator", "supernet_for"]
