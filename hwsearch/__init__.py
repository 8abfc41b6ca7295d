"""hwsearch: co-search of compressed neural networks and accelerator configurations.

The vocabulary is `hwsearch.ir` (`LayerSpec`, `NetSpec`); search spaces live in `hwsearch.spaces`,
the analytical accelerator model in `hwsearch.hwmodel`, measured kernels in `hwsearch.kernels`,
lookup tables and counters in `hwsearch.estimators`, compression in `hwsearch.compress`, searchers
and the Ray Tune driver in `hwsearch.search`.
"""

from hwsearch.ir import LayerSpec, NetSpec

__version__ = "0.1.0"
__all__ = ["LayerSpec", "NetSpec", "__version__"]
