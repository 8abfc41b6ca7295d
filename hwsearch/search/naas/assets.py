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
from hwsearch.errors import RunError
from hwsearch.estimators.accuracy_predictor import OneHotRidge
from hwsearch.io import atomic_write_json
from hwsearch.search.naas.accuracy import BitsPenalty, CoSearchAccuracy, measure_bits_penalty
from hwsearch.search.naas.problem import CoSearchProblem, QuantizedSpace, Reference
from hwsearch.search.naas.settings import Assets, NaasSettings, reference_for
from hwsearch.spaces.base import Choice
from hwsearch.spaces.supernet import SuperNet, accuracies, load_or_train, sample_choices
from hwsearch.spaces.supernet.cache import load_supernet_state, space_kwargs_for


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
