"""Named accelerator presets, each with the published source of its numbers.

A preset is one decorated factory; `hwsearch hw presets` lists them without being edited. Where a
paper does not give a number the model needs (a clock, a DRAM width), the value chosen is marked as
ours in its source line. The factories go in `hwsearch.hwmodel.spec.PRESETS`, the registry
`Accelerator.preset` looks in (it imports this module on its first lookup).
"""

from __future__ import annotations

from collections.abc import Callable

from hwsearch.hwmodel.spec import PRESETS, Accelerator

KiB = 1024
MiB = 1024 * 1024

# The text citing where each preset's numbers come from, by preset name.
SOURCES: dict[str, str] = {}


def register(name: str, source: str) -> Callable[[Callable[[], Accelerator]], Callable[[], Accelerator]]:
    """Decorator adding a preset factory (and the text citing where its numbers come from)."""

    def add(factory: Callable[[], Accelerator]) -> Callable[[], Accelerator]:
        SOURCES[name] = source
        return PRESETS.add(name, factory)

    return add


def get(name: str) -> Accelerator:
    """The preset called ``name``."""
    return Accelerator.preset(name)


def names() -> list[str]:
    """Preset names, sorted."""
    return PRESETS.names()


@register("eyeriss", "Chen et al., ISCA 2016 / JSSC 2017: 12x14 PEs, row-stationary, 108 KB global buffer, "
                     "16-bit fixed point, per-PE scratchpads of 12 ifmap + 224 filter + 24 psum 16-bit words "
                     "(520 B), 200 MHz core clock for the AlexNet measurements, 64-bit off-chip link at 90 MHz "
                     "(3.6 bytes per core cycle); energies from Accelergy's 65 nm Eyeriss-like exercise")
def _eyeriss() -> Accelerator:
    return Accelerator(pe_rows=12, pe_cols=14, rf_bytes=520, glb_bytes=108 * KiB, dram_bw=64 / 8 * 90e6 / 200e6, clock_hz=200e6,
                       dataflow="rs", native_bits=16, precisions=(16,), vector_lanes=4, tech="65nm-eyeriss",
                       name="eyeriss")


@register("nvdla-small", "NVDLA hardware primer, nv_small: 64 INT8 MACs (atomic-C 8 x atomic-K 8), 128 KB "
                         "convolution buffer, direct convolution with weights held in the MAC cells; 1 GHz "
                         "and an 8-byte DRAM port are our choices")
def _nvdla_small() -> Accelerator:
    return Accelerator(pe_rows=8, pe_cols=8, rf_bytes=8, glb_bytes=128 * KiB, dram_bw=8.0, clock_hz=1e9,
                       dataflow="ws", native_bits=8, precisions=(8,), vector_lanes=8, name="nvdla-small")


@register("tpu-v1", "Jouppi et al., ISCA 2017: 256x256 8-bit weight-stationary systolic array at 700 MHz, "
                    "24 MiB unified buffer (activations), 4 MiB of 32-bit accumulators, a 4-tile (256 KiB) "
                    "weight FIFO, 34 GB/s weight memory (48.6 bytes/cycle)")
def _tpu_v1() -> Accelerator:
    return Accelerator(pe_rows=256, pe_cols=256, rf_bytes=4, ifmap_sram_bytes=24 * MiB,
                       filter_sram_bytes=256 * KiB, ofmap_sram_bytes=4 * MiB, dram_bw=34e9 / 700e6,
                       clock_hz=700e6, dataflow="ws", native_bits=8, precisions=(8,), vector_lanes=256,
                       name="tpu-v1")


@register("edge-systolic", "an illustrative edge NPU (ours): 16x16 8-bit output-stationary systolic array with "
                           "SCALE-Sim-style separate SRAMs (64/64/32 KiB), 500 MHz, 8 bytes/cycle to DRAM")
def _edge_systolic() -> Accelerator:
    return Accelerator(pe_rows=16, pe_cols=16, rf_bytes=8, ifmap_sram_bytes=64 * KiB, filter_sram_bytes=64 * KiB,
                       ofmap_sram_bytes=32 * KiB, dram_bw=8.0, clock_hz=500e6, dataflow="os", native_bits=8,
                       precisions=(8,), vector_lanes=16, name="edge-systolic")


@register("bitfusion", "Sharma et al., ISCA 2018: 512 fusion units (16x32) of 2-bit bit-bricks, 8-bit native, "
                       "2/4/8-bit operands at (8/b_w)(8/b_a) MACs per unit per cycle, 500 MHz at 45 nm, 112 KB "
                       "of on-chip SRAM (our split: 32 KiB inputs, 64 KiB weights, 16 KiB outputs); "
                       "16 bytes/cycle to DRAM is our choice")
def _bitfusion() -> Accelerator:
    return Accelerator(pe_rows=16, pe_cols=32, rf_bytes=8, ifmap_sram_bytes=32 * KiB, filter_sram_bytes=64 * KiB,
                       ofmap_sram_bytes=16 * KiB, dram_bw=16.0, clock_hz=500e6, dataflow="ws", native_bits=8,
                       precisions=(2, 4, 8), vector_lanes=16, name="bitfusion")


@register("edge-sparse", "edge-systolic (ours) declaring the sparsity support of two transformer accelerators: "
                         "a static attention mask's scores, probabilities and softmax entries skipped, as ViTCoD "
                         "(You et al., HPCA 2023) runs ViT attention maps pruned to fixed patterns; pruned weight "
                         "vectors skipped along rows or columns, as TF-MVP (Yoo et al., DAC 2023) runs GPT-2 "
                         "pruned in mixed-length vectors on reconfigurable PEs. The hardware vector of 2 weights "
                         "is our choice (every length the project's vector pruning picks, 16/8/4/2, is a "
                         "multiple of it); array, buffers and clock are edge-systolic's, so the two compare "
                         "the support alone")
def _edge_sparse() -> Accelerator:
    return _edge_systolic().with_(sparse_attention=True, vector_sparsity="both", vector_length=2, name="edge-sparse")
