"""The assets a NAAS run prepares once and every trial reads: supernet, predictor, bits penalty, box.

``<run>/naas/assets.json`` records where the trained supernet is (the shared supernet cache, trained
there when missing), the accuracy predictor's data (``predictor.json``: measured sub-network
accuracies and the fitted model), the measured bit-width penalty (``penalty.json``) and the fixed
hypervolume reference. Everything is JSON or a tensor file read with ``weights_only``; each file is
written atomically, so a run killed while preparing prepares again on the next start.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from hwsearch import spaces
from hwsearch.data import load_data
from hwsearch.errors import CorruptTable, RunError
from hwsearch.io import atomic_write_json
from hwsearch.search.naas.accuracy import BitsPenalty, CoSearchAccuracy, measure_bits_penalty
from hwsearch.search.naas.problem import CoSearchProblem, QuantizedSpace, Reference
from hwsearch.search.naas.settings import Assets, NaasSettings, reference_for
from hwsearch.spaces.base import Choice, SearchSpace
from hwsearch.spaces.supernet import SuperNet, accuracies, load_or_train, sample_choices
from hwsearch.spaces.supernet.cache import load_supernet_state, space_kwargs_for

# L2 strengths tried when fitting: one-hot genes of a few hundred measured sub-networks need anything
# from almost none (an additive, noise-free target) to strong shrinkage (supernet accuracies).
ALPHAS = tuple(float(a) for a in np.logspace(-3, 3, 13))


class OneHotRidge:
    """Accuracy of a sub-network from its one-hot encoding: ridge regression (closed form).

    Once-for-All fits a small MLP on the same features; at the few hundred measured sub-networks a
    two-core budget affords, a linear model on one-hot genes is as accurate and has no training noise.
    Predictions are clipped to the range of the measured accuracies: the co-search maximises the
    predictor, and a linear model summing the best gene of every block extrapolates past anything
    measured (a default run predicted 100% for sub-networks that measured 90%). The penalty strength
    is chosen by leave-one-out error (scikit-learn's `RidgeCV`): a fixed alpha of 1 left 5-fold MAE at
    2.6 points where the chosen one (about 30) gives 1.9, and put 8% of random sub-networks at the clip,
    where they all tie and the cheapest of them dominated the whole predicted front.
    """

    def __init__(self, space: SearchSpace, weights: np.ndarray, bias: float, floor: float = 0.0,
                 ceiling: float = 1.0, alpha: float | None = None) -> None:
        self.space, self.weights, self.bias = space, np.asarray(weights, dtype=float), float(bias)
        self.floor, self.ceiling, self.alpha = float(floor), float(ceiling), alpha

    @classmethod
    def fit(cls, space: SearchSpace, choices: Sequence[Choice], acc: np.ndarray,
            alpha: float | None = None) -> OneHotRidge:
        """Ridge regression (bias not penalised) with L2 strength ``alpha``, or the `ALPHAS` one of least leave-one-out error."""
        from sklearn.linear_model import RidgeCV

        x = np.stack([space.one_hot(c) for c in choices]).astype(float)
        y = np.asarray(acc, dtype=float)
        model = RidgeCV(alphas=list(ALPHAS if alpha is None else (alpha,))).fit(x, y)
        return cls(space, model.coef_, float(model.intercept_), float(y.min()), float(y.max()), float(model.alpha_))

    def __call__(self, choices: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predicted accuracies (fraction), vectorised."""
        if not choices:
            return np.zeros(0)
        x = np.stack([self.space.one_hot(c) for c in choices]).astype(float)
        return np.clip(x @ self.weights + self.bias, self.floor, self.ceiling)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {"kind": "onehot-ridge", "weights": self.weights.tolist(), "bias": self.bias, "floor": self.floor,
                "ceiling": self.ceiling, "alpha": self.alpha}

    @classmethod
    def from_dict(cls, space: SearchSpace, d: Mapping[str, Any]) -> OneHotRidge:
        """Inverse of `to_dict`, checked against the space's encoding length."""
        w = np.asarray(d.get("weights", []), dtype=float)
        if d.get("kind") != "onehot-ridge" or w.shape != space.one_hot(space.reference("smallest")).shape:
            raise CorruptTable("predictor.json does not hold a one-hot ridge model of this space")
        return cls(space, w, float(d["bias"]), float(d.get("floor", 0.0)), float(d.get("ceiling", 1.0)),
                   d.get("alpha"))


def build_assets(folder: Path, space_name: str, space_options: Mapping[str, Any], data_source: str, data_seed: int,
                 settings: NaasSettings, seed: int = 0, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Prepare the run's assets in ``folder`` (reused when ``assets.json`` is already there)."""
    say = progress or (lambda line: None)
    done = folder / "assets.json"
    if done.is_file():
        return json.loads(done.read_text())
    start = time.perf_counter()
    say(f"supernet: {space_name} on {data_source}, schedule {settings.supernet_schedule} (cached after the first run)")
    cs = load_or_train(space_name, data_source, settings.supernet_schedule, data_seed, space_kwargs=space_options,
                       progress=progress is not None)
    say(f"supernet {'trained' if cs.trained_now else 'loaded from cache'} in {time.perf_counter() - start:.0f} s")
    space = cs.space
    t = time.perf_counter()
    n = settings.predictor_samples
    choices = [space.reference("largest"), space.reference("smallest")] + sample_choices(cs.supernet, n - 2, seed)
    acc = _measured_before(folder / "predictor.json", choices)  # a run killed after this step skips it
    if acc is None:
        acc = accuracies(cs.supernet, cs.data, choices, "val", progress=progress is not None)
    held = max(4, n // 5)
    model = OneHotRidge.fit(space, choices[:-held], acc[:-held])
    mae = float(np.abs(model(choices[-held:]) - acc[-held:]).mean())
    model = OneHotRidge.fit(space, choices, acc)
    atomic_write_json(folder / "predictor.json", {**model.to_dict(), "choices": choices, "val_acc": acc.tolist(),
                                                  "holdout_mae": mae})
    say(f"accuracy predictor fitted on {len(choices)} measured sub-networks (hold-out MAE {100 * mae:.2f} points) "
        f"in {time.perf_counter() - t:.0f} s")
    t = time.perf_counter()
    q = QuantizedSpace(space, settings.bits)
    penalty = measure_bits_penalty(cs.supernet, cs.data, q, space.reference(settings.penalty_reference))
    atomic_write_json(folder / "penalty.json", penalty.to_dict())
    say(f"bit-width sensitivity measured on {settings.penalty_reference} ({len(q.groups)} groups at "
        f"{min(q.bits)} bits, {max(q.bits)}-bit offset {100 * penalty.offset:.2f} points) in {time.perf_counter() - t:.0f} s")
    reference = reference_for(q, settings.space(), settings.acc_floor)
    info = {
        "space": space_name, "space_options": dict(space_options), "data": data_source, "data_seed": data_seed,
        "supernet": {"path": str(cs.path), "key": cs.key, "trained_now": cs.trained_now,
                     "train_seconds": cs.log.seconds},
        "predictor": {"file": "predictor.json", "samples": len(choices), "holdout_mae": mae},
        "penalty": {"file": "penalty.json"},
        "reference": reference.to_dict(),
        "seconds": time.perf_counter() - start,
    }
    atomic_write_json(folder / "settings.json", settings.model_dump(mode="json"))
    atomic_write_json(done, info)  # last: its presence means every other file is complete
    return info


def _measured_before(path: Path, choices: Sequence[Choice]) -> np.ndarray | None:
    """The accuracies a previous attempt measured for exactly ``choices``, if it wrote them."""
    try:
        d = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if d.get("choices") != [dict(c) for c in choices] or len(d.get("val_acc", [])) != len(choices):
        return None
    return np.asarray(d["val_acc"], dtype=float)


def open_assets(folder: Path, data_source: str, data_seed: int, space_options: Mapping[str, Any]) -> Any:
    """The `hwsearch.search.naas.cosearch.Assets` of a prepared run folder (supernet loaded, problem built)."""
    try:
        info = json.loads((folder / "assets.json").read_text())
        settings = NaasSettings.model_validate(json.loads((folder / "settings.json").read_text()))
        pred = json.loads((folder / "predictor.json").read_text())
        penalty = BitsPenalty.from_dict(json.loads((folder / "penalty.json").read_text()))
    except (OSError, ValueError) as e:
        raise RunError(f"NAAS assets in {folder} are missing or unreadable ({e}); start the run again") from None
    data = load_data(data_source, seed=data_seed)
    space = spaces.get(info["space"], **space_kwargs_for(data, space_options))
    net_predict = OneHotRidge.from_dict(space, pred)
    q = QuantizedSpace(space, settings.bits)
    problem = CoSearchProblem(q, CoSearchAccuracy(net_predict, penalty), Reference(**info["reference"]))
    supernet = SuperNet(space)
    state, _ = load_supernet_state(info["supernet"]["path"])
    supernet.load_state_dict(state, strict=True)
    supernet.eval()
    return Assets(folder, settings, problem, supernet, data, info)


def prepare_assets(folder: str | Path, space_name: str, space_options: Mapping[str, Any], data_source: str,
                   data_seed: int, settings: NaasSettings, seed: int = 0,
                   progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train (or load from cache) the supernet, fit the accuracy predictor, measure the bits penalty and
    the normalisation; write them under ``folder`` and return the summary written to ``assets.json``."""
    return build_assets(Path(folder), space_name, space_options, data_source, data_seed, settings, seed, progress)


@lru_cache(maxsize=2)
def load_assets(folder: str, data_source: str, data_seed: int, space_options: str) -> Assets:
    """The assets of a run, loaded once per worker process."""
    return open_assets(Path(folder), data_source, data_seed, json.loads(space_options))


__all__ = ["OneHotRidge", "build_assets", "load_assets", "open_assets", "prepare_assets"]
