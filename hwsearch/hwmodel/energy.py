"""Per-access energy and area tables, with the published source of every entry.

Energies are per byte moved (memories) or per 8-bit x 8-bit MAC (compute); a MAC of ``p_w x p_a``
bits costs ``p_w * p_a / 64`` of the 8-bit one, since a multiplier's energy grows with the product of
its operand widths (Bit Fusion's bit-bricks make that exact). SRAM energy per byte grows with the
square root of the capacity (bit-line and word-line length, the trend CACTI reports); the table gives
it at a reference size. Tables are a registry keyed by the accelerator's ``tech`` field.

Area counts PEs, register files and SRAM; hardware that declares ``sparse_attention`` or
``vector_sparsity`` also pays for its skip logic and index buffers (`sparse_area_um2`, an assumed share
of the PE array, since the papers do not break it out), and hardware that declares neither has the
area it always had.

This module imports nothing from the rest of the model (the spec validates ``tech`` against `TABLES`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hwsearch.registry import Registry

if TYPE_CHECKING:
    from hwsearch.hwmodel.spec import Accelerator


@dataclass(frozen=True)
class EnergyTable:
    """Per-access energies (pJ) and area densities of one technology, each entry with its source."""

    name: str
    mac_pj: float                 # one 8-bit x 8-bit multiply-accumulate
    rf_ifmap_pj: float            # register-file access, per byte
    rf_weight_pj: float
    rf_psum_pj: float
    noc_pj: float                 # array network (buffer <-> PE and PE <-> PE), per byte
    sram_read_pj: float           # global buffer / SRAM at sram_ref_bytes, per byte
    sram_write_pj: float
    sram_ref_bytes: int
    dram_pj: float                # off-chip DRAM, per byte
    vector_pj: float              # one 8-bit element operation of the vector unit
    pe_um2: float                 # one 8-bit MAC PE with its pipeline registers and control
    rf_um2_per_byte: float
    sram_um2_per_byte: float
    sources: Mapping[str, str] = field(default_factory=dict)

    def sram_pj(self, size_bytes: float, write: bool = False) -> float:
        """Energy per byte of an SRAM of ``size_bytes``, never below a register-file access."""
        base = self.sram_write_pj if write else self.sram_read_pj
        scaled = base * math.sqrt(max(size_bytes, 1.0) / self.sram_ref_bytes)
        return max(scaled, self.rf_psum_pj)


# Technology tables by name; `register(table)` adds one.
TABLES: Registry[EnergyTable] = Registry("energy table")


def register(table: EnergyTable) -> EnergyTable:
    """Add a technology table to the registry."""
    return TABLES.add(table.name, table)


def get(name: str) -> EnergyTable:
    """The table registered as ``name``."""
    return TABLES.get(name)


def names() -> list[str]:
    """Registered table names, sorted."""
    return TABLES.names()


register(EnergyTable(
    name="45nm",
    mac_pj=0.23,
    rf_ifmap_pj=0.072, rf_weight_pj=0.072, rf_psum_pj=0.072,
    noc_pj=0.144,
    sram_read_pj=4.05, sram_write_pj=4.05, sram_ref_bytes=128 * 1024,
    dram_pj=160.0,
    vector_pj=0.225,
    pe_um2=480.0, rf_um2_per_byte=16.0, sram_um2_per_byte=5.5,
    sources={
        "mac_pj": "Horowitz, ISSCC 2014, 45 nm: 8-bit int multiply 0.2 pJ + 8-bit add 0.03 pJ",
        "rf_*_pj": "Accelergy 45 nm exercise: register access 0.144 pJ per 16-bit word",
        "noc_pj": "Eyeriss (Chen et al., ISCA 2016): PE-to-PE transfer costs 2x a register-file access",
        "sram_*_pj": "Accelergy 45 nm exercise: 128 KB global buffer 32.4 pJ per 64 bits; sqrt(size) scaling "
                     "(agrees within 25% with Horowitz's 8 KB SRAM, 5 pJ per 32-bit read)",
        "dram_pj": "Horowitz, ISSCC 2014: 640 pJ per 32-bit DRAM read",
        "vector_pj": "Horowitz, ISSCC 2014: 32-bit float add 0.9 pJ, scaled linearly to 8 bits",
        "pe_um2": "Horowitz, ISSCC 2014, 45 nm: 8-bit multiplier 282 um^2 + 8-bit adder 36 um^2, "
                  "x1.5 for pipeline registers and control (our assumption)",
        "rf_um2_per_byte": "latch-based register file, 2 um^2 per bit at 45 nm (our assumption)",
        "sram_um2_per_byte": "45 nm 6T bit cell 0.346 um^2 at 50% array efficiency (Intel 45 nm, IEDM 2007)",
    },
))

register(EnergyTable(
    name="65nm-eyeriss",
    mac_pj=0.208,
    rf_ifmap_pj=0.20, rf_weight_pj=1.98, rf_psum_pj=0.25,
    noc_pj=0.40,
    sram_read_pj=18.2 / 8, sram_write_pj=14.1 / 8, sram_ref_bytes=128 * 1024,
    dram_pj=512.0 / 8,
    vector_pj=0.208,
    pe_um2=480.0 * (65 / 45) ** 2, rf_um2_per_byte=16.0 * (65 / 45) ** 2,
    sram_um2_per_byte=5.5 * (65 / 45) ** 2,
    sources={
        "mac_pj": "Accelergy Eyeriss-like 65 nm exercise: 8-bit MAC 0.208 pJ",
        "rf_*_pj": "Accelergy Eyeriss-like 65 nm exercise: ifmap spad 0.20 pJ, weight spad (192 entries) "
                   "1.98 pJ, psum spad 0.25 pJ per 8-bit access",
        "noc_pj": "Eyeriss (ISCA 2016): PE-to-PE = 2x a register-file access (2 x 0.20 pJ)",
        "sram_*_pj": "Accelergy Eyeriss-like 65 nm exercise: 128 KB global buffer 18.2 pJ read / 14.1 pJ "
                     "write per 64 bits",
        "dram_pj": "Accelergy Eyeriss-like 65 nm exercise: LPDDR4 512 pJ per 64 bits",
        "vector_pj": "taken equal to one MAC (no published figure for Eyeriss' pooling/ReLU unit)",
        "area": "45 nm densities scaled by (65/45)^2",
    },
))


def table(accel: Accelerator) -> EnergyTable:
    """The energy table named by ``accel.tech``."""
    return TABLES[accel.tech]


def mac_pj(t: EnergyTable, bits_w: int, bits_a: int) -> float:
    """Energy of one MAC executed at ``bits_w x bits_a`` (per pass widths)."""
    return t.mac_pj * bits_w * bits_a / 64.0


# Area of declared sparsity support (`sparse_area_um2`). Neither ViTCoD, SpAtten nor TF-MVP states the
# area of its skipping logic apart from the rest of its design, so these shares are our assumption,
# kept modest: the logic is a bitmap decoder and a skip/compaction mux in front of each PE, small
# beside its multiplier, and priced as a share of the PE's area.
SPARSE_ATTENTION_PE_SHARE = 0.05  # decode one bitmap word and skip masked scores (per PE)
VECTOR_SPARSITY_PE_SHARE = 0.05   # skip pruned weight vectors in one direction (per PE, per direction)
INDEX_WORDS_PER_ROW = 2           # index buffer: one native word per PE row being used, one being loaded


def sparse_area_um2(accel: Accelerator) -> float:
    """Extra area (um^2) of the sparsity support ``accel`` declares: skip logic as a share of the
    PE array and a double-buffered index word per PE row and direction; 0 when it declares none."""
    features = int(accel.sparse_attention) + {"none": 0, "row": 1, "col": 1, "both": 2}[accel.vector_sparsity]
    if not features:
        return 0.0
    t = table(accel)
    pe = t.pe_um2 * (accel.native_bits / 8) ** 2 * accel.num_pes
    directions = features - int(accel.sparse_attention)
    logic = pe * (SPARSE_ATTENTION_PE_SHARE * int(accel.sparse_attention) + VECTOR_SPARSITY_PE_SHARE * directions)
    index = t.rf_um2_per_byte * INDEX_WORDS_PER_ROW * (accel.native_bits / 8) * accel.pe_rows * features
    return logic + index


def area_mm2(accel: Accelerator) -> float:
    """PEs (scaled by the square of the multiplier width) + register files + on-chip SRAM, and the
    logic and index buffers of declared sparsity support (`sparse_area_um2`), in mm^2."""
    t = table(accel)
    pe = t.pe_um2 * (accel.native_bits / 8) ** 2 * accel.num_pes
    rf = t.rf_um2_per_byte * accel.rf_bytes * accel.num_pes
    sram = t.sram_um2_per_byte * accel.buffer_bytes
    extra = sparse_area_um2(accel)
    if not extra:
        return (pe + rf + sram) * 1e-6  # hardware without sparsity support: the area it always had
    return (pe + rf + sram + extra) * 1e-6


def peak_power_w(accel: Accelerator) -> float:
    """Every PE doing one native MAC with four register-file accesses per cycle, the array edge fed
    from the buffers at one word per row and column, and DRAM at full bandwidth."""
    t = table(accel)
    word = accel.native_bits / 8
    per_pe = mac_pj(t, accel.native_bits, accel.native_bits) + word * (
        t.rf_ifmap_pj + t.rf_weight_pj + 2 * t.rf_psum_pj)
    buf_size = accel.glb_bytes or max(accel.ifmap_sram_bytes, accel.filter_sram_bytes, accel.ofmap_sram_bytes)
    edge = (accel.pe_rows + accel.pe_cols) * word * (t.sram_pj(buf_size) + t.noc_pj)
    dram = accel.dram_bw * t.dram_pj
    return (accel.num_pes * per_pe + edge + dram) * accel.clock_hz * 1e-12
