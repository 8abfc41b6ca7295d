"""Timing a callable under noise control: warm-up, outlier rejection, median until the CI is tight.

A latency table is only as good as its quietest number, and the machines it is built on are shared
(other processes, frequency changes, cache pollution). So every measurement here

- warms up (first calls allocate, JIT-select algorithms, fault in pages) for a minimum time;
- batches fast calls into one sample of at least ``min_sample_s`` so timer resolution and the Python
  call do not dominate a microsecond kernel;
- draws samples in rounds and stops as soon as the distribution-free 95% confidence interval of the
  median (binomial order statistics) is within ``rel_ci`` of the median, or at ``max_samples`` /
  ``max_time_s`` — whichever comes first, so a noisy machine costs bounded time;
- rejects outliers with the median absolute deviation (interference shows up as rare slow samples);
- reports the median of what is left together with its run-to-run spread (IQR / median), and the
  fastest sample: on a machine shared with other work the slowdown from co-running processes (caches,
  SMT siblings) is one-sided, so the minimum repeats better there; ``statistic="min"`` reports it.

The clock is pluggable: wall time (`perf_counter`), the calling thread's CPU time (on a shared CPU
with one intra-op thread it leaves out the time the scheduler gave to other processes), or CUDA
events on a GPU (see `hwsearch.kernels.profile`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from hwsearch.errors import ConfigError

STATISTICS = ("median", "min")
# Interval clock: runs ``fn`` ``inner`` times and returns the elapsed seconds of the whole batch.
Clock = Callable[[Callable[[], Any], int], float]


@dataclass(frozen=True)
class TimerConfig:
    """How hard to try for a quiet number (defaults suit a kernel table on a shared CPU)."""

    warmup_s: float = 0.02
    min_warmup_calls: int = 2
    min_sample_s: float = 2e-4
    min_samples: int = 7
    max_samples: int = 60
    rel_ci: float = 0.02
    max_time_s: float = 2.0
    outlier_mads: float = 4.0
    statistic: str = "median"   # what `Measurement.latency_s` reports: median, or min on a busy machine

    def __post_init__(self) -> None:
        if self.statistic not in STATISTICS:
            raise ConfigError(f"timer statistic {self.statistic!r} is unknown; use one of {', '.join(STATISTICS)}")
        if self.min_samples < 3 or self.max_samples < self.min_samples:
            raise ConfigError(
                f"timer needs 3 <= min_samples <= max_samples, got {self.min_samples} and {self.max_samples}"
            )
        for name in ("warmup_s", "min_sample_s", "rel_ci", "max_time_s", "outlier_mads"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"timer setting {name}={getattr(self, name)!r} must be positive")

    @classmethod
    def quick(cls, statistic: str = "median") -> TimerConfig:
        """Few samples, short budget: for tests and smoke runs, not for tables you trust."""
        return cls(warmup_s=0.002, min_warmup_calls=1, min_sample_s=5e-5, min_samples=3, max_samples=5,
                   rel_ci=0.5, max_time_s=0.2, statistic=statistic)

    @classmethod
    def network(cls, statistic: str = "median") -> TimerConfig:
        """Whole-network forward passes: longer warm-up and budget, same statistics."""
        return cls(warmup_s=0.1, min_warmup_calls=3, min_sample_s=1e-3, min_samples=9, max_samples=60,
                   rel_ci=0.01, max_time_s=6.0, statistic=statistic)


@dataclass(frozen=True)
class Measurement:
    """The result of timing one thing: seconds per call and how much it varied."""

    median_s: float
    spread: float        # IQR / median of the kept samples (relative run-to-run spread)
    ci_rel: float        # half-width of the 95% CI of the median, relative to the median
    samples: int         # samples kept after outlier rejection
    rejected: int        # samples dropped as outliers
    inner: int           # calls per sample
    converged: bool      # whether ci_rel reached the configured target before a cap
    min_s: float = 0.0   # fastest kept sample
    statistic: str = "median"

    @property
    def latency_s(self) -> float:
        """Seconds per call by the configured statistic (the median unless the timer asked for min)."""
        return self.min_s if self.statistic == "min" else self.median_s

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return asdict(self)


def perf_counter_clock(fn: Callable[[], Any], inner: int) -> float:
    """Wall-clock seconds of ``inner`` back-to-back calls (CPU: torch ops are synchronous)."""
    t0 = time.perf_counter()
    for _ in range(inner):
        fn()
    return time.perf_counter() - t0


def thread_cpu_clock(fn: Callable[[], Any], inner: int) -> float:
    """CPU seconds this thread spent on ``inner`` calls: immune to being descheduled by other work.

    Valid as a latency only when every op runs on the calling thread (one intra-op thread); on a
    quiet machine it equals wall time, on a shared one it leaves out the time other processes ran.
    """
    t0 = time.thread_time()
    for _ in range(inner):
        fn()
    return time.thread_time() - t0


def median_ci(sorted_x: np.ndarray, z: float = 1.96) -> tuple[float, float]:
    """Distribution-free ~95% confidence interval of the median from sorted samples."""
    n = len(sorted_x)
    half = z * math.sqrt(n) / 2
    lo = max(int(math.floor(n / 2 - half)), 0)
    hi = min(int(math.ceil(n / 2 + half)), n - 1)
    return float(sorted_x[lo]), float(sorted_x[hi])


def reject_outliers(x: np.ndarray, mads: float) -> np.ndarray:
    """Samples within ``mads`` scaled median absolute deviations of the median."""
    med = np.median(x)
    mad = 1.4826 * np.median(np.abs(x - med))
    if mad == 0:
        return x
    return x[np.abs(x - med) <= mads * mad]


def summarize(per_call: np.ndarray, cfg: TimerConfig, inner: int) -> Measurement:
    """Outlier-rejected median, spread and CI of per-call times."""
    kept = np.sort(reject_outliers(per_call, cfg.outlier_mads))
    med = float(np.median(kept))
    lo, hi = median_ci(kept)
    ci_rel = max(med - lo, hi - med) / med if med > 0 else math.inf
    q1, q3 = np.percentile(kept, [25, 75])
    spread = float((q3 - q1) / med) if med > 0 else 0.0
    return Measurement(med, spread, ci_rel, len(kept), len(per_call) - len(kept), inner, ci_rel <= cfg.rel_ci,
                       float(kept[0]), cfg.statistic)


def time_fn(fn: Callable[[], Any], cfg: TimerConfig | None = None, clock: Clock = perf_counter_clock) -> Measurement:
    """Seconds per call of ``fn`` under the noise control of ``cfg``."""
    cfg = cfg or TimerConfig()
    start = time.perf_counter()
    calls, spent = 0, 0.0
    while calls < cfg.min_warmup_calls or spent < cfg.warmup_s:
        spent += clock(fn, 1)
        calls += 1
        if time.perf_counter() - start > cfg.max_time_s / 2:
            break
    one = max(spent / calls, 1e-9)
    inner = max(1, int(math.ceil(cfg.min_sample_s / one)))
    samples: list[float] = []
    measurement: Measurement | None = None
    while len(samples) < cfg.max_samples:
        samples.append(clock(fn, inner) / inner)
        n = len(samples)
        if n < cfg.min_samples:
            continue
        if n == cfg.min_samples or n % 3 == 0 or n == cfg.max_samples:
            measurement = summarize(np.asarray(samples), cfg, inner)
            if measurement.converged or time.perf_counter() - start > cfg.max_time_s:
                return measurement
    return measurement or summarize(np.asarray(samples), cfg, inner)


__all__ = ["STATISTICS", "Clock", "Measurement", "TimerConfig", "median_ci", "perf_counter_clock", "reject_outliers",
           "summarize", "thread_cpu_clock", "time_fn"]
