"""The search-space contract: a choice is a flat JSON-able dict of genes, each from a fixed list.

A space declares its genes as `Dim`s; sampling, mutation, crossover and the fixed-length numeric
encodings (option indices for Optuna and evolution, one-hot for predictors) are the same for every
space and live here. A space only says how a choice becomes a `NetSpec` and a `torch.nn.Module`.
Genes that a choice does not use (the kernel of a block skipped by a shallower depth) still exist, as
in Once-for-All's encoding, so that every choice of a space has the same length.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hwsearch.errors import ConfigError, SpecError, UnknownName
from hwsearch.ir import NetSpec

if TYPE_CHECKING:
    import torch

Choice = dict[str, Any]


@dataclass(frozen=True)
class Dim:
    """One gene: its name and the values it may take (JSON scalars), in a meaningful order."""

    name: str
    options: tuple[Any, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "options", tuple(self.options))
        if not self.options:
            raise SpecError(f"gene {self.name!r} has no options")

    def index(self, value: Any) -> int:
        """Position of ``value`` among the options, with a clear error when it is not one."""
        try:
            return self.options.index(value)
        except ValueError:
            raise SpecError(
                f"gene {self.name!r} = {value!r} is not allowed; options: {list(self.options)}"
            ) from None


class SearchSpace(ABC):
    """A family of networks: genes (`dims`), plus how a choice becomes a NetSpec and a module."""

    name: str = ""
    dims: tuple[Dim, ...] = ()

    # ---- what each space provides ------------------------------------------------------------
    @abstractmethod
    def to_netspec(self, choice: Mapping[str, Any], batch: int = 1) -> NetSpec:
        """The exact compute layers of the network ``choice`` describes (no torch needed)."""

    @abstractmethod
    def build(self, choice: Mapping[str, Any]) -> torch.nn.Module:
        """A freshly initialised ``torch.nn.Module`` for ``choice``."""

    @abstractmethod
    def references(self) -> list[str]:
        """Names of the reference choices (at least ``largest`` and ``smallest``)."""

    @abstractmethod
    def reference(self, name: str) -> Choice:
        """A named reference choice."""

    def input_shape(self, choice: Mapping[str, Any]) -> tuple[int, int, int]:
        """(channels, height, width) of one input sample for ``choice``."""
        return self.to_netspec(choice).input_shape

    def data_resolution(self, choice: Mapping[str, Any]) -> int:
        """The data resolution ``choice`` reads (`hwsearch.data.Dataset.at_resolution`): see `input_resolution`."""
        return input_resolution(self.input_shape(choice))

    def notation(self, choice: Mapping[str, Any]) -> str | None:
        """The space's own short name for ``choice`` (NAS-Bench-201's arch string), or None."""
        return None

    @property
    def num_classes(self) -> int:
        """Classes of the classifier head."""
        return int(getattr(self, "_num_classes", 10))

    # ---- shared by every space ---------------------------------------------------------------
    @property
    def dim_names(self) -> list[str]:
        """Gene names in encoding order."""
        return [d.name for d in self.dims]

    def validate(self, choice: Mapping[str, Any]) -> Choice:
        """Return ``choice`` as a plain dict after checking every gene is present and allowed."""
        missing = [d.name for d in self.dims if d.name not in choice]
        extra = sorted(set(choice) - set(self.dim_names))
        if missing or extra:
            raise SpecError(
                f"choice for space {self.name!r} is missing genes {missing[:5]} / has unknown genes {extra[:5]}"
            )
        for d in self.dims:
            d.index(choice[d.name])
        return {d.name: choice[d.name] for d in self.dims}

    def sample(self, rng: np.random.Generator) -> Choice:
        """A uniformly random choice."""
        return {d.name: _py(d.options[rng.integers(len(d.options))]) for d in self.dims}

    def mutate(self, choice: Mapping[str, Any], rng: np.random.Generator, prob: float = 0.1) -> Choice:
        """Resample each gene with probability ``prob``, forcing at least one gene to change."""
        out = dict(self.validate(choice))
        changed = False
        for d in self.dims:
            if len(d.options) > 1 and rng.random() < prob:
                out[d.name] = _py(d.options[rng.integers(len(d.options))])
                changed |= out[d.name] != choice[d.name]
        if not changed:
            free = [d for d in self.dims if len(d.options) > 1]
            if free:
                d = free[rng.integers(len(free))]
                others = [o for o in d.options if o != out[d.name]]
                out[d.name] = _py(others[rng.integers(len(others))])
        return out

    def crossover(self, a: Mapping[str, Any], b: Mapping[str, Any], rng: np.random.Generator) -> Choice:
        """Uniform crossover: each gene from either parent with equal chance."""
        a, b = self.validate(a), self.validate(b)
        pick = rng.random(len(self.dims)) < 0.5
        return {d.name: (a if p else b)[d.name] for d, p in zip(self.dims, pick, strict=True)}

    def encode(self, choice: Mapping[str, Any]) -> np.ndarray:
        """Fixed-length integer vector: the option index of every gene."""
        choice = self.validate(choice)
        return np.array([d.index(choice[d.name]) for d in self.dims], dtype=np.int64)

    def decode(self, indices: Sequence[int]) -> Choice:
        """Inverse of `encode`."""
        if len(indices) != len(self.dims):
            raise SpecError(f"space {self.name!r} needs {len(self.dims)} indices, got {len(indices)}")
        out = {}
        for d, i in zip(self.dims, indices, strict=True):
            i = int(i)
            if not 0 <= i < len(d.options):
                raise SpecError(f"gene {d.name!r}: index {i} outside 0..{len(d.options) - 1}")
            out[d.name] = _py(d.options[i])
        return out

    def one_hot(self, choice: Mapping[str, Any]) -> np.ndarray:
        """Fixed-length one-hot vector (concatenated per gene), the input of accuracy predictors."""
        idx = self.encode(choice)
        parts = []
        for d, i in zip(self.dims, idx, strict=True):
            v = np.zeros(len(d.options), dtype=np.float32)
            v[i] = 1.0
            parts.append(v)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def reference_or_error(self, name: str, refs: Mapping[str, Choice]) -> Choice:
        """Look ``name`` up among ``refs`` with the error every space gives for an unknown one."""
        try:
            return dict(refs[name])
        except KeyError:
            raise UnknownName(
                f"space {self.name!r} has no reference {name!r}; known: {', '.join(sorted(refs))}"
            ) from None


class MinMiddleMaxReferences:
    """References of a space whose genes are all sizes (`vit`, `gpt`): ``largest``, ``smallest`` and
    ``middle``, every gene at its top, bottom or middle option."""

    dims: tuple[Dim, ...]

    def _refs(self) -> dict[str, Choice]:
        def pick(f) -> Choice:
            return {d.name: f(d.options) for d in self.dims}

        return {"largest": pick(max), "smallest": pick(min),
                "middle": pick(lambda options: options[(len(options) - 1) // 2])}

    def references(self) -> list[str]:
        """``largest``, ``smallest`` and ``middle`` (the middle option of every gene)."""
        return list(self._refs())

    def reference(self, name: str) -> Choice:
        """A named reference choice."""
        return self.reference_or_error(name, self._refs())  # type: ignore[attr-defined]


def input_resolution(input_shape: Sequence[int]) -> int:
    """The resolution of a sample shaped ``input_shape``: its last dim, an image's side or a token window's length."""
    # Images are square, so their width is their height; a (1, 1, context) window's length is its width.
    return int(input_shape[-1])


def positive_options(space: str, field: str, values: Sequence[Any], integer: bool) -> tuple[Any, ...]:
    """The distinct positive numbers of a space setting ``field``, sorted (a `ConfigError` names a bad one)."""
    values = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    if not values or len(set(values)) != len(values):
        raise ConfigError(f"{space}: {field}={list(values)!r} must be a non-empty list without repeats")
    out = []
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 or (integer and v != int(v)):
            kind = "positive integer" if integer else "positive number"
            raise ConfigError(f"{space}: {field} entry {v!r} must be a {kind}")
        out.append(int(v) if float(v).is_integer() else float(v))
    return tuple(sorted(out))


def _py(value: Any) -> Any:
    """Plain Python scalar (numpy scalars are not JSON-able)."""
    return value.item() if hasattr(value, "item") else value
