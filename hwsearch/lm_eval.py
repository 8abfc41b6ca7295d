"""Language-model metrics: mean next-token cross-entropy (nats per token) and perplexity, its exponential.

The metrics of a `gpt` network on a `hwsearch.datasets.tinyshakespeare.TextDataset`, as the
language-modelling literature reports them; top-1 accuracy (`hwsearch.train.evaluate`) stays the
trainer's stopping signal. Every position of every window counts once, in float64 sums, so the mean
does not depend on the batch size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from hwsearch.data import Dataset, batches
from hwsearch.train import per_position


@dataclass(frozen=True)
class LMScore:
    """Mean cross-entropy of the next token, in nats, over ``tokens`` predictions."""

    loss: float
    tokens: int

    @property
    def perplexity(self) -> float:
        """``exp(loss)``: the effective number of equally likely next tokens."""
        return math.exp(self.loss)

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


def split_score(model: torch.nn.Module, data: Dataset, split: str = "val", batch_size: int = 256) -> LMScore:
    """`lm_score` on split ``split`` (train, val or test) of ``data``."""
    x, y = data.split(split)
    return lm_score(model, x, y, batch_size)


__all__ = ["LMScore", "lm_score", "split_score"]
