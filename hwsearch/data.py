"""Offline image-classification data: a registry of sources, fixed seeded splits, per-resolution copies.

Nothing here touches the network. The default source is scikit-learn's bundled digits (1,797 real 8x8
grey images, 10 classes); users bring their own data as ``npz:PATH`` (arrays ``x`` and ``y``) or
``imagefolder:PATH`` (one sub-folder of images per class), and CIFAR-10 as ``cifar10[:PATH]``
(`hwsearch.datasets.cifar10`). A source string is ``name``, ``name:argument`` or
``name:argument?key=value&...`` (options, for sources that take them); adding a source is one
function decorated with `register`.

Most sources yield float32 images in [0, 1], shaped (N, C, H, W), which are split into
train/val/test under a seed (stratified by class). A data set with an official test split returns a
`Presplit` instead: its test split is kept as published and validation is held out of its training
split. Data that is not images and labels (a text corpus, `hwsearch.datasets.tinyshakespeare`) comes
as a `SelfSplit`, which cuts itself into a `Dataset` under the seed. Either way images are then standardised per channel with the training split's statistics. Spaces whose choices differ in input resolution (OFA's ``resolution``
gene) read `Dataset.at_resolution`, which resizes bilinearly and caches each resolution once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hwsearch.augment import CropFlip
from hwsearch.errors import DataError, UnknownName

VAL_FRACTION = 0.15
TEST_FRACTION = 0.2
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train/val/test tensors of one data source, standardised, all at one resolution."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    class_names: tuple[str, ...] = ()
    seed: int = 0
    augment: CropFlip | None = None     # the data set's own training augmentation (None: the recipe's shift)
    _resized: dict[int, Dataset] = field(default_factory=dict, repr=False, compare=False)

    @property
    def channels(self) -> int:
        """Image channels (1 for grey, 3 for colour)."""
        return int(self.x_train.shape[1])

    @property
    def resolution(self) -> int:
        """Image height (images are square after loading)."""
        return int(self.x_train.shape[2])

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of one sample."""
        return (self.channels, self.resolution, self.resolution)

    @property
    def sizes(self) -> dict[str, int]:
        """Number of samples per split."""
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Images and labels of split ``name`` (train, val or test)."""
        if name not in ("train", "val", "test"):
            raise DataError(f"split {name!r} is unknown; use train, val or test")
        return getattr(self, f"x_{name}"), getattr(self, f"y_{name}")

    def at_resolution(self, resolution: int) -> Dataset:
        """The same data resized to ``resolution`` x ``resolution`` (bilinear), computed once per size."""
        resolution = int(resolution)
        if resolution < 1:
            raise DataError(f"resolution {resolution} must be a positive integer")
        if resolution == self.resolution:
            return self
        cached = self._resized.get(resolution)
        if cached is None:
            cached = Dataset(
                name=self.name,
                x_train=_resize(self.x_train, resolution),
                y_train=self.y_train,
                x_val=_resize(self.x_val, resolution),
                y_val=self.y_val,
                x_test=_resize(self.x_test, resolution),
                y_test=self.y_test,
                num_classes=self.num_classes,
                class_names=self.class_names,
                seed=self.seed,
                augment=self.augment,
            )
            self._resized[resolution] = cached
        return cached

    def loader(self, split: str, batch_size: int, shuffle: bool = False, seed: int = 0) -> Iterator[
            tuple[torch.Tensor, torch.Tensor]]:
        """Mini-batches of a split; with ``shuffle`` the order depends only on ``seed``."""
        x, y = self.split(split)
        yield from batches(x, y, batch_size, shuffle=shuffle, seed=seed)


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, shuffle: bool = False,
            seed: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Mini-batches of in-memory tensors (a DataLoader's workers cost more than they save here)."""
    n = len(y)
    if shuffle:
        order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    else:
        order = torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size]
        yield x[idx], y[idx]


def _resize(x: torch.Tensor, resolution: int) -> torch.Tensor:
    antialias = resolution < x.shape[-1]
    return F.interpolate(x, size=(resolution, resolution), mode="bilinear", align_corners=False,
                         antialias=antialias).contiguous()


# ---- sources --------------------------------------------------------------------------------------
# A source returns raw images in [0, 1] as (N, C, H, W) float32, integer labels, and class names,
# or a `Presplit` when the data set publishes its own test split.
Raw = tuple[np.ndarray, np.ndarray, tuple[str, ...]]


@dataclass(frozen=True, eq=False)
class Presplit:
    """A data set published as train and test splits of uint8 (N, C, H, W) images, and how to use them."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    val_per_class: int                  # held out of the training split, per class
    train_subset: int | None = None     # train on this many of the rest (stratified), None: all
    augment: CropFlip | None = None     # fill is replaced by black in standardised units


class SelfSplit(ABC):
    """What a source returns when it splits its own data under the seed (a text corpus, cut contiguously)."""

    @abstractmethod
    def split(self, name: str, seed: int) -> Dataset:
        """The train/val/test `Dataset` of source ``name`` under ``seed``."""


Source = Callable[[str | None], "Raw | Presplit | SelfSplit"]
SOURCES: dict[str, Source] = {}


def register(name: str) -> Callable[[Source], Source]:
    """Decorator adding a data source under ``name``; it receives the text after ``name:`` (or None)."""

    def add(fn: Source) -> Source:
        SOURCES[name] = fn
        return fn

    return add


def names() -> list[str]:
    """Registered data source names, sorted."""
    return sorted(SOURCES)


def load_data(source: str = "digits", seed: int = 0, resolution: int | None = None) -> Dataset:
    """Load ``source`` (``digits``, ``npz:PATH``, ``imagefolder:PATH``, ``cifar10[:PATH]``, ``tinyshakespeare[:PATH]``) and split it under ``seed``."""
    if not isinstance(source, str) or not source:
        raise DataError(f"data source {source!r} must be a non-empty string such as 'digits' or 'npz:PATH'")
    name, arg = _parse_source(source)
    try:
        fn = SOURCES[name]
    except KeyError:
        raise UnknownName(
            f"unknown data source {name!r}; known: {', '.join(names())} (use NAME or NAME:PATH)"
        ) from None
    raw = fn(arg or None)
    if isinstance(raw, SelfSplit):
        data = raw.split(source, seed)
    elif isinstance(raw, Presplit):
        data = _split_presplit(source, raw, seed)
    else:
        x, y, class_names = raw
        data = _split(source, x, y, class_names, seed)
    return data.at_resolution(resolution) if resolution else data


def _parse_source(source: str) -> tuple[str, str]:
    # The name ends at the first ':' or '?': 'cifar10?train_subset=N' passes '?train_subset=N' on.
    cut = min((i for i in (source.find(":"), source.find("?")) if i >= 0), default=len(source))
    name, rest = source[:cut], source[cut:]
    return name, rest[1:] if rest.startswith(":") else rest


@register("digits")
def _digits(arg: str | None) -> Raw:
    """scikit-learn's bundled 8x8 handwritten digits (ships with the package, no download)."""
    if arg:
        raise DataError(f"data source 'digits' takes no argument, got {arg!r}")
    from sklearn.datasets import load_digits

    d = load_digits()
    x = (d.images.astype(np.float32) / 16.0)[:, None]
    return x, d.target.astype(np.int64), tuple(str(t) for t in d.target_names)


@register("npz")
def _npz(arg: str | None) -> Raw:
    """A NumPy ``.npz`` with ``x`` (N,H,W / N,C,H,W / N,H,W,C; uint8 or float in [0,1]) and ``y``."""
    path = _existing(arg, "npz", "a .npz file with arrays x and y")
    try:
        with np.load(path, allow_pickle=False) as f:
            if "x" not in f or "y" not in f:
                raise DataError(f"{path} must hold arrays 'x' and 'y'; it holds {sorted(f.files)}")
            x, y = f["x"], f["y"]
    except DataError:
        raise
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path} as .npz: {e}") from None
    x = _to_nchw(x, str(path))
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{path}: y must be one label per image ({len(x)}), got shape {y.shape}")
    labels, y_idx = np.unique(y, return_inverse=True)
    return x, y_idx.astype(np.int64), tuple(str(v) for v in labels)


@register("imagefolder")
def _imagefolder(arg: str | None) -> Raw:
    """A folder with one sub-folder of images per class (sub-folder names are the class names)."""
    from PIL import Image, UnidentifiedImageError

    root = _existing(arg, "imagefolder", "a folder with one sub-folder of images per class")
    if not root.is_dir():
        raise DataError(f"{root} is not a folder; imagefolder needs one sub-folder of images per class")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [(f, i) for i, c in enumerate(classes) for f in sorted((root / c).iterdir())
             if f.suffix.lower() in IMAGE_SUFFIXES]
    if len(classes) < 2 or not files:
        raise DataError(f"{root} needs at least two class sub-folders holding images ({', '.join(IMAGE_SUFFIXES)})")
    images = []
    for f, _ in files:
        try:
            with Image.open(f) as im:
                images.append(im.convert("RGB") if im.mode not in ("L", "1", "I;16") else im.convert("L"))
        except (OSError, UnidentifiedImageError) as e:
            raise DataError(f"cannot read image {f}: {e}") from None
    mode = "RGB" if any(im.mode == "RGB" for im in images) else "L"
    sizes = [im.size for im in images]
    size = max(set(sizes), key=sizes.count)  # the most common size; others are resized to it
    arrays = [np.asarray(im.convert(mode).resize(size, Image.BILINEAR), dtype=np.float32) / 255.0
              for im in images]
    x = np.stack(arrays)
    x = x[:, None] if mode == "L" else x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x), np.array([i for _, i in files], dtype=np.int64), tuple(classes)


def _existing(arg: str | None, source: str, what: str) -> Path:
    if not arg:
        raise DataError(f"data source {source!r} needs a path: '{source}:PATH' ({what})")
    path = Path(arg).expanduser()
    if not path.exists():
        raise DataError(f"{source} path {path} does not exist")
    return path


def _to_nchw(x: np.ndarray, where: str) -> np.ndarray:
    if x.dtype == object or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise DataError(f"{where}: x must be numeric, got dtype {x.dtype}")
    scale = 255.0 if x.dtype == np.uint8 else 1.0
    x = x.astype(np.float32) / scale
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[1] not in (1, 3) and x.shape[-1] in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise DataError(f"{where}: x must be (N,H,W), (N,C,H,W) or (N,H,W,C) with C 1 or 3, got {x.shape}")
    if x.shape[2] != x.shape[3]:
        raise DataError(f"{where}: images must be square, got {x.shape[2]}x{x.shape[3]}")
    if not np.isfinite(x).all():
        raise DataError(f"{where}: x holds NaN or infinite values")
    return np.ascontiguousarray(x)


def _split(name: str, x: np.ndarray, y: np.ndarray, class_names: tuple[str, ...], seed: int) -> Dataset:
    from sklearn.model_selection import train_test_split

    n = len(y)
    counts = np.bincount(y)
    if n < 10:
        raise DataError(f"data source {name!r} has {n} samples; at least 10 are needed for train/val/test")
    if x.shape[2] != x.shape[3]:
        raise DataError(f"data source {name!r}: images must be square, got {x.shape[2]}x{x.shape[3]}")
    # Stratify when every class can appear in every split; tiny user sets fall back to a plain shuffle.
    strat = counts.min() >= 3
    idx = np.arange(n)
    rest, test = train_test_split(idx, test_size=TEST_FRACTION, random_state=seed,
                                  stratify=y if strat else None)
    train, val = train_test_split(rest, test_size=VAL_FRACTION / (1 - TEST_FRACTION), random_state=seed,
                                  stratify=y[rest] if strat else None)
    mean = x[train].mean(axis=(0, 2, 3), keepdims=True)
    std = x[train].std(axis=(0, 2, 3), keepdims=True) + 1e-6
    xs = ((x - mean) / std).astype(np.float32)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a))

    return Dataset(
        name=name,
        x_train=t(xs[train]), y_train=t(y[train]),
        x_val=t(xs[val]), y_val=t(y[val]),
        x_test=t(xs[test]), y_test=t(y[test]),
        num_classes=len(class_names) if class_names else int(y.max()) + 1,
        class_names=class_names,
        seed=seed,
    )


def _split_presplit(name: str, p: Presplit, seed: int) -> Dataset:
    """Hold ``val_per_class`` images per class out of the published training split; keep its test split."""
    counts = np.bincount(p.y_train, minlength=len(p.class_names))
    if counts.min() <= p.val_per_class:
        raise DataError(f"data source {name!r}: a class has {counts.min()} training images, not more than "
                        f"the {p.val_per_class} per class held out for validation; lower val_per_class")
    rng = np.random.default_rng(seed)
    val_parts, rest_parts = [], []
    for c in range(len(counts)):
        idx = rng.permutation(np.flatnonzero(p.y_train == c))
        val_parts.append(idx[:p.val_per_class])
        rest_parts.append(idx[p.val_per_class:])
    val, train = np.sort(np.concatenate(val_parts)), np.sort(np.concatenate(rest_parts))
    if p.train_subset is not None:
        if not len(counts) <= p.train_subset <= len(train):
            raise DataError(f"data source {name!r}: train_subset={p.train_subset} must be between "
                            f"{len(counts)} and the {len(train)} training images left after validation")
        if p.train_subset < len(train):
            from sklearn.model_selection import train_test_split

            train, _ = train_test_split(train, train_size=p.train_subset, random_state=seed,
                                        stratify=p.y_train[train])
            train = np.sort(train)
    # uint8 stays uint8 until each split is converted, so the float copies exist once (no 2x peak).
    x_train = torch.from_numpy(p.x_train[train]).float().div_(255.0)
    var, mean = torch.var_mean(x_train, dim=(0, 2, 3), correction=0, keepdim=True)
    std = var.sqrt() + 1e-6
    x_train.sub_(mean).div_(std)

    def standardised(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x)).float().div_(255.0).sub_(mean).div_(std)

    augment = p.augment
    if augment is not None:  # black borders, as padding raw images before standardising would give
        augment = CropFlip(augment.padding_share, tuple((-mean / std).flatten().tolist()), augment.flip)
    return Dataset(
        name=name,
        x_train=x_train, y_train=torch.from_numpy(p.y_train[train].astype(np.int64)),
        x_val=standardised(p.x_train[val]), y_val=torch.from_numpy(p.y_train[val].astype(np.int64)),
        x_test=standardised(p.x_test), y_test=torch.from_numpy(p.y_test.astype(np.int64)),
        num_classes=len(p.class_names),
        class_names=p.class_names,
        seed=seed,
        augment=augment,
    )


__all__ = ["Dataset", "Presplit", "SOURCES", "SelfSplit", "batches", "load_data", "names", "register"]
from hwsearch.datasets import cifar10 as _cifar10  # noqa: E402,F401  (registers "cifar10")
from hwsearch.datasets import tinyshakespeare as _tinyshakespeare  # noqa: E402,F401  (registers "tinyshakespeare")
