"""CIFAR-10 from a local copy: the official python archive or a JPEG image tree, decoded once and cached.

The source string is ``cifar10`` or ``cifar10:PATH``, optionally followed by ``?key=value&...``:
``train_subset=N`` (train on N of the 45,000 images left after validation, stratified),
``val_per_class=N`` (default 500, i.e. the usual 5,000-image validation split) and
``augment=crop-flip|none`` (default crop-flip: 4-pixel padded random crops and horizontal flips).
The official 10,000-image test split is kept as published.

PATH (or, without one, ``$HWSEARCH_DATA``, then ``<cache>/datasets``) may hold any of:
``cifar-10-python.tar.gz`` or its extracted ``cifar-10-batches-py/`` (the official pickled batches),
``cifar10-jpeg.tar.gz`` or a folder with ``train/<class>/*.jpg`` and ``test/<class>/*.jpg``. Nothing
is downloaded unless asked for: `download_cifar10`, ``hwsearch data download cifar10``, or
``HWSEARCH_ALLOW_DOWNLOAD=1`` when no copy is found.

The pickled batches are read with `hwsearch.datasets.safe_pickle` (numpy arrays only, no other
globals). Decoded images are cached as uint8 arrays in one ``.npz`` under the cache root
(``$HWSEARCH_CACHE``, default ``~/.cache/hwsearch``), keyed by the copy's path, sizes and
modification times, written atomically and read back without pickle; archives are streamed, never
extracted to disk.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tarfile
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from hwsearch.augment import CropFlip
from hwsearch.cache import cache_root
from hwsearch.data import Presplit, register
from hwsearch.datasets.locate import data_dirs
from hwsearch.datasets.safe_pickle import load_arrays
from hwsearch.errors import DataError
from hwsearch.io import atomic_writer, file_lock

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
ARCHIVE = "cifar-10-python.tar.gz"
BATCHES_DIR = "cifar-10-batches-py"
JPEG_ARCHIVE = "cifar10-jpeg.tar.gz"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"  # published on the data set's page
VAL_PER_CLASS = 500
FORMAT_VERSION = 1  # of the decoded cache file
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
OPTIONS = ("augment", "train_subset", "val_per_class")


@dataclass(frozen=True, eq=False)
class Cifar10Arrays:
    """Decoded CIFAR-10: uint8 (N, 3, 32, 32) images and int64 labels of the published splits."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...] = CLASSES


# ---- where a copy is ------------------------------------------------------------------------------
def _kind(path: Path) -> str | None:
    """'tar', 'batches' or 'jpeg' for something that looks like a copy, else None."""
    if path.is_file():
        return "tar" if path.name.endswith((".tar.gz", ".tgz", ".tar")) else None
    if path.is_dir():
        if any((path / n).is_file() for n in (*TRAIN_BATCHES, "test_batch")):
            return "batches"
        if (path / "train").is_dir() or (path / "test").is_dir():
            return "jpeg"
    return None


def _candidates(folder: Path) -> Iterator[Path]:
    for base in (folder, folder / "cifar10", folder / "cifar-10"):
        for name in (ARCHIVE, BATCHES_DIR, JPEG_ARCHIVE):
            if _kind(base / name):
                yield base / name
        if base != folder and _kind(base):
            yield base


def find_cifar10(path: str | os.PathLike | None = None) -> Path:
    """The CIFAR-10 copy at ``path`` (a copy or a folder holding one), else in `data_dirs`; `DataError` if none."""
    if path is not None:
        p = Path(path).expanduser()
        if not p.exists():
            raise DataError(f"cifar10 path {p} does not exist")
        if _kind(p):
            return p
        found = next(_candidates(p), None) if p.is_dir() else None
        if found is None:
            raise DataError(f"cifar10 path {p} is not a CIFAR-10 copy; expected {_forms()}")
        return found
    dirs = data_dirs()
    for d in dirs:
        found = next(_candidates(d), None)
        if found is not None:
            return found
    if os.environ.get("HWSEARCH_ALLOW_DOWNLOAD") == "1":
        return download_cifar10(dirs[0])
    raise DataError(
        f"no CIFAR-10 copy found in {' or '.join(str(d) for d in dirs)} (also under cifar10/ there); "
        f"put {_forms()} in one of them, set HWSEARCH_DATA to a folder holding one, use 'cifar10:PATH', "
        "or download it with 'hwsearch data download cifar10' (or HWSEARCH_ALLOW_DOWNLOAD=1)")


def _forms() -> str:
    return f"{ARCHIVE}, {BATCHES_DIR}/, {JPEG_ARCHIVE} or a folder with train/<class>/*.jpg and test/<class>/*.jpg"


# ---- reading --------------------------------------------------------------------------------------
def read_cifar10(copy: str | os.PathLike) -> Cifar10Arrays:
    """Decode a copy (official archive or batches folder, JPEG tarball or tree) without any cache."""
    copy = Path(copy)
    kind = _kind(copy)
    if kind is None:
        raise DataError(f"{copy} is not a CIFAR-10 copy; expected {_forms()}")
    reader = _Reader(str(copy))
    if kind == "tar":
        try:
            with tarfile.open(copy, "r:*") as tar:
                for member in tar:
                    if member.isfile():
                        f = tar.extractfile(member)
                        if f is not None:
                            reader.add(member.name, f)
        except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise DataError(f"cannot read {copy}: truncated or not a tar archive ({e})") from None
    else:
        top = [copy] if kind == "batches" else [copy / "train", copy / "test"]
        for folder in top:
            for f in sorted(folder.rglob("*")) if folder.is_dir() else ():
                if f.is_file():
                    with open(f, "rb") as fh:
                        reader.add(str(f.relative_to(copy)), fh)
    return reader.result()


class _Reader:
    """Collects the files of one copy, whichever its form, and assembles the arrays."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.batches: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.label_names: tuple[str, ...] | None = None
        self.images: dict[str, list[tuple[int, str, np.ndarray]]] = {"train": [], "test": []}
        self.folders: dict[str, set[str]] = {"train": set(), "test": set()}

    def add(self, name: str, f: BinaryIO) -> None:
        parts = name.replace("\\", "/").split("/")
        base = parts[-1]
        if base in TRAIN_BATCHES or base == "test_batch":
            self.batches[base] = self._batch(name, f.read())
        elif base == "batches.meta":
            self.label_names = self._meta(name, f.read())
        elif len(parts) >= 3 and parts[-3] in self.images and base.lower().endswith(IMAGE_SUFFIXES):
            split, cls = parts[-3], parts[-2]
            self.folders[split].add(cls)
            if cls not in CLASSES:
                raise DataError(f"{self.where}: folder {split}/{cls} is not a CIFAR-10 class ({', '.join(CLASSES)})")
            self.images[split].append((CLASSES.index(cls), base, _decode_image(f.read(), f"{self.where}: {name}")))

    def _batch(self, name: str, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        where = f"{self.where}: {name}"
        obj = _unpickle(data, where)
        if not isinstance(obj, dict):
            raise DataError(f"{where} is not a CIFAR-10 batch (a pickled dict), got {type(obj).__name__}")
        obj = {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}
        x, y = obj.get("data"), obj.get("labels")
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
            got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
            raise DataError(f"{where}: 'data' must be a uint8 array of shape (N, 3072), got {got}")
        labels = np.asarray(y) if isinstance(y, (list, np.ndarray)) else None
        if labels is None or labels.shape != (len(x),) or not np.issubdtype(labels.dtype, np.integer) \
                or (len(labels) and (labels.min() < 0 or labels.max() >= len(CLASSES))):
            raise DataError(f"{where}: 'labels' must be {len(x)} integers in 0..9")
        return x.reshape(-1, 3, 32, 32), labels.astype(np.int64)

    def _meta(self, name: str, data: bytes) -> tuple[str, ...]:
        obj = _unpickle(data, f"{self.where}: {name}")
        names = obj.get(b"label_names", obj.get("label_names")) if isinstance(obj, dict) else None
        if not isinstance(names, list) or len(names) != len(CLASSES):
            raise DataError(f"{self.where}: {name} must hold 'label_names', a list of {len(CLASSES)} names")
        return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)

    def result(self) -> Cifar10Arrays:
        if self.batches:
            missing = [n for n in (*TRAIN_BATCHES, "test_batch") if n not in self.batches]
            if missing:
                raise DataError(f"{self.where} lacks {', '.join(missing)} of the official CIFAR-10 batches")
            x_train = np.concatenate([self.batches[n][0] for n in TRAIN_BATCHES])
            y_train = np.concatenate([self.batches[n][1] for n in TRAIN_BATCHES])
            x_test, y_test = self.batches["test_batch"]
            return Cifar10Arrays(x_train, y_train, np.ascontiguousarray(x_test), y_test, self.label_names or CLASSES)
        if not any(self.images.values()):
            raise DataError(f"{self.where} holds no CIFAR-10 batches or train/<class>/ and test/<class>/ images")
        arrays = []
        for split in ("train", "test"):
            missing = [c for c in CLASSES if c not in self.folders[split]]
            if missing:
                raise DataError(f"{self.where}: {split}/ lacks images of class folder(s) {', '.join(missing)}; "
                                f"CIFAR-10 needs {split}/<class>/ for all of {', '.join(CLASSES)}")
            items = sorted(self.images[split], key=lambda t: (t[0], t[1]))
            arrays += [np.stack([im for _, _, im in items]), np.array([c for c, _, _ in items], dtype=np.int64)]
        return Cifar10Arrays(*arrays)


def _unpickle(data: bytes, where: str) -> object:
    import pickle

    try:
        return load_arrays(data)
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as e:
        raise DataError(f"{where} is not a readable CIFAR-10 batch ({type(e).__name__}: {e})") from None


def _decode_image(data: bytes, where: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError) as e:
        raise DataError(f"cannot decode image {where}: {e}") from None
    if rgb.shape != (32, 32, 3):
        raise DataError(f"{where} is {rgb.shape[1]}x{rgb.shape[0]}; CIFAR-10 images are 32x32")
    return rgb.transpose(2, 0, 1)


# ---- decoded cache --------------------------------------------------------------------------------
def cache_key(copy: str | os.PathLike) -> str:
    """Digest of a copy's resolved path and the sizes, modification times and inodes of its files."""
    copy = Path(copy).resolve()
    files = [copy] if copy.is_file() else sorted(f for f in copy.rglob("*") if f.is_file())
    # The inode too: a copy moved into place within one timestamp tick has the same size and mtime.
    stats = [(str(f.relative_to(copy)), st.st_size, st.st_mtime_ns, st.st_ino)
             for f in files for st in [f.stat()]]
    text = json.dumps({"format": FORMAT_VERSION, "path": str(copy), "files": stats})
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def cache_path(copy: str | os.PathLike) -> Path:
    """Where the decoded arrays of ``copy`` are (or will be) cached."""
    return cache_root() / "decoded" / f"cifar10-{cache_key(copy)}.npz"


def load_cifar10(path: str | os.PathLike | None = None) -> Cifar10Arrays:
    """Decoded CIFAR-10 from the copy `find_cifar10` finds: from the cache, or decoded and cached once."""
    copy = find_cifar10(path)
    target = cache_path(copy)
    with file_lock(target.with_suffix(".lock")):
        if target.exists():
            try:
                return _read_cache(target)
            except DataError as e:
                warnings.warn(f"{e}; decoding {copy} again", stacklevel=2)
        arrays = read_cifar10(copy)
        with atomic_writer(target) as f:
            np.savez(f, x_train=arrays.x_train, y_train=arrays.y_train, x_test=arrays.x_test,
                     y_test=arrays.y_test, class_names=np.array(arrays.class_names))
    return arrays


def _read_cache(target: Path) -> Cifar10Arrays:
    try:
        with np.load(target, allow_pickle=False) as f:
            arrays = Cifar10Arrays(f["x_train"], f["y_train"], f["x_test"], f["y_test"],
                                   tuple(str(n) for n in f["class_names"]))
    except (OSError, ValueError, KeyError, zlib.error) as e:
        raise DataError(f"decoded CIFAR-10 cache {target} is unreadable ({e})") from None
    for x, y in ((arrays.x_train, arrays.y_train), (arrays.x_test, arrays.y_test)):
        if x.dtype != np.uint8 or x.shape[1:] != (3, 32, 32) or y.shape != (len(x),):
            raise DataError(f"decoded CIFAR-10 cache {target} holds arrays of the wrong shape")
    return arrays


# ---- download (explicit opt-in only) --------------------------------------------------------------
def download_cifar10(dest: str | os.PathLike | None = None) -> Path:
    """Download the official archive into ``dest`` (default: the first of `data_dirs`), checking its md5."""
    import urllib.error
    import urllib.request

    folder = Path(dest).expanduser() if dest is not None else data_dirs()[0]
    target = folder / ARCHIVE
    md5 = hashlib.md5()
    try:
        with urllib.request.urlopen(URL, timeout=60) as response, atomic_writer(target) as f:
            while chunk := response.read(1 << 20):
                md5.update(chunk)
                f.write(chunk)
            if md5.hexdigest() != MD5:  # raising inside the writer leaves no file behind
                raise DataError(f"downloaded {URL} has md5 {md5.hexdigest()}, not the published {MD5}; "
                                "try again or fetch it by hand")
    except (urllib.error.URLError, OSError) as e:
        raise DataError(f"cannot download {URL} ({e}); fetch it by hand into {folder}") from None
    return target


# ---- the source -----------------------------------------------------------------------------------
def parse_options(query: str) -> dict[str, str]:
    """``key=value&key=value`` as a dict; unknown keys raise `DataError`."""
    options: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if not eq or key not in OPTIONS:
            raise DataError(f"cifar10 option {item!r} is unknown; use key=value with keys {', '.join(OPTIONS)}")
        options[key] = value
    return options


def _int_option(options: dict[str, str], key: str, default: int | None) -> int | None:
    if key not in options:
        return default
    if not re.fullmatch(r"\d+", options[key]) or int(options[key]) < 1:
        raise DataError(f"cifar10 option {key}={options[key]!r} must be a positive integer")
    return int(options[key])


@register("cifar10")
def _cifar10(arg: str | None) -> Presplit:
    """CIFAR-10 with its official test split; ``cifar10[:PATH][?train_subset=N&val_per_class=N&augment=none]``."""
    path, query = arg or "", ""
    if "?" in path and "=" in path.rpartition("?")[2]:
        path, _, query = path.rpartition("?")
    options = parse_options(query)
    augment = options.get("augment", "crop-flip")
    if augment not in ("crop-flip", "none"):
        raise DataError(f"cifar10 option augment={augment!r} must be crop-flip or none")
    arrays = load_cifar10(path or None)
    return Presplit(
        arrays.x_train, arrays.y_train, arrays.x_test, arrays.y_test, arrays.class_names,
        val_per_class=_int_option(options, "val_per_class", VAL_PER_CLASS) or VAL_PER_CLASS,
        train_subset=_int_option(options, "train_subset", None),
        augment=CropFlip() if augment == "crop-flip" else None,
    )


__all__ = ["CLASSES", "Cifar10Arrays", "MD5", "cache_key", "cache_path", "data_dirs", "download_cifar10",
           "find_cifar10", "load_cifar10", "parse_options", "read_cifar10"]
