"""Real kernel profiling on this machine: LayerSpec -> torch kernel, noise-controlled timers, fingerprints.

`make_kernel` turns a layer into a runnable kernel in the precision the device executes,
`profile_layer` times it, `measure_network` times a whole module end to end, and
`device_fingerprint` says what the numbers are valid for. CUDA paths exist behind
`torch.cuda.is_available()`.
"""

from hwsearch.kernels.fingerprint import DeviceFingerprint, device_fingerprint
from hwsearch.kernels.ops import Kernel, NoKernel, make_kernel, precision_for
from hwsearch.kernels.profile import measure_network, profile_layer, threads_pinned
from hwsearch.kernels.timing import Measurement, TimerConfig, time_fn

__all__ = ["DeviceFingerprint", "Kernel", "Measurement", "NoKernel", "TimerConfig", "device_fingerprint",
           "make_kernel", "measure_network", "precision_for", "profile_layer", "threads_pinned", "time_fn"]
