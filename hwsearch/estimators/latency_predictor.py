"""Whole-network latency from a measured layer table plus a learned correction.

Summing isolated layer latencies misses what happens between layers: framework dispatch per module,
cache state (a kernel timed in a loop finds its weights hot; inside a network the previous layer
evicted them), fusion and allocator effects (nn-Meter, Zhang et al. 2021, makes the same point for
mobile devices). The correction here is a small linear model fitted on networks measured end to end:

    measured ≈ Σ_layers table(layer) + intercept + w · standardise(features(net))

with one feature per op for the op's summed table latency (a per-op scale: cache effects differ by op),
one per op for its layer count (per-call overhead), plus total MACs, activation and weight bytes.
It is fitted by ridge regression towards "no correction" (the plain table sum is the prior), weighting
each network by 1/measured² so the fit minimises relative, not absolute, error. A linear model is
enough because the features are already physical; it is stored as plain JSON coefficients keyed by
the device fingerprint, never as a pickle.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwsearch.errors import ConfigError, CorruptTable
from hwsearch.io import atomic_write_json
from hwsearch.ir import OPS, LayerSpec, NetSpec

PREDICTOR_FORMAT = 1
FEATURES: tuple[str, ...] = (
    tuple(f"lut_{op}_ms" for op in OPS) + tuple(f"count_{op}" for op in OPS) + ("gmacs", "act_mb", "weight_mb")
)
ALPHAS = tuple(float(a) for a in np.logspace(-3, 3, 25))


def network_features(net: NetSpec, latency_s: Callable[[LayerSpec], float]) -> dict[str, float]:
    """Per-network features: table latency and layer count by op, MACs, activation and weight bytes."""
    feats = {name: 0.0 for name in FEATURES}
    for layer in net.layers:
        feats[f"lut_{layer.op}_ms"] += latency_s(layer) * 1e3
        feats[f"count_{layer.op}"] += 1
    feats["gmacs"] = net.macs / 1e9
    feats["act_mb"] = sum(layer.activation_bytes for layer in net.layers) / 1e6
    feats["weight_mb"] = net.weight_bytes / 1e6
    return feats


def lut_sum_s(features: Mapping[str, float]) -> float:
    """The plain table sum (seconds) recovered from a feature dict."""
    return sum(features[f"lut_{op}_ms"] for op in OPS) / 1e3


def accuracy_report(predicted: Sequence[float], measured: Sequence[float]) -> dict[str, float]:
    """Share within ±10%, RMSPE (%), Kendall tau and count of predictions against measurements."""
    from scipy.stats import kendalltau

    p, m = np.asarray(predicted, dtype=float), np.asarray(measured, dtype=float)
    if len(p) != len(m) or len(p) == 0:
        raise ConfigError(f"need equally many predictions and measurements (got {len(p)} and {len(m)})")
    rel = (p - m) / m
    tau = float(kendalltau(p, m).statistic) if len(p) > 1 else float("nan")
    return {
        "within_10pct": float(np.mean(np.abs(rel) <= 0.10)),
        "rmspe": float(100 * np.sqrt(np.mean(rel**2))),
        "kendall_tau": tau,
        "n": int(len(p)),
    }


@dataclass(frozen=True)
class LatencyPredictor:
    """The learned correction on top of a table sum, as data (see the module docstring)."""

    fingerprint: Mapping[str, Any]
    space: str
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: tuple[float, ...]
    intercept_ms: float
    alpha: float
    report: Mapping[str, Any] = field(default_factory=dict)   # train/test figures of the fit
    features: tuple[str, ...] = FEATURES

    def __post_init__(self) -> None:
        n = len(self.features)
        if not (len(self.mean) == len(self.scale) == len(self.coef) == n):
            raise CorruptTable(f"latency predictor has {len(self.coef)} coefficients for {n} features")

    def correction_ms(self, features: Mapping[str, float]) -> float:
        """Milliseconds to add to the table sum for a network with these features."""
        x = np.array([features[f] for f in self.features])
        z = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        return float(self.intercept_ms + z @ np.asarray(self.coef))

    def predict_features(self, features: Mapping[str, float]) -> float:
        """Predicted seconds from a feature dict (never below a tenth of the table sum)."""
        base = lut_sum_s(features)
        return max(base + self.correction_ms(features) / 1e3, 0.1 * base)

    def predict(self, net: NetSpec, latency_s: Callable[[LayerSpec], float]) -> float:
        """Predicted end-to-end seconds of ``net`` given per-layer table latencies."""
        return self.predict_features(network_features(net, latency_s))

    # ---- persistence -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {
            "fingerprint": dict(self.fingerprint), "space": self.space, "features": list(self.features),
            "mean": list(self.mean), "scale": list(self.scale), "coef": list(self.coef),
            "intercept_ms": self.intercept_ms, "alpha": self.alpha, "report": dict(self.report),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LatencyPredictor:
        """Inverse of `to_dict`."""
        try:
            return cls(dict(d["fingerprint"]), str(d["space"]), tuple(map(float, d["mean"])),
                       tuple(map(float, d["scale"])), tuple(map(float, d["coef"])), float(d["intercept_ms"]),
                       float(d["alpha"]), dict(d.get("report", {})), tuple(d["features"]))
        except (KeyError, TypeError, ValueError) as e:
            raise CorruptTable(f"latency predictor data is incomplete or malformed ({e})") from None

    def save(self, path: str | Path) -> None:
        """Write as JSON with a format version and a checksum, atomically."""
        payload = self.to_dict()
        atomic_write_json(path, {"format_version": PREDICTOR_FORMAT, "kind": "latency_predictor",
                                 "sha256": _digest(payload), "payload": payload})

    @classmethod
    def load(cls, path: str | Path, fingerprint: Mapping[str, Any] | None = None) -> LatencyPredictor:
        """Read a file written by `save`; a corrupt, foreign or stale file raises `CorruptTable`."""
        try:
            doc = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise
        except (OSError, ValueError) as e:
            raise CorruptTable(f"latency predictor {path} is unreadable ({e}); delete it or refit") from None
        if not isinstance(doc, dict) or doc.get("kind") != "latency_predictor":
            raise CorruptTable(f"{path} is not a latency predictor file")
        if doc.get("format_version") != PREDICTOR_FORMAT:
            raise CorruptTable(f"latency predictor {path} has format {doc.get('format_version')!r}; "
                               f"this hwsearch reads {PREDICTOR_FORMAT}")
        payload = doc.get("payload")
        if not isinstance(payload, dict) or doc.get("sha256") != _digest(payload):
            raise CorruptTable(f"latency predictor {path} fails its checksum (truncated or edited)")
        pred = cls.from_dict(payload)
        if fingerprint is not None and dict(pred.fingerprint) != dict(fingerprint):
            raise CorruptTable(f"latency predictor {path} was fitted on another device setup "
                               f"({pred.fingerprint}); refit it here")
        return pred


def _digest(payload: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def fit_predictor(features: Sequence[Mapping[str, float]], measured_s: Sequence[float],
                  fingerprint: Mapping[str, Any], space: str, test_share: float = 0.25,
                  seed: int = 0) -> LatencyPredictor:
    """Fit the correction on measured networks; its ``report`` holds train and test figures.

    The regularisation strength is chosen by cross-validation on the training part only; the test
    part (``test_share`` of the networks, drawn with ``seed``) is scored once, then the final model is
    refitted on all networks with that strength.
    """
    n = len(features)
    if n != len(measured_s) or n < 8:
        raise ConfigError(f"fitting a latency predictor needs at least 8 measured networks (got {n})")
    if not 0 < test_share < 1:
        raise ConfigError(f"test_share={test_share} must lie strictly between 0 and 1")
    X = np.array([[f[name] for name in FEATURES] for f in features], dtype=float)
    y = np.asarray(measured_s, dtype=float)
    base = np.array([lut_sum_s(f) for f in features])
    order = np.random.default_rng(seed).permutation(n)
    n_test = max(2, int(round(test_share * n)))
    test, train = order[:n_test], order[n_test:]

    def fit(idx: np.ndarray, alpha: float | None) -> tuple[LatencyPredictor, float]:
        mean = X[idx].mean(axis=0)
        scale = X[idx].std(axis=0)
        scale[scale == 0] = 1.0
        Z = (X[idx] - mean) / scale
        r = (y[idx] - base[idx]) * 1e3
        w = 1.0 / y[idx] ** 2
        if alpha is None:
            alpha = _choose_alpha(Z, r, w, y[idx], base[idx], seed)
        coef, intercept = _weighted_ridge(Z, r, w, alpha)
        pred = LatencyPredictor(dict(fingerprint), space, tuple(mean), tuple(scale), tuple(coef),
                                intercept, alpha)
        return pred, alpha

    held, alpha = fit(train, None)
    predict = lambda idx, model: [model.predict_features(features[i]) for i in idx]  # noqa: E731
    report = {
        "n_train": int(len(train)), "n_test": int(len(test)), "alpha": alpha, "test_seed": seed,
        "train": accuracy_report(predict(train, held), y[train]),
        "test": accuracy_report(predict(test, held), y[test]),
        "test_lut_sum": accuracy_report(base[test], y[test]),
    }
    final, _ = fit(np.arange(n), alpha)
    return LatencyPredictor(final.fingerprint, space, final.mean, final.scale, final.coef, final.intercept_ms,
                            alpha, report)


def _weighted_ridge(Z: np.ndarray, r: np.ndarray, w: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """Weighted least squares with an L2 penalty on the coefficients (not the intercept)."""
    sw = np.sqrt(w / w.mean())
    A = np.hstack([np.ones((len(Z), 1)), Z]) * sw[:, None]
    b = r * sw
    P = alpha * np.eye(A.shape[1])
    P[0, 0] = 0.0
    sol = np.linalg.solve(A.T @ A + P, A.T @ b)
    return sol[1:], float(sol[0])


def _choose_alpha(Z: np.ndarray, r: np.ndarray, w: np.ndarray, y: np.ndarray, base: np.ndarray,
                  seed: int, folds: int = 5) -> float:
    """The ridge strength with the lowest k-fold relative error on the given networks."""
    n = len(Z)
    k = min(folds, n)
    parts = np.array_split(np.random.default_rng(seed + 1).permutation(n), k)
    best, best_err = ALPHAS[-1], math.inf
    for alpha in ALPHAS:
        err = 0.0
        for p in parts:
            rest = np.setdiff1d(np.arange(n), p)
            coef, icpt = _weighted_ridge(Z[rest], r[rest], w[rest], alpha)
            pred = base[p] + (icpt + Z[p] @ coef) / 1e3
            err += float(np.sum(((pred - y[p]) / y[p]) ** 2))
        if err < best_err:
            best, best_err = alpha, err
    return best


__all__ = ["ALPHAS", "FEATURES", "LatencyPredictor", "accuracy_report", "fit_predictor", "lut_sum_s",
           "network_features"]
