"""Built-in analytical accelerator model: mapping, cycles, traffic, energy and area (numpy only).

`Accelerator` describes the hardware (`Accelerator.preset(name)`, JSON/YAML, SCALE-Sim ``.cfg``);
`cost(layer, accel, objective, mode)` gives a `LayerCost` (``mode``: ``fast``, the fixed unrolling
the co-search uses, or ``search``, which also searches the spatial unrolling; or ``unroll=Unrolling(...)``,
a spatial unrolling the caller fixes), `network_cost(netspec, accel)` a `NetworkCost`, and
`hardware_metrics(netspec, accel)` the numbers a search reports; `hwsearch.hwmodel.sparse` says what
hardware that declares attention or vector sparsity skips. Nothing here imports torch.
"""

from hwsearch.hwmodel.cost import (
    DEFAULT_MODE,
    LEVELS,
    MODES,
    LayerCost,
    NetworkCost,
    cache_clear,
    cost,
    costs,
    hardware_metrics,
    network_cost,
)
from hwsearch.hwmodel.energy import TABLES, EnergyTable
from hwsearch.hwmodel.presets import PRESETS, SOURCES
from hwsearch.hwmodel.presets import names as preset_names
from hwsearch.hwmodel.scalesim_io import read_cfg, read_topology
from hwsearch.hwmodel.spec import DATAFLOWS, SPARSITY, VECTOR_SPARSITY, Accelerator
from hwsearch.hwmodel.unroll import Unrolling

# Bump whenever a change to the model changes any number it reports: tables built by an older model
# then fail their fingerprint check and are rebuilt.
MODEL_VERSION = 1

__all__ = [
    "Accelerator", "DATAFLOWS", "SPARSITY", "VECTOR_SPARSITY", "LEVELS", "LayerCost", "NetworkCost", "EnergyTable", "TABLES",
    "PRESETS", "SOURCES", "preset_names", "cost", "costs", "network_cost", "MODEL_VERSION", "hardware_metrics", "cache_clear",
    "read_cfg", "read_topology", "MODES", "DEFAULT_MODE", "Unrolling",
]
