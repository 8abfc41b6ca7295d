"""Timing layers and whole networks on a device, with a pinned thread count.

`profile_layer` measures one `LayerSpec` as a real kernel; `measure_network` measures a built
`torch.nn.Module` end to end at a given batch size. Both pin torch's intra-op thread count for the
duration (and restore it), run under ``torch.inference_mode()`` as a deployed forward does, and use
the noise-controlled timer of `hwsearch.kernels.timing` with the clock the fingerprint names. On
CUDA the clock is a pair of CUDA events around the batch of calls (host timers would measure the
launch, not the kernel).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from hwsearch.ir import LayerSpec
from hwsearch.kernels.fingerprint import DeviceFingerprint, check_device
from hwsearch.kernels.ops import make_kernel, quiet_deprecations
from hwsearch.kernels.timing import (
    Clock,
    Measurement,
    TimerConfig,
    perf_counter_clock,
    thread_cpu_clock,
    time_fn,
)


@dataclass(frozen=True)
class LayerProfile:
    """A measured layer: its timing and what actually executed it."""

    layer: LayerSpec
    precision: str
    sparse: bool
    notes: str
    measurement: Measurement

    @property
    def latency_s(self) -> float:
        """Seconds per call by the timer's statistic."""
        return self.measurement.latency_s


@contextlib.contextmanager
def threads_pinned(threads: int) -> Iterator[None]:
    """Run torch on exactly ``threads`` intra-op threads, restoring the previous count afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def cuda_event_clock(fn: Callable[[], Any], inner: int) -> float:
    """Seconds of ``inner`` calls on the current CUDA stream, timed by CUDA events."""
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(inner):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / 1e3


def clock_for(fingerprint: DeviceFingerprint) -> Clock:
    """The interval clock the fingerprint names."""
    return {"cuda_event": cuda_event_clock, "thread": thread_cpu_clock, "wall": perf_counter_clock}[fingerprint.clock]


def profile_layer(layer: LayerSpec, fingerprint: DeviceFingerprint, timer: TimerConfig | None = None,
                  seed: int = 0) -> LayerProfile:
    """Build ``layer`` as a kernel on the fingerprint's device and time it (raises `NoKernel`)."""
    import torch

    kernel = make_kernel(layer, fingerprint.device, fingerprint.dtype, seed=seed)
    with threads_pinned(fingerprint.threads), torch.inference_mode(), quiet_deprecations():
        m = time_fn(kernel.run, timer or TimerConfig(), clock_for(fingerprint))
    return LayerProfile(layer, kernel.precision, kernel.sparse, kernel.notes, m)


def measure_network(module: Any, input_shape: tuple[int, ...], fingerprint: DeviceFingerprint,
                    batch: int = 1, timer: TimerConfig | None = None, seed: int = 0) -> Measurement:
    """End-to-end seconds of one forward pass of ``module`` at ``batch`` on the fingerprint's device."""
    import torch

    check_device(fingerprint.device, fingerprint.dtype)
    dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[fingerprint.dtype]
    module = module.eval().to(device=fingerprint.device, dtype=dtype)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, *input_shape, generator=gen).to(device=fingerprint.device, dtype=dtype)
    with threads_pinned(fingerprint.threads), torch.inference_mode(), quiet_deprecations():
        return time_fn(lambda: module(x), timer or TimerConfig.network(), clock_for(fingerprint))


def measure_layer_chain(layers: Sequence[LayerSpec], fingerprint: DeviceFingerprint,
                        timer: TimerConfig | None = None, seed: int = 0) -> Measurement:
    """Seconds to run every layer's kernel once, back to back in order, timed as one call.

    This is the measured cost of a network known only as a NetSpec (no module to run): the real
    kernels, in network order, with the cache state one layer leaves to the next, but without the
    module's own glue (reshapes, Python control flow). Layers with equal keys share one kernel.
    """
    import torch

    kernels: dict[str, Callable[[], Any]] = {}
    for layer in layers:
        if layer.key not in kernels:
            kernels[layer.key] = make_kernel(layer, fingerprint.device, fingerprint.dtype, seed=seed).run
    chain = [kernels[layer.key] for layer in layers]

    def run_all() -> None:
        for run in chain:
            run()

    with threads_pinned(fingerprint.threads), torch.inference_mode(), quiet_deprecations():
        return time_fn(run_all, timer or TimerConfig.network(), clock_for(fingerprint))


__all__ = ["LayerProfile", "clock_for", "cuda_event_clock", "measure_layer_chain", "measure_network",
           "profile_layer", "threads_pinned"]
