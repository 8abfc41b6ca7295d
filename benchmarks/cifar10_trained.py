"""Train-from-scratch results of the CIFAR-10 benchmarks, kept in a file so no network is trained twice.

`benchmarks/cifar10_shapes.py` and `benchmarks/cifar10_references.py` both train ofa-mbv3's
``mbv3-like`` under the cifar10 profile with the same recipe, data and seed; on CPU that training is
deterministic, so the second script reads the first one's result instead of spending the same
minutes again. The key holds everything the result depends on.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from hwsearch import spaces
from hwsearch.data import Dataset
from hwsearch.io import atomic_write_text, file_lock
from hwsearch.train import Recipe, train_and_evaluate

STORE = Path(__file__).resolve().parent.parent / "runs" / "benchmarks" / "cifar10" / "trained.json"


def train_once(space: str, options: dict[str, Any], choice: dict[str, Any], data: Dataset, source: str,
               recipe: Recipe, seed: int) -> dict[str, float]:
    """test_acc, val_acc, train_time_s and cpu_s of ``choice`` trained from scratch: from the store, or trained now."""
    sp = spaces.get(space, **options)
    key = json.dumps([space, sp.to_netspec(choice).key, dict(sorted(choice.items())), source, recipe.model_dump(),
                      seed, torch.__version__], sort_keys=True, default=str)
    known = _read()
    if key in known:
        return known[key]
    torch.manual_seed(seed)  # the initial weights too depend on the seed alone, not on what ran before
    cpu = time.process_time()
    result = train_and_evaluate(sp.build(choice), data, seed=seed, recipe=recipe, resolution=sp.input_shape(choice)[1])
    # CPU seconds as well as wall seconds: on a shared machine the wall clock mostly measures the neighbours.
    row = {"test_acc": result.test_acc, "val_acc": result.val_acc, "train_time_s": result.train_time_s,
           "cpu_s": time.process_time() - cpu}
    with file_lock(STORE.with_suffix(".lock")):
        known = _read()
        known[key] = row
        STORE.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(STORE, json.dumps(known, indent=1))
    return row


def _read() -> dict[str, dict[str, float]]:
    return json.loads(STORE.read_text()) if STORE.exists() else {}
