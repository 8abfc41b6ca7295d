"""What an accelerator that declares attention or vector sparsity skips, and what the skipping costs it.

Hardware that declares ``sparse_attention`` skips the masked positions of a static attention mask
(the ``density`` of a QK^T or AV matmul and of a softmax, see `hwsearch.ir`), as ViTCoD (You et al.,
HPCA 2023) runs ViT attention maps pruned to fixed patterns and SpAtten (Wang et al., HPCA 2021)
skips pruned tokens and heads. Hardware that declares ``vector_sparsity`` skips the pruned weight
vectors of a linear layer whose ``tile`` runs along a direction it supports and whose length its
``vector_length`` divides (a pruned vector of 8 is two pruned hardware vectors of 4), as TF-MVP
(Yoo et al., DAC 2023) runs GPT-2 pruned in mixed-length row and column vectors on reconfigurable
PEs. Anything else is priced dense: no skipping without declared support, and none for a tile the
hardware's vectors do not fit.

Skipping is not free, and the model charges three overheads. The papers motivate each but do not
give them as per-layer formulas, so the formulas are ours:

- *Index storage and traffic.* A static attention mask is read as a bitmap of one bit per map
  position by every layer it masks; pruned weight vectors as one bit per hardware vector. The index
  is counted in DRAM and buffer bytes and in energy, and its load is not hidden behind compute.
- *Load imbalance across PE rows.* The rows of the masked matrix (query rows of a map, output rows
  of a weight matrix) run in lockstep on the PE rows, so each step waits for the densest of them
  (the vector unit packs a softmax's kept entries across its lanes, so it does not wait).
  With the rows' kept shares of mean ``density`` and spread ``density_std``, the expected densest
  of ``G`` rows is taken as ``density + density_std * sqrt(2 ln G)``, the standard bound on the
  maximum of ``G`` normal samples. ViTCoD's split into denser and sparser workloads exists to cut
  exactly this waiting; an even mask (``density_std`` 0) pays none.
- *A floor.* A PE row decodes one native-width word of index per cycle, so it cannot step through
  map positions (or hardware vectors) faster than ``native_bits`` of them per cycle, however few are
  kept.

The array level prices a skipped layer as the dense layer with the skipped dimension shrunk to the
share the array still steps through (`Skip.proxy`): QK^T computes fewer scores per query row, AV
and a row-vector-pruned linear layer reduce over fewer inputs, a column-vector-pruned one produces
fewer outputs per input. `hwsearch.hwmodel.cost` costs the proxy with the ordinary mapper, then
counts the layer's own MACs and adds the index.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hwsearch.hwmodel.mapping import macs_per_pe_cycle
from hwsearch.hwmodel.spec import Accelerator
from hwsearch.ir import LayerSpec


@dataclass(frozen=True)
class Skip:
    """How hardware that declares support runs one sparse layer."""

    kind: str              # "attention" or "vector"
    time_share: float      # share of the skipped dimension the array still steps through
    index_bytes: float     # index metadata the layer reads (bytes)
    proxy: LayerSpec | None  # the dense layer with the same array cycles (None for a softmax)
    direction: str = ""    # vector sparsity: "row" or "col"


def lockstep_share(density: float, std: float, rows: int) -> float:
    """Expected kept share of the densest of ``rows`` rows run in lockstep (at most 1)."""
    if rows <= 1 or std <= 0:
        return density
    return min(1.0, density + std * math.sqrt(2.0 * math.log(rows)))


def vector_direction(layer: LayerSpec, accel: Accelerator) -> str:
    """The direction ("row" or "col") in which ``accel`` skips the pruned vectors of ``layer``, or
    "" when it cannot: no declared support, or hardware vectors that do not divide the layer's."""
    if accel.vector_sparsity == "none" or layer.op != "linear" or layer.tile is None or layer.density >= 1.0:
        return ""
    rows, cols = layer.tile
    length = accel.vector_length
    # A tile of rows x cols is `rows` row vectors of `cols` weights, or `cols` column vectors of `rows`.
    if accel.vector_sparsity in ("row", "both") and cols % length == 0:
        return "row"
    if accel.vector_sparsity in ("col", "both") and rows % length == 0:
        return "col"
    return ""


def skip(layer: LayerSpec, accel: Accelerator) -> Skip | None:
    """How ``accel`` skips the sparse work of ``layer``, or None when it prices the layer dense."""
    if accel.sparse_attention and layer.op in ("matmul", "softmax") and layer.density < 1.0:
        # A PE row (a vector lane) decodes `native_bits` positions of the bitmap per cycle.
        if layer.op == "softmax":
            return Skip("attention", layer.density, layer.map_elems / 8, None)
        floor = macs_per_pe_cycle(layer, accel) / accel.native_bits
        share = max(lockstep_share(layer.density, layer.density_std, accel.pe_rows), floor)
        if layer.map_is_input:
            proxy = layer.with_(c=max(1, math.ceil(layer.c * share)), density=1.0, density_std=0.0)
        else:
            proxy = layer.with_(k=max(1, math.ceil(layer.k * share)), density=1.0, density_std=0.0)
        return Skip("attention", share, layer.map_elems / 8, proxy)
    direction = vector_direction(layer, accel)
    if not direction:
        return None
    length = accel.vector_length
    floor = macs_per_pe_cycle(layer, accel) / (accel.native_bits * length)
    share = max(lockstep_share(layer.density, layer.density_std, accel.pe_rows), floor)
    if direction == "row":
        proxy = layer.with_(c=max(1, math.ceil(layer.c * share)), density=1.0, density_std=0.0, tile=None)
    else:
        proxy = layer.with_(k=max(1, math.ceil(layer.k * share)), density=1.0, density_std=0.0, tile=None)
    return Skip("vector", share, layer.weight_params / length / 8, proxy, direction)


def softmax_cycles(layer: LayerSpec, accel: Accelerator, lanes: float, ops_per_elem: int) -> int:
    """Vector-unit cycles of a masked softmax on hardware that skips: the kept entries' operations
    (packed across the lanes, so no lockstep wait), but never fewer cycles than scanning the
    bitmap, one ``native_bits`` word per lane per cycle."""
    kept = layer.effective_vector_ops * ops_per_elem
    scan = layer.map_elems / (accel.vector_lanes * accel.native_bits)
    return max(1, math.ceil(kept / lanes), math.ceil(scan))


__all__ = ["Skip", "lockstep_share", "skip", "vector_direction", "softmax_cycles"]
