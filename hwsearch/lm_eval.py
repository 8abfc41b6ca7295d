"""Language-model metrics: mean next-token cross-entropy (nats per token) and perplexity, its exponential.

The metrics of a `gpt` network on a `hwsearch.datasets.tinyshakespeare.TextDataset`, as the
language-modelling literature reports them; top-1 accuracy (`hwsearch.train.evaluate`) stays the
trainer's stopping signal. Every position of every window counts once, in float64 sums, so the mean
does not depend on the batch size. `lm_metrics` is what the search engine's evaluators add to a
trial's report when the data labels every position (`is_sequence`): ``val_loss``,
``val_perplexity``, ``test_loss`` and ``test_perplexity``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hwsearch.data import Dataset, batches
from hwsearch.train import per_position

MAX_EXP = 709.0  # math.exp overflows a float64 above about 709.78


@dataclass(frozen=True)
class LMScore:
    """Mean cross-entropy of the next token, in nats, over ``tokens`` predictions."""

    loss: float
    tokens: int

    @property
    def perplexity(self) -> float:
        """``exp(loss)``: the effective number of equally likely next tokens (inf past float range)."""
        return math.exp(self.loss) if self.loss < MAX_EXP else math.inf

    def to_dict(self, prefix: str = "") -> dict[str, float]:
        """``{prefix}loss`` and ``{prefix}perplexity``, JSON-able."""
        return {f"{prefix}loss": self.loss, f"{prefix}perplexity": self.perplexity}


@torch.no_grad()
def lm_score(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> LMScore:
    """Mean cross-entropy and perplexity of ``model`` predicting labels ``y`` from windows ``x``."""
    if y.numel() == 0:
        raise ValueError("lm_score needs at least one window")
    was_training = model.training
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    total = 0.0
    try:
        for xb, yb in batches(x, y, batch_size):
            logits, targets = per_position(model(xb.to(device)), yb.to(device))
            total += float(F.cross_entropy(logits.double(), targets, reduction="sum"))
    finally:
        model.train(was_training)
    return LMScore(total / y.numel(), int(y.numel()))


def is_sequence(data: Dataset) -> bool:
    """Whether ``data`` labels every position of a sample (a language model's windows), not the sample."""
    return data.y_val.dim() == 2


def split_score(model: torch.nn.Module, data: Dataset, split: str = "val", batch_size: int = 256) -> LMScore:
    """`lm_score` on split ``split`` (train, val or test) of ``data``."""
    x, y = data.split(split)
    return lm_score(model, x, y, batch_size)


def lm_metrics(model: torch.nn.Module, data: Dataset, splits: tuple[str, ...] = ("val", "test"),
               batch_size: int = 256) -> dict[str, float]:
    """``{split}_loss`` and ``{split}_perplexity`` of ``model`` for each split, as a trial reports them."""
    out: dict[str, float] = {}
    for split in splits:
        out.update(split_score(model, data, split, batch_size).to_dict(f"{split}_"))
    return out


__all__ = ["LMScore", "is_sequence", "lm_metrics", "lm_score", "split_score"]
