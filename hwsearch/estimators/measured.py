"""Measured latency of a space's networks on this machine: a layer table plus a learned correction.

`MeasuredLatency(space, device)` owns one `LatencyTable` of measured kernels per (space, device
fingerprint) and the `LatencyPredictor` fitted for it, both cached on disk under the cache directory
(``$HWSEARCH_CACHE``, else ``~/.cache/hwsearch``; never the repository). A layer is measured once and
then read from the table by every later run and every parallel worker: the table is re-read, filled
and written under a file lock, atomically, so workers share one file without losing each other's
entries. A second lock per device serialises the measuring itself, so two workers on one machine
never time kernels against each other. A table or predictor that is corrupt, from another format,
or recorded on another setup (CPU, torch, threads, dtype, clock) is reported and rebuilt, never used.

`fit` measures sampled networks end to end and fits the correction (train/test figures in its
report); `check` measures networks from a seed the caller picks, never ones used for fitting, and
reports the share of predictions within ±10%, RMSPE and Kendall tau.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hwsearch import spaces
from hwsearch.cache import cache_root
from hwsearch.errors import ConfigError, CorruptTable, MissingTable
from hwsearch.estimators.latency_predictor import (
    LatencyPredictor,
    accuracy_report,
    fit_predictor,
    lut_sum_s,
    network_features,
)
from hwsearch.estimators.latency_table import LatencyTable, TableEntry
from hwsearch.io import file_lock
from hwsearch.ir import LayerSpec, NetSpec
from hwsearch.kernels import DeviceFingerprint, Measurement, TimerConfig, device_fingerprint
from hwsearch.kernels.profile import measure_layer_chain, measure_network, profile_layer

# Fitting and checking draw networks from disjoint seed streams, so a check never sees a fitted net.
FIT_SEED_OFFSET = 1_000_003



def entry_from_profile(measurement: Measurement, precision: str, sparse: bool) -> TableEntry:
    """A table entry for a measured kernel: median seconds, relative spread, and how it was measured."""
    return TableEntry(
        latency_s=measurement.latency_s,
        spread=measurement.spread,
        extra={"ci_rel": measurement.ci_rel, "samples": float(measurement.samples),
               "rejected": float(measurement.rejected), "inner": float(measurement.inner),
               "median_s": measurement.median_s, "min_s": measurement.min_s,
               "int8": float(precision.startswith("int8")), "sparse": float(sparse)},
    )


@dataclass(frozen=True)
class NetworkSample:
    """One sampled network of a space: its choice and NetSpec."""

    choice: Mapping[str, Any]
    net: NetSpec


class MeasuredLatency:
    """Measured layer table + learned correction for one space on one device setup (see module doc)."""

    def __init__(self, space: str | Any, device: str = "cpu", threads: int | None = None, dtype: str = "fp32",
                 clock: str | None = None, cache_dir: str | os.PathLike | None = None,
                 layer_timer: TimerConfig | None = None, network_timer: TimerConfig | None = None,
                 statistic: str = "median", progress: bool = False) -> None:
        self.space = spaces.get(space) if isinstance(space, str) else space
        self.space_name = self.space.name
        self.fingerprint: DeviceFingerprint = device_fingerprint(device, threads, dtype, clock)
        self.statistic = statistic
        self.layer_timer = replace(layer_timer or TimerConfig(), statistic=statistic)
        self.network_timer = replace(network_timer or TimerConfig.network(), statistic=statistic)
        self.progress = progress
        root = cache_root(cache_dir)
        stem = f"{self.space_name}-{self.fingerprint.device}-{self.fingerprint.digest}"
        if statistic != "median":
            stem += f"-{statistic}"
        self.table_path = root / "tables" / f"{stem}.json"
        self.predictor_path = root / "predictors" / f"{stem}.json"
        self._table_lock = root / "locks" / f"{stem}.lock"
        self._device_lock = root / "locks" / f"measure-{self.fingerprint.device}.lock"
        self._table: LatencyTable | None = None
        self._predictor: LatencyPredictor | None = None
        self._predictor_checked = False

    # ---- the table ---------------------------------------------------------------------------
    @property
    def table_fingerprint(self) -> dict[str, Any]:
        """What the table file must carry: the device fingerprint, the space and the timing statistic."""
        return {"space": self.space_name, "statistic": self.statistic, **self.fingerprint.to_dict()}

    @property
    def table(self) -> LatencyTable:
        """The table as held in memory (read from disk on first use; rebuilt when corrupt or stale)."""
        if self._table is None:
            self._table = self._read_table()
        return self._table

    def _read_table(self) -> LatencyTable:
        if not self.table_path.exists():
            return LatencyTable("measured", self.table_fingerprint)
        try:
            return LatencyTable.load(self.table_path, fingerprint=self.table_fingerprint)
        except CorruptTable as e:
            warnings.warn(f"latency table {self.table_path} is unusable ({e}); rebuilding it", stacklevel=3)
            return LatencyTable("measured", self.table_fingerprint)

    def measure_layer(self, layer: LayerSpec) -> TableEntry:
        """Profile one layer now (no table involved) and return its entry."""
        with file_lock(self._device_lock):
            prof = profile_layer(layer, self.fingerprint, self.layer_timer)
        return entry_from_profile(prof.measurement, prof.precision, prof.sparse)

    def ensure(self, layers: Iterable[LayerSpec]) -> LatencyTable:
        """Make sure every layer is in the table, measuring only the missing ones, and persist them."""
        layers = list(layers)
        if not self.table.missing(layers):
            return self.table
        with file_lock(self._table_lock):
            # Another worker may have measured some of them meanwhile: start from the file's state.
            table = self._read_table()
            for key, entry in self.table.entries.items():
                if key not in table.entries:
                    table.entries[key] = entry
            missing = table.missing(layers)
            if missing:
                table.fill(missing, self.measure_layer, progress=self.progress)
            table.save(self.table_path)
            self._table = table
        return table

    def layer_latency_s(self, layer: LayerSpec) -> float:
        """Seconds of one layer from the table (measured now if missing)."""
        return self.ensure([layer]).entries[layer.key].latency_s

    def lut_sum_s(self, net: NetSpec) -> float:
        """Plain sum of the measured layer latencies of ``net`` (seconds)."""
        self.ensure(net.distinct_layers())
        return self.table.predict(net)

    # ---- the predictor -----------------------------------------------------------------------
    @property
    def predictor(self) -> LatencyPredictor | None:
        """The fitted correction for this setup, or None when none was fitted (or it was stale)."""
        if not self._predictor_checked:
            self._predictor_checked = True
            try:
                self._predictor = LatencyPredictor.load(self.predictor_path, fingerprint=self.table_fingerprint)
            except FileNotFoundError:
                self._predictor = None
            except CorruptTable as e:
                warnings.warn(f"latency predictor {self.predictor_path} is unusable ({e}); refit it with "
                              f"`hwsearch profile --space {self.space_name}`", stacklevel=2)
                self._predictor = None
        return self._predictor

    def features(self, net: NetSpec) -> dict[str, float]:
        """Predictor features of ``net`` (measures any layer the table lacks)."""
        table = self.ensure(net.distinct_layers())
        return network_features(net, lambda layer: table.entries[layer.key].latency_s)

    def predict_s(self, net: NetSpec) -> float:
        """Predicted end-to-end seconds: table sum plus the learned correction where one was fitted."""
        feats = self.features(net)
        return self.predictor.predict_features(feats) if self.predictor else lut_sum_s(feats)

    def predict_choice_s(self, choice: Mapping[str, Any]) -> float:
        """Predicted end-to-end seconds of a choice of the space at batch 1."""
        return self.predict_s(self.space.to_netspec(choice))

    # ---- whole networks ----------------------------------------------------------------------
    def measure_choice(self, choice: Mapping[str, Any], batch: int = 1, seed: int = 0) -> Measurement:
        """Build ``choice`` and measure one forward pass end to end on this device."""
        model = self.space.build(choice)
        with file_lock(self._device_lock):
            return measure_network(model, self.space.input_shape(choice), self.fingerprint, batch=batch,
                                   timer=self.network_timer, seed=seed)

    def measure_netspec(self, net: NetSpec) -> Measurement:
        """Run the layers of ``net`` back to back as real kernels and time the chain end to end."""
        with file_lock(self._device_lock):
            return measure_layer_chain(net.layers, self.fingerprint, self.network_timer)

    def sample(self, n: int, seed: int, exclude: Iterable[str] = ()) -> list[NetworkSample]:
        """``n`` distinct networks sampled with ``seed``, none whose NetSpec key is in ``exclude``."""
        if n < 1:
            raise ConfigError(f"number of networks n={n} must be at least 1")
        rng = np.random.default_rng(seed)
        seen = set(exclude)
        out: list[NetworkSample] = []
        for _ in range(50 * n):
            choice = self.space.sample(rng)
            net = self.space.to_netspec(choice)
            if net.key in seen:
                continue
            seen.add(net.key)
            out.append(NetworkSample(choice, net))
            if len(out) == n:
                return out
        raise ConfigError(f"space {self.space_name!r} yielded only {len(out)} distinct new networks; ask for fewer")

    def profile_space(self, n_networks: int, seed: int = 0) -> LatencyTable:
        """Fill the table with every distinct layer of ``n_networks`` sampled networks and the references."""
        nets = [s.net for s in self.sample(n_networks, seed)]
        nets += [self.space.to_netspec(self.space.reference(r)) for r in self.space.references()]
        layers = {layer.key: layer for net in nets for layer in net.distinct_layers()}
        return self.ensure(layers.values())

    def fit(self, n_networks: int = 100, seed: int = 0, test_share: float = 0.25,
            on_network: Callable[[int, dict[str, float]], None] | None = None) -> LatencyPredictor:
        """Measure ``n_networks`` sampled networks end to end, fit the correction and save it."""
        samples = self.sample(n_networks, FIT_SEED_OFFSET + seed)
        feats = [self.features(s.net) for s in samples]
        measured = []
        for i, s in enumerate(samples):
            measured.append(self.measure_choice(s.choice).latency_s)
            if on_network:
                on_network(i, {"predicted_s": lut_sum_s(feats[i]), "measured_s": measured[-1]})
        pred = fit_predictor(feats, measured, self.table_fingerprint, self.space_name, test_share, seed)
        report = dict(pred.report)
        report["fitted_networks"] = [s.net.key for s in samples]
        pred = LatencyPredictor(pred.fingerprint, pred.space, pred.mean, pred.scale, pred.coef, pred.intercept_ms,
                                pred.alpha, report)
        with file_lock(self._table_lock):
            pred.save(self.predictor_path)
        self._predictor, self._predictor_checked = pred, True
        return pred

    def check(self, n: int, seed: int = 0, noise_floor: bool = False,
              on_network: Callable[[int, dict[str, float]], None] | None = None,
              uncorrected: bool = False) -> dict[str, Any]:
        """Predict and measure ``n`` networks never used for fitting; accuracy figures as a dict.

        Keys: ``within_10pct``, ``rmspe`` (percent), ``kendall_tau``, ``n``; also ``lut_sum`` (the
        same figures for the uncorrected table sum), ``corrected`` (whether a fitted predictor was
        used) and, with ``noise_floor``, ``noise_floor``: the same figures for a second measurement
        of every network against its first (taken after all first measurements). Without a fitted
        correction this refuses to run unless ``uncorrected`` asks for the table sum alone: checking
        the prediction of a space that was never profiled would report the wrong predictor.
        """
        if self.predictor is None and not uncorrected:
            raise MissingTable(f"no fitted latency correction for {self.space_name} on {self.fingerprint.label} in "
                           f"{self.predictor_path.parent}; run `hwsearch profile --space {self.space_name}` first "
                           "(or pass --uncorrected to check the table sum alone)")
        fitted = set(self.predictor.report.get("fitted_networks", ())) if self.predictor else set()
        samples = self.sample(n, seed, exclude=fitted)
        predicted, base, measured = [], [], []
        for i, s in enumerate(samples):
            feats = self.features(s.net)
            base.append(lut_sum_s(feats))
            predicted.append(self.predictor.predict_features(feats) if self.predictor else base[-1])
            measured.append(self.measure_choice(s.choice).latency_s)
            if on_network:
                on_network(i, {"predicted_s": predicted[-1], "measured_s": measured[-1]})
        out: dict[str, Any] = dict(accuracy_report(predicted, measured))
        out["lut_sum"] = accuracy_report(base, measured)
        out["corrected"] = self.predictor is not None
        out["device"] = self.fingerprint.label
        out["space"] = self.space_name
        out["seed"] = seed
        out["median_measured_ms"] = float(np.median(measured) * 1e3)
        out["statistic"] = self.statistic
        if noise_floor:
            again = [self.measure_choice(s.choice, seed=1).latency_s for s in samples]
            out["noise_floor"] = accuracy_report(again, measured)
        return out


def device_latency_ms(space: str, net: NetSpec, device: str = "cpu", threads: int | None = None,
                      statistic: str = "median", cache_dir: str | os.PathLike | None = None,
                      measure: bool = False, dtype: str = "fp32") -> dict[str, float]:
    """Latency of a network on this machine, in ms: ``predicted`` (table + correction), ``lut`` (plain
    table sum) and, with ``measure``, ``measured_layers`` (its layers run back to back as real kernels)."""
    est = estimator(space, device, threads, statistic, cache_dir, dtype)
    feats = est.features(net)
    out = {"predicted": (est.predictor.predict_features(feats) if est.predictor else lut_sum_s(feats)) * 1e3,
           "lut": lut_sum_s(feats) * 1e3}
    if measure:
        out["measured_layers"] = est.measure_netspec(net).latency_s * 1e3
    return out


def predicted_latency_ms(space: str, choice: Mapping[str, Any], device: str = "cpu",
                         cache_dir: str | os.PathLike | None = None, measure: bool = False) -> dict[str, float]:
    """``latency_ms`` of a choice of a space on this machine, predicted; with ``measure`` also
    ``measured_latency_ms``: the built network's forward measured end to end."""
    est = estimator(space, device, cache_dir=cache_dir)
    out = {"latency_ms": est.predict_choice_s(choice) * 1e3}
    if measure:
        out["measured_latency_ms"] = est.measure_choice(choice).latency_s * 1e3
    return out


_ESTIMATORS: dict[tuple[Any, ...], MeasuredLatency] = {}


def estimator(space: str, device: str = "cpu", threads: int | None = None, statistic: str = "median",
              cache_dir: str | os.PathLike | None = None, dtype: str = "fp32") -> MeasuredLatency:
    """One shared `MeasuredLatency` per process and setup, so the table is read from disk once, not per trial."""
    key = (space, device, threads, statistic, str(cache_root(cache_dir)), dtype)
    if key not in _ESTIMATORS:
        _ESTIMATORS[key] = MeasuredLatency(space, device, threads=threads, dtype=dtype, statistic=statistic,
                                           cache_dir=cache_dir)
    return _ESTIMATORS[key]


__all__ = ["FIT_SEED_OFFSET", "MeasuredLatency", "NetworkSample", "cache_root", "device_latency_ms",
           "entry_from_profile", "estimator", "predicted_latency_ms"]
