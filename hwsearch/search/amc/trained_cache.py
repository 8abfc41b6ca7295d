"""Trained base networks for compression searches, trained once per (space, choice, data, seed, recipe).

AMC and HAQ start from a trained network; every agent episode, baseline and benchmark seed of the same
network reuses one training run. Weights are cached as a state dict under ``$HWSEARCH_CACHE`` (default
``~/.cache/hwsearch``), written atomically and read back with ``weights_only`` loading, beside a JSON of
the training result; a lock keeps two processes from training the same network at once.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hwsearch import spaces
from hwsearch.cache import cache_root as cache_dir
from hwsearch.data import Dataset, load_data
from hwsearch.errors import CorruptTable
from hwsearch.io import atomic_write_bytes, atomic_write_json, file_lock
from hwsearch.train import Recipe, train_and_evaluate


@dataclass(frozen=True, eq=False)
class TrainedNetwork:
    """A trained module with the choice, data and accuracies it came from."""

    space: str
    choice: Mapping[str, Any]
    model: torch.nn.Module
    data: Dataset
    input_shape: tuple[int, int, int]
    val_acc: float
    test_acc: float
    seed: int


def trained_network(space: str, choice: Mapping[str, Any] | str = "largest", data: str = "digits",
                    seed: int = 0, recipe: Recipe | None = None, root: Path | None = None,
                    space_options: Mapping[str, Any] | None = None, data_seed: int | None = None) -> TrainedNetwork:
    """The network ``choice`` (or a reference name) of ``space``, trained on ``data`` under ``seed``
    (the data split under ``data_seed``, default ``seed``)."""
    data_seed = seed if data_seed is None else data_seed
    dataset = load_data(data, seed=data_seed)
    options = dict(space_options or {})
    sp = spaces.get(space, **{"in_channels": dataset.channels, "num_classes": dataset.num_classes, **options})
    choice = sp.reference(choice) if isinstance(choice, str) else sp.validate(choice)
    recipe = recipe or Recipe()
    input_shape = sp.input_shape(choice)
    dataset = dataset.at_resolution(sp.data_resolution(choice))
    # format 2: residual blocks start from zero (a different trained network for the same recipe).
    # Recipe settings at their defaults are left out, so a setting added later with a default that
    # keeps the old behaviour leaves cached networks valid.
    ident = {"format": 2, "space": space, "choice": choice, "data": data, "seed": seed,
             "recipe": recipe.model_dump(exclude_defaults=True), "input_shape": list(input_shape)}
    if options or data_seed != seed:
        ident.update(space_options=options, data_seed=data_seed)
    # The architecture itself: a space whose definition changes gets a new key, not a stale state dict.
    ident["netspec"] = sp.to_netspec(choice).key
    key = hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:20]
    folder = (root or cache_dir()) / "trained"
    weights, meta = folder / f"{key}.pt", folder / f"{key}.json"
    model = sp.build(choice)
    with file_lock(folder / f"{key}.lock"):
        if weights.exists() and meta.exists():
            try:
                state = torch.load(weights, map_location="cpu", weights_only=True)
                model.load_state_dict(state)
                result = json.loads(meta.read_text())
            except (OSError, RuntimeError, json.JSONDecodeError, KeyError) as e:
                raise CorruptTable(f"cached network {weights} is unreadable ({e}); delete it to retrain") from None
        else:
            torch.manual_seed(seed)
            model = sp.build(choice)
            res = train_and_evaluate(model, dataset, seed=seed, recipe=recipe)
            buf = io.BytesIO()
            torch.save(model.state_dict(), buf)
            atomic_write_bytes(weights, buf.getvalue())
            result = {**ident, "val_acc": res.val_acc, "test_acc": res.test_acc, "train_time_s": res.train_time_s}
            atomic_write_json(meta, result)
    model.eval()
    return TrainedNetwork(space, choice, model, dataset, input_shape, float(result["val_acc"]),
                          float(result["test_acc"]), seed)


__all__ = ["TrainedNetwork", "cache_dir", "trained_network"]
