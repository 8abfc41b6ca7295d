"""Unpickling that can build numpy arrays and nothing else.

Some published data sets (CIFAR-10's python batches) are pickles. A pickle can name any importable
callable and run it while loading, so a tampered file could run code; this unpickler resolves only
the globals a pickled numpy array needs and refuses every other one.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

import numpy as np

try:  # numpy 2 moved the implementation; pickles written by numpy 1 still name numpy.core
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core.multiarray import _reconstruct

ALLOWED: dict[tuple[str, str], Any] = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
}


class ArrayUnpickler(pickle.Unpickler):
    """A `pickle.Unpickler` whose only globals are numpy's array reconstructor, ndarray and dtype."""

    def find_class(self, module: str, name: str) -> Any:
        """The allowed global ``module.name``; any other raises `pickle.UnpicklingError`."""
        try:
            return ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def load_arrays(data: bytes) -> Any:
    """Unpickle ``data`` (Python 2 strings become bytes) allowing numpy arrays and plain containers only."""
    return ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()


__all__ = ["ALLOWED", "ArrayUnpickler", "load_arrays"]
