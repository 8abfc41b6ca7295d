"""Accuracy predictors from a choice's one-hot encoding: an MLP as in Once-for-All, and a ridge regression.

Both answer "how accurate is this sub-network of the supernet" from the same features, so they live
together; the OFA searcher uses `AccuracyPredictor`, the NAAS co-search `OneHotRidge`.

Once a supernet is trained, measuring a sub-network still costs a BatchNorm recalibration and a pass
over the validation set; an evolutionary search asks for tens of thousands. OFA (Cai et al., ICLR
2020) therefore fits a small MLP (three hidden layers of 400) on a few thousand measured
(encoding, accuracy) pairs and searches with it. `predict` is vectorised numpy (no torch per query);
the weights are stored as JSON data, never as a pickle, with the space's genes so that a predictor
cannot be used on another space by mistake.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hwsearch.errors import ConfigError, CorruptTable
from hwsearch.io import atomic_write_json
from hwsearch.spaces.base import Choice, SearchSpace

FORMAT_VERSION = 1


@dataclass(frozen=True)
class PredictorReport:
    """How well a predictor ranks and fits held-out sub-networks."""

    rmse: float
    kendall_tau: float
    n_train: int
    n_test: int

    def to_dict(self) -> dict[str, float]:
        """JSON-able dict."""
        return {"rmse": self.rmse, "kendall_tau": self.kendall_tau, "n_train": self.n_train, "n_test": self.n_test}


def _genes(space: SearchSpace) -> list[list[Any]]:
    return [[d.name, list(d.options)] for d in space.dims]


def encode_many(space: SearchSpace, choices: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """One-hot encodings of ``choices`` stacked into an (n, features) float32 array."""
    if len(choices) == 0:
        return np.zeros((0, sum(len(d.options) for d in space.dims)), dtype=np.float32)
    return np.stack([space.one_hot(c) for c in choices]).astype(np.float32)


class AccuracyPredictor:
    """MLP regressor from one-hot choices of ``space`` to accuracy in [0, 1]."""

    def __init__(self, space: SearchSpace, layers: Sequence[tuple[np.ndarray, np.ndarray]], y_mean: float,
                 y_std: float) -> None:
        self.space = space
        self.layers = [(np.asarray(w, dtype=np.float32), np.asarray(b, dtype=np.float32)) for w, b in layers]
        self.y_mean, self.y_std = float(y_mean), float(y_std)
        features = sum(len(d.options) for d in space.dims)
        if not self.layers or self.layers[0][0].shape[0] != features:
            raise ConfigError(f"predictor expects {self.layers[0][0].shape[0] if self.layers else 0} input "
                              f"features but space {space.name!r} encodes {features}")

    def predict_encoded(self, x: np.ndarray) -> np.ndarray:
        """Predicted accuracies of one-hot rows ``x`` (n, features)."""
        h = np.asarray(x, dtype=np.float32)
        for i, (w, b) in enumerate(self.layers):
            h = h @ w + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0.0)
        return (h[:, 0] * self.y_std + self.y_mean).astype(np.float64)

    def predict(self, choices: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predicted accuracy of every choice, as one array (vectorised over choices)."""
        return self.predict_encoded(encode_many(self.space, choices))

    def __call__(self, choices: Sequence[Mapping[str, Any]]) -> np.ndarray:
        return self.predict(choices)

    # ---- fitting -----------------------------------------------------------------------------
    @classmethod
    def fit(cls, space: SearchSpace, choices: Sequence[Mapping[str, Any]], accuracies: Sequence[float],
            hidden: Sequence[int] = (400, 400, 400), epochs: int = 400, lr: float = 1e-3,
            weight_decay: float = 1e-4, batch_size: int = 256, seed: int = 0) -> AccuracyPredictor:
        """Fit an MLP on measured (choice, accuracy) pairs (Adam, mean squared error on standardised targets)."""
        import torch
        from torch import nn

        y = np.asarray(accuracies, dtype=np.float64)
        if len(choices) != len(y) or len(y) < 2:
            raise ConfigError(f"an accuracy predictor needs at least 2 (choice, accuracy) pairs of equal count, "
                              f"got {len(choices)} choices and {len(y)} accuracies")
        x = torch.from_numpy(encode_many(space, choices))
        y_mean, y_std = float(y.mean()), float(y.std()) or 1.0
        t = torch.from_numpy(((y - y_mean) / y_std).astype(np.float32))
        gen = torch.Generator().manual_seed(seed)
        sizes = [x.shape[1], *hidden, 1]
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            mods: list[nn.Module] = []
            for i, (a, b) in enumerate(zip(sizes, sizes[1:], strict=False)):
                mods.append(nn.Linear(a, b))
                if i < len(sizes) - 2:
                    mods.append(nn.ReLU())
            net = nn.Sequential(*mods)
        opt = torch.optim.Adam(net.parameters(), lr=lr, weight_decay=weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(1, epochs))
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # matrices this small only lose time to thread synchronisation
        try:
            for _ in range(epochs):
                order = torch.randperm(len(t), generator=gen)
                for s in range(0, len(t), batch_size):
                    idx = order[s:s + batch_size]
                    loss = ((net(x[idx])[:, 0] - t[idx]) ** 2).mean()
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                sched.step()
        finally:
            torch.set_num_threads(threads)
        linears = [m for m in net if isinstance(m, nn.Linear)]
        layers = [(m.weight.detach().numpy().T.copy(), m.bias.detach().numpy().copy()) for m in linears]
        return cls(space, layers, y_mean, y_std)

    def report(self, choices: Sequence[Mapping[str, Any]], accuracies: Sequence[float], n_train: int = 0) -> PredictorReport:
        """RMSE and Kendall tau of the predictions on ``choices`` against measured ``accuracies``."""
        from scipy.stats import kendalltau

        y = np.asarray(accuracies, dtype=np.float64)
        p = self.predict(choices)
        tau = float(kendalltau(p, y).statistic) if len(y) > 1 else float("nan")
        return PredictorReport(float(np.sqrt(np.mean((p - y) ** 2))), tau, int(n_train), int(len(y)))

    # ---- storage -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict: format version, the space's genes, the weights and target scaling."""
        return {"format_version": FORMAT_VERSION, "space": self.space.name, "genes": _genes(self.space),
                "y_mean": self.y_mean, "y_std": self.y_std,
                "layers": [{"w": w.tolist(), "b": b.tolist()} for w, b in self.layers]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], space: SearchSpace) -> AccuracyPredictor:
        """Inverse of `to_dict`; refuses a predictor fitted on another space or encoding."""
        if d.get("format_version") != FORMAT_VERSION:
            raise CorruptTable(f"accuracy predictor format {d.get('format_version')!r} is not {FORMAT_VERSION}")
        if json.dumps(d.get("genes")) != json.dumps(_genes(space)):
            raise ConfigError(f"accuracy predictor was fitted on space {d.get('space')!r} with other genes than "
                              f"space {space.name!r} has; fit it again for this space")
        layers = [(np.array(layer["w"], dtype=np.float32), np.array(layer["b"], dtype=np.float32))
                  for layer in d["layers"]]
        return cls(space, layers, d["y_mean"], d["y_std"])

    def save(self, path: str | os.PathLike) -> None:
        """Write as JSON, atomically."""
        atomic_write_json(path, self.to_dict(), indent=None)

    @classmethod
    def load(cls, path: str | os.PathLike, space: SearchSpace) -> AccuracyPredictor:
        """Read a predictor written by `save`."""
        try:
            with open(path) as f:
                d = json.load(f)
        except (OSError, ValueError) as e:
            raise CorruptTable(f"accuracy predictor {path} is unreadable: {e}") from None
        return cls.from_dict(d, space)


# L2 strengths tried when fitting: one-hot genes of a few hundred measured sub-networks need anything
# from almost none (an additive, noise-free target) to strong shrinkage (supernet accuracies).
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-3, 3, 13))


class OneHotRidge:
    """Accuracy of a sub-network from its one-hot encoding: ridge regression (closed form).

    Once-for-All fits a small MLP on the same features; at the few hundred measured sub-networks a
    two-core budget affords, a linear model on one-hot genes is as accurate and has no training noise.
    Predictions are clipped to the range of the measured accuracies: the co-search maximises the
    predictor, and a linear model summing the best gene of every block extrapolates past anything
    measured (see BENCHMARKS.md, "NAAS accuracy predictor: one-hot ridge"). The penalty strength is
    chosen by leave-one-out error (scikit-learn's `RidgeCV`) rather than fixed: a fixed weak penalty
    both predicts worse and puts many random sub-networks at the clip, where they all tie and the
    cheapest of them dominates the whole predicted front.
    """

    def __init__(self, space: SearchSpace, weights: np.ndarray, bias: float, floor: float = 0.0,
                 ceiling: float = 1.0, alpha: float | None = None) -> None:
        self.space, self.weights, self.bias = space, np.asarray(weights, dtype=float), float(bias)
        self.floor, self.ceiling, self.alpha = float(floor), float(ceiling), alpha

    @classmethod
    def fit(cls, space: SearchSpace, choices: Sequence[Choice], acc: np.ndarray,
            alpha: float | None = None) -> OneHotRidge:
        """Ridge regression (bias not penalised) with L2 strength ``alpha``, or the `RIDGE_ALPHAS` one of least leave-one-out error."""
        from sklearn.linear_model import RidgeCV  # deferred: scikit-learn is heavy and only fitting needs it

        x = np.stack([space.one_hot(c) for c in choices]).astype(float)
        y = np.asarray(acc, dtype=float)
        model = RidgeCV(alphas=list(RIDGE_ALPHAS if alpha is None else (alpha,))).fit(x, y)
        return cls(space, model.coef_, float(model.intercept_), float(y.min()), float(y.max()), float(model.alpha_))

    def __call__(self, choices: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predicted accuracies (fraction), vectorised."""
        if not choices:
            return np.zeros(0)
        x = np.stack([self.space.one_hot(c) for c in choices]).astype(float)
        return np.clip(x @ self.weights + self.bias, self.floor, self.ceiling)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {"kind": "onehot-ridge", "weights": self.weights.tolist(), "bias": self.bias, "floor": self.floor,
                "ceiling": self.ceiling, "alpha": self.alpha}

    @classmethod
    def from_dict(cls, space: SearchSpace, d: Mapping[str, Any]) -> OneHotRidge:
        """Inverse of `to_dict`, checked against the space's encoding length."""
        w = np.asarray(d.get("weights", []), dtype=float)
        if d.get("kind") != "onehot-ridge" or w.shape != space.one_hot(space.reference("smallest")).shape:
            raise CorruptTable("predictor.json does not hold a one-hot ridge model of this space")
        return cls(space, w, float(d["bias"]), float(d.get("floor", 0.0)), float(d.get("ceiling", 1.0)),
                   d.get("alpha"))


def holdout_split(n: int, test_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices of ``n`` pairs: the split `fit_and_report` uses."""
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test_fraction={test_fraction} must lie strictly between 0 and 1")
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(1, int(round(n * test_fraction)))
    return order[n_test:], order[:n_test]


def fit_and_report(space: SearchSpace, choices: Sequence[Mapping[str, Any]], accuracies: Sequence[float],
                   test_fraction: float = 0.2, seed: int = 0, **fit_kwargs: Any) -> tuple[AccuracyPredictor, PredictorReport]:
    """Fit on a random ``1 - test_fraction`` of the pairs and report RMSE / Kendall tau on the rest."""
    train, test = holdout_split(len(choices), test_fraction, seed)
    acc = np.asarray(accuracies, dtype=np.float64)
    pred = AccuracyPredictor.fit(space, [choices[i] for i in train], acc[train], seed=seed, **fit_kwargs)
    return pred, pred.report([choices[i] for i in test], acc[test], n_train=len(train))


__all__ = ["AccuracyPredictor", "FORMAT_VERSION", "OneHotRidge", "PredictorReport", "RIDGE_ALPHAS", "encode_many",
           "fit_and_report",
           "holdout_split"]
