"""Pareto fronts and hypervolume for the co-search: numpy, for a few hundred points in 2-4 objectives.

Everything is minimised here; callers flip maximised objectives. The hypervolume is computed exactly
by slicing along the first objective (HSO, While et al. 2006): exact, dependency-free and fast enough
at these sizes, and the same code scores NAAS's inner fronts and the benchmark's final fronts.
"""

from __future__ import annotations

import numpy as np


def nondominated(points: np.ndarray) -> np.ndarray:
    """Boolean mask of the rows of ``points`` (minimised) that no other row dominates."""
    p = np.asarray(points, dtype=float)
    n = len(p)
    keep = np.ones(n, dtype=bool)
    for i in range(n):
        if not keep[i]:
            continue
        le = np.all(p <= p[i], axis=1)
        lt = np.any(p < p[i], axis=1)
        if np.any(le & lt):
            keep[i] = False
    # Exact duplicates: keep the first only.
    _, first = np.unique(p[keep], axis=0, return_index=True)
    idx = np.flatnonzero(keep)[np.sort(first)]
    out = np.zeros(n, dtype=bool)
    out[idx] = True
    return out


def hypervolume(points: np.ndarray, ref: np.ndarray) -> float:
    """Volume dominated by ``points`` (minimised) and bounded by ``ref``; points beyond ref add nothing."""
    p = np.asarray(points, dtype=float).reshape(-1, len(ref))
    ref = np.asarray(ref, dtype=float)
    p = p[np.all(p < ref, axis=1)]
    if len(p) == 0:
        return 0.0
    p = p[nondominated(p)]
    return _hv(p, ref)


def _hv(p: np.ndarray, ref: np.ndarray) -> float:
    if p.shape[1] == 1:
        return float(ref[0] - p[:, 0].min())
    if p.shape[1] == 2:
        order = np.argsort(p[:, 0], kind="stable")
        total, best = 0.0, ref[1]
        for x, y in p[order]:
            if y < best:
                total += (ref[0] - x) * (best - y)
                best = y
        return float(total)
    order = np.argsort(p[:, 0], kind="stable")
    p = p[order]
    total = 0.0
    for i in range(len(p)):
        hi = p[i + 1, 0] if i + 1 < len(p) else ref[0]
        width = hi - p[i, 0]
        if width <= 0:
            continue
        sl = p[: i + 1, 1:]
        sl = sl[nondominated(sl)]
        total += width * _hv(sl, ref[1:])
    return float(total)


def crowding(points: np.ndarray) -> np.ndarray:
    """NSGA-II crowding distance of each row (boundary rows get infinity)."""
    p = np.asarray(points, dtype=float)
    n, m = p.shape
    d = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for j in range(m):
        order = np.argsort(p[:, j], kind="stable")
        span = p[order[-1], j] - p[order[0], j]
        d[order[0]] = d[order[-1]] = np.inf
        if span > 0:
            d[order[1:-1]] += (p[order[2:], j] - p[order[:-2], j]) / span
    return d


def rank_select(points: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` best rows by non-dominated rank, then crowding (NSGA-II survival)."""
    p = np.asarray(points, dtype=float)
    remaining = np.arange(len(p))
    chosen: list[int] = []
    while remaining.size and len(chosen) < k:
        front = remaining[nondominated_all(p[remaining])]
        if len(chosen) + len(front) <= k:
            chosen.extend(front.tolist())
        else:
            cd = crowding(p[front])
            chosen.extend(front[np.argsort(-cd, kind="stable")][: k - len(chosen)].tolist())
        remaining = np.setdiff1d(remaining, front)
    return np.array(chosen, dtype=int)


def nondominated_all(points: np.ndarray) -> np.ndarray:
    """Like `nondominated`, but duplicates of a non-dominated row are kept too (for ranking)."""
    p = np.asarray(points, dtype=float)
    keep = np.zeros(len(p), dtype=bool)
    if not len(p):
        return keep
    # A row is dominated only by rows before it in lexicographic order, and whatever dominates it is a kept
    # row or is dominated by one: comparing each row with the rows kept so far is enough. That costs
    # n x front instead of n x n, which matters for a run table of 100,000 trials.
    front = np.empty_like(p)
    size = 0
    for i in np.lexsort(p.T[::-1]):
        f = front[:size]
        if size and np.any(np.all(f <= p[i], axis=1) & np.any(f < p[i], axis=1)):
            continue
        keep[i] = True
        front[size] = p[i]
        size += 1
    return keep


__all__ = ["crowding", "hypervolume", "nondominated", "nondominated_all", "rank_select"]
