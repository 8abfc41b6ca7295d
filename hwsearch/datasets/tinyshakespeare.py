"""Tiny Shakespeare from a local copy: a character-level language-modelling text cut into token windows.

The source string is ``tinyshakespeare`` or ``tinyshakespeare:PATH``, optionally followed by
``?context=N`` (tokens per window, default 64) and ``stride=N`` (tokens between window starts,
default the context: windows do not overlap). PATH is the text file or a folder holding
``input.txt`` or ``tinyshakespeare/input.txt``; without one, the folders of
`hwsearch.datasets.locate.data_dirs` are searched for ``tinyshakespeare/input.txt``. The file is
``input.txt`` of the public char-rnn repository (``data/tinyshakespeare/``); nothing is downloaded.

Tokens are characters and the vocabulary is the sorted set of the text's characters, as char-rnn
and nanoGPT build it. The text is cut into `PIECES` equal contiguous pieces; a permutation under the
seed gives one piece to validation, one to test and the rest, in text order, to training. Windows are
cut inside each piece, so none spans two splits. A sample is ``context`` token ids shaped
``(1, 1, context)`` (the `gpt` space's input shape) and its label the ``context`` ids that follow
each position (the same window shifted by one). The split is a `TextDataset`: a `Dataset` whose
classes are the vocabulary, so the trainer and the engine read it as they read images.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hwsearch.data import Dataset, SelfSplit, register
from hwsearch.datasets.locate import data_dirs
from hwsearch.errors import DataError

FILE = "input.txt"
FOLDER = "tinyshakespeare"
PIECES = 10
CONTEXT = 64
OPTIONS = ("context", "stride")


@dataclass(frozen=True, eq=False)
class TextDataset(Dataset):
    """Token windows of a text: x is (N, 1, 1, context) int64 ids, y is (N, context) next-token ids."""

    context: int = CONTEXT

    @property
    def vocab(self) -> tuple[str, ...]:
        """The characters, in token-id order."""
        return self.class_names

    @property
    def channels(self) -> int:
        """One: a window is one row of token ids."""
        return 1

    @property
    def resolution(self) -> int:
        """The context length (what a resolution is for a window of tokens)."""
        return self.context

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(1, 1, context): one window of token ids."""
        return (1, 1, self.context)

    def at_resolution(self, resolution: int) -> Dataset:
        """This data set when ``resolution`` is its context; text is not resized."""
        if int(resolution) != self.context:
            raise DataError(f"{self.name}: windows are {self.context} tokens, not {resolution}; "
                            f"ask for another context with '?context={resolution}'")
        return self

    def encode(self, text: str) -> torch.Tensor:
        """Token ids of ``text`` (every character must be in the vocabulary)."""
        index = {ch: i for i, ch in enumerate(self.vocab)}
        unknown = sorted(set(text) - set(index))
        if unknown:
            raise DataError(f"{self.name}: characters {unknown[:5]} are not in the vocabulary")
        return torch.tensor([index[ch] for ch in text], dtype=torch.int64)

    def decode(self, ids: torch.Tensor) -> str:
        """The text of token ids."""
        return "".join(self.vocab[int(i)] for i in ids.reshape(-1))


@dataclass(frozen=True, eq=False)
class Corpus(SelfSplit):
    """A text and how to cut it into windows; `split` makes the `TextDataset` under a seed."""

    text: str
    context: int = CONTEXT
    stride: int | None = None

    def split(self, name: str, seed: int) -> TextDataset:
        """Train/val/test windows of contiguous pieces of the text, pieces assigned under ``seed``."""
        if len(set(self.text)) < 2:
            raise DataError(f"data source {name!r}: the text needs at least two distinct characters")
        vocab = tuple(sorted(set(self.text)))
        lookup = np.zeros(max(map(ord, vocab)) + 1, dtype=np.int64)
        lookup[[ord(ch) for ch in vocab]] = np.arange(len(vocab))
        ids = lookup[np.frombuffer(self.text.encode("utf-32-le"), dtype=np.uint32)]
        bounds = np.linspace(0, len(ids), PIECES + 1).astype(np.int64)
        pieces = [ids[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
        order = np.random.default_rng(seed).permutation(PIECES)
        val, test = [int(order[0])], [int(order[1])]
        train = sorted(int(i) for i in order[2:])
        stride = self.stride or self.context
        x_train, y_train = self._windows([pieces[i] for i in train], stride, name, "train")
        x_val, y_val = self._windows([pieces[i] for i in val], stride, name, "val")
        x_test, y_test = self._windows([pieces[i] for i in test], stride, name, "test")
        return TextDataset(name=name, x_train=x_train, y_train=y_train, x_val=x_val, y_val=y_val,
                           x_test=x_test, y_test=y_test, num_classes=len(vocab), class_names=vocab,
                           seed=seed, context=self.context)

    def _windows(self, pieces: list[np.ndarray], stride: int, name: str, split: str
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.context
        starts = [(p, s) for p in pieces for s in range(0, len(p) - t, stride)]
        if not starts:
            longest = max(len(p) for p in pieces)
            raise DataError(f"data source {name!r}: the {split} split's text ({longest} characters) is too short "
                            f"for one window of {t} tokens plus its next token; use a longer text or a smaller "
                            "'?context=N'")
        windows = np.stack([p[s:s + t + 1] for p, s in starts])
        x = torch.from_numpy(np.ascontiguousarray(windows[:, :t])).reshape(-1, 1, 1, t)
        return x, torch.from_numpy(np.ascontiguousarray(windows[:, 1:]))


def find_text(path: str | None) -> Path:
    """The tiny-shakespeare text at ``path`` (the file or a folder holding it), else in `data_dirs`; `DataError` if none."""
    if path:
        p = Path(path).expanduser()
        if p.is_file():
            return p
        for candidate in (p / FILE, p / FOLDER / FILE):
            if candidate.is_file():
                return candidate
        raise DataError(f"tinyshakespeare path {p} is neither the text file nor a folder holding {FILE} "
                        f"or {FOLDER}/{FILE}")
    dirs = data_dirs()
    for d in dirs:
        if (d / FOLDER / FILE).is_file():
            return d / FOLDER / FILE
    raise DataError(f"no tiny-shakespeare copy found in {' or '.join(str(d / FOLDER) for d in dirs)}; put "
                    f"char-rnn's data/tinyshakespeare/{FILE} there, set HWSEARCH_DATA to a folder holding "
                    f"{FOLDER}/{FILE}, or use 'tinyshakespeare:PATH'")


def _options(query: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if not eq or key not in OPTIONS:
            raise DataError(f"tinyshakespeare option {item!r} is unknown; use key=value with keys {', '.join(OPTIONS)}")
        if not re.fullmatch(r"\d+", value) or int(value) < 1:
            raise DataError(f"tinyshakespeare option {key}={value!r} must be a positive integer")
        out[key] = int(value)
    return out


@register("tinyshakespeare")
def _tinyshakespeare(arg: str | None) -> Corpus:
    """Tiny Shakespeare as character windows; ``tinyshakespeare[:PATH][?context=N&stride=N]``."""
    path, query = arg or "", ""
    if "?" in path:
        path, _, query = path.rpartition("?")
    options = _options(query)
    file = find_text(path or None)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {file} as UTF-8 text: {e}") from None
    return Corpus(text, options.get("context", CONTEXT), options.get("stride"))


__all__ = ["CONTEXT", "Corpus", "PIECES", "TextDataset", "find_text"]
