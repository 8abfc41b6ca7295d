"""Trained supernets cached on disk under a key of (space and its settings, data, schedule, seed).

A run that asks for a supernet gets the cached one when its key matches and trains (then stores) it
otherwise. Checkpoints are written atomically (`hwsearch.io`), so a crash leaves no half-written
file under the key; one that is unreadable anyway (truncated by hand, another version) is reported
with a warning and retrained, never used. Concurrent runs asking for the same key wait on a file
lock and reuse the one that finished first. Files hold tensors and JSON text only and are read with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hwsearch import spaces
from hwsearch.cache import cache_root as cache_dir
from hwsearch.data import Dataset, load_data
from hwsearch.errors import CorruptTable
from hwsearch.io import atomic_write_bytes, file_lock
from hwsearch.spaces.profiles import with_profile
from hwsearch.spaces.supernet.supernet import SuperNet
from hwsearch.spaces.supernet.training import PhaseLog, Schedule, TrainingLog, schedule, train_supernet

FORMAT_VERSION = 4  # 2: elastic phases no longer warm up; 3: zero-init residual blocks; 4: seeded init



def space_kwargs_for(data: Dataset, space_kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The space settings with input channels and classes taken from ``data`` unless given."""
    kw = dict(space_kwargs or {})
    kw.setdefault("in_channels", data.channels)
    kw.setdefault("num_classes", data.num_classes)
    return kw


def supernet_key(space: str, space_kwargs: Mapping[str, Any], data: str, plan: Schedule, seed: int,
                 data_seed: int = 0) -> str:
    """Stable digest of everything that changes a trained supernet (a space profile counts by its settings)."""
    # Settings at their defaults are left out: a setting added later, whose default keeps the old
    # behaviour, then leaves every cached supernet valid.
    text = json.dumps({"format": FORMAT_VERSION, "space": space, "space_kwargs": with_profile(space, space_kwargs),
                       "data": data, "data_seed": int(data_seed),
                       "schedule": plan.model_dump(mode="json", exclude_defaults=True), "seed": int(seed)},
                      sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CachedSupernet:
    """A trained supernet, where it is stored, and whether this call trained it."""

    supernet: SuperNet
    data: Dataset
    key: str
    path: Path
    log: TrainingLog
    trained_now: bool
    space_options: dict[str, Any]

    @property
    def space(self) -> spaces.SearchSpace:
        """The supernet's space."""
        return self.supernet.space


def save_supernet(path: str | os.PathLike, supernet: SuperNet, meta: Mapping[str, Any]) -> None:
    """Write ``supernet``'s weights and JSON ``meta`` to ``path`` atomically."""
    buf = io.BytesIO()
    state = {k: v.detach().cpu() for k, v in supernet.state_dict().items()}
    torch.save({"format": FORMAT_VERSION, "meta": json.dumps(dict(meta)), "state": state}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_supernet_state(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and meta of a checkpoint; any unreadable or foreign file raises `CorruptTable`."""
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(blob, dict) or blob.get("format") != FORMAT_VERSION:
            raise CorruptTable(f"{path} is not a supernet checkpoint of format {FORMAT_VERSION}")
        return blob["state"], json.loads(blob["meta"])
    except CorruptTable:
        raise
    except Exception as e:  # truncated zip, unpickling refusal, bad JSON: all mean "do not use"
        raise CorruptTable(f"supernet checkpoint {path} is unreadable ({type(e).__name__}: {e})") from None


def initial_supernet(space: spaces.SearchSpace, seed: int) -> SuperNet:
    """The untrained supernet of ``space``, its weights drawn from ``seed`` alone (not from the caller's RNG state)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return SuperNet(space)


def load_or_train(
    space: str,
    data: str = "digits",
    plan: str | Mapping[str, Any] | Schedule = "fast",
    seed: int = 0,
    space_kwargs: Mapping[str, Any] | None = None,
    progress: bool = False,
    on_phase: Callable[[PhaseLog], None] | None = None,
    root: str | os.PathLike | None = None,
    data_seed: int = 0,
) -> CachedSupernet:
    """The trained supernet of ``space`` on ``data`` (split under ``data_seed``): cached, or trained and cached."""
    plan = schedule(plan, space)
    dataset = load_data(data, seed=data_seed)
    kwargs = space_kwargs_for(dataset, space_kwargs)
    sp = spaces.get(space, **kwargs)
    key = supernet_key(space, kwargs, data, plan, seed, data_seed)
    folder = Path(root) if root is not None else cache_dir() / "supernets"
    path = folder / f"{space}-{key}.pt"
    supernet = initial_supernet(sp, seed)
    with file_lock(folder / f"{space}-{key}.lock"):
        if path.exists():
            try:
                state, meta = load_supernet_state(path)
                supernet.load_state_dict(state, strict=True)
                supernet.eval()
                return CachedSupernet(supernet, dataset, key, path, TrainingLog.from_dict(meta.get("log", {})), False,
                                      kwargs)
            except (CorruptTable, RuntimeError) as e:
                warnings.warn(f"{e}; training the supernet again", stacklevel=2)
                supernet = initial_supernet(sp, seed)
        log = train_supernet(supernet, dataset, plan, seed=seed, progress=progress, on_phase=on_phase)
        meta = {"space": space, "space_kwargs": kwargs, "data": data, "data_seed": data_seed, "seed": seed,
                "schedule": plan.model_dump(mode="json"), "log": log.to_dict()}
        save_supernet(path, supernet, meta)
    return CachedSupernet(supernet, dataset, key, path, log, True, kwargs)


__all__ = ["CachedSupernet", "FORMAT_VERSION", "cache_dir", "initial_supernet", "load_or_train", "load_supernet_state",
           "save_supernet", "space_kwargs_for", "supernet_key"]
