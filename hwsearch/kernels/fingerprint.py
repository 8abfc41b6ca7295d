"""The device fingerprint: what a measured number is valid for.

Latency predictors drift from devices (another CPU, a new torch, more threads, another dtype), so
every measured table and predictor is keyed by this fingerprint, and a table whose stored
fingerprint differs from the machine at hand is rebuilt instead of used. The fingerprint holds what
changes kernel speed and nothing that does not (no hostname: two identical machines share tables).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hwsearch.errors import ConfigError

DEVICES = ("cpu", "cuda")
CLOCKS = ("thread", "wall", "cuda_event")
FLOAT_DTYPES = ("fp32", "fp16", "bf16")
# Bumped whenever the kernels built for a LayerSpec change, so old tables are not reused.
# 2: 'same' convolutions run only the kernel taps a small input can reach (hwsearch.spaces.conv).
KERNELS_VERSION = 2


@dataclass(frozen=True)
class DeviceFingerprint:
    """Identity of a measuring setup: device model, software versions, threads and float dtype."""

    device: str                 # "cpu" or "cuda"
    model: str                  # CPU model name (with family/model/stepping) or GPU name
    torch: str
    threads: int                # intra-op threads used for every measurement
    dtype: str                  # float dtype of full-precision layers: fp32, fp16 or bf16
    clock: str = "wall"         # thread (CPU time of the measuring thread), wall, or cuda_event
    isa: str = ""               # CPU vector ISA torch dispatches to (AVX2, AVX512...)
    quant_engine: str = ""      # torch quantized engine used for int8 CPU kernels
    cuda: str = ""              # CUDA runtime version (cuda only)
    capability: str = ""        # compute capability (cuda only)
    kernels_version: int = KERNELS_VERSION

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (what a table file stores)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DeviceFingerprint:
        """Inverse of `to_dict`."""
        return cls(**dict(d))

    @property
    def digest(self) -> str:
        """Short stable hash, used in cache file names."""
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    @property
    def label(self) -> str:
        """A human-readable one-liner."""
        extra = f", {self.quant_engine} int8" if self.quant_engine else ""
        return (f"{self.device}: {self.model}, torch {self.torch}, {self.threads} thread(s), {self.dtype}{extra}, "
                f"{self.clock} clock")


def cpu_model() -> str:
    """CPU model name plus family/model/stepping (model names alone are often vague in VMs)."""
    name = platform.processor() or platform.machine()
    try:
        info = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return name
    wanted = {"model name": None, "cpu family": None, "model": None, "stepping": None}
    for line in info:
        if ":" not in line:
            continue
        key, value = (p.strip() for p in line.split(":", 1))
        if key in wanted and wanted[key] is None:
            wanted[key] = value
        if not line.strip():
            break
    if wanted["model name"]:
        name = wanted["model name"]
    ids = [f"{k.split()[-1]} {wanted[k]}" for k in ("cpu family", "model", "stepping") if wanted[k]]
    return f"{name} ({', '.join(ids)})" if ids else name


def default_threads() -> int:
    """One thread: the only count that gives repeatable numbers on a machine shared with other work."""
    return 1


def check_device(device: str, dtype: str) -> None:
    """Raise a `ConfigError` for a device or dtype this machine cannot measure."""
    import torch

    if device not in DEVICES:
        raise ConfigError(f"device {device!r} is unknown; use one of {', '.join(DEVICES)}")
    if dtype not in FLOAT_DTYPES:
        raise ConfigError(f"dtype {dtype!r} is unknown; use one of {', '.join(FLOAT_DTYPES)}")
    if device == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' was asked for but torch sees no CUDA GPU here; use --device cpu")
    if device == "cpu" and dtype != "fp32":
        raise ConfigError(f"dtype {dtype!r} is not measured on cpu: this CPU runs fp32 (and int8 for 8-bit "
                          "layers); use fp32")


def default_clock(device: str, threads: int) -> str:
    """CUDA events on a GPU; on a CPU the thread's CPU time when one thread computes, else wall time."""
    if device == "cuda":
        return "cuda_event"
    return "thread" if threads == 1 else "wall"


def device_fingerprint(device: str = "cpu", threads: int | None = None, dtype: str = "fp32",
                       clock: str | None = None) -> DeviceFingerprint:
    """The fingerprint of this machine for measurements on ``device``."""
    import torch

    check_device(device, dtype)
    threads = default_threads() if threads is None else int(threads)
    if threads < 1 or threads > (os.cpu_count() or 1):
        raise ConfigError(f"threads={threads} must lie between 1 and the {os.cpu_count()} CPUs of this machine")
    clock = clock or default_clock(device, threads)
    allowed = ("cuda_event",) if device == "cuda" else (("thread", "wall") if threads == 1 else ("wall",))
    if clock not in allowed:
        raise ConfigError(f"clock {clock!r} cannot time {device} with {threads} thread(s); use one of "
                          f"{', '.join(allowed)} (thread CPU time is a latency only with one thread)")
    if device == "cuda":
        idx = torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(idx)
        return DeviceFingerprint("cuda", torch.cuda.get_device_name(idx), torch.__version__, threads, dtype, clock,
                                 cuda=str(torch.version.cuda), capability=f"{major}.{minor}")
    return DeviceFingerprint("cpu", cpu_model(), torch.__version__, threads, dtype, clock,
                             isa=torch.backends.cpu.get_cpu_capability(), quant_engine=quant_engine())


def quant_engine() -> str:
    """The quantized engine for int8 CPU kernels: x86 (fbgemm + oneDNN) where present, else qnnpack."""
    import torch

    engines = torch.backends.quantized.supported_engines
    for name in ("x86", "fbgemm", "qnnpack"):
        if name in engines:
            return name
    return ""


__all__ = ["CLOCKS", "DEVICES", "FLOAT_DTYPES", "KERNELS_VERSION", "DeviceFingerprint", "check_device", "cpu_model",
           "default_clock", "default_threads", "device_fingerprint", "quant_engine"]
