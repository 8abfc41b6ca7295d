"""The accelerator model beside two peers: Timeloop's published exercise results and ZigZag run live.

Timeloop + Accelergy: the reference outputs of the Eyeriss-like, simple weight-stationary and simple
output-stationary example designs of the Accelergy-Project/timeloop-accelergy-exercises repository
(``workspace/baseline_designs/example_designs/<design>/ref_outputs/default_problem/``: the problem and
architecture in ``inputs/input.yaml``, cycles and energy in ``timeloop-mapper.stats.txt``), taken as
cited facts. All three map one layer: 3 input channels, 32 filters of 3x3, stride 2, pad 1, a
224x224 input (112x112 outputs, 10,838,016 MACs), at 1 GHz with no DRAM bandwidth limit.

ZigZag: run in a separate environment (``pip install zigzag-dse``; set ``HWSEARCH_PEERS_PYTHON`` to
its python) on its bundled TPU-like accelerator and AlexNet workload; each layer ZigZag reports is
costed by the model on the matching accelerator. Skipped, with the reason printed, when no peer
environment is given. Peers are never imported by the package or its tests.

Each layer is costed twice: under the model's own mappings (``search`` and ``fast`` modes), and under
the peer's own spatial unrolling (`hwsearch.hwmodel.Unrolling`: the loop dimensions and factors the
peer put on PE rows and columns, read from Timeloop's published mapping files and from the
``user_spatial_mapping`` ZigZag reports per layer), since a cost model is best judged on the same
mapping. ZigZag's rows are also costed with ``pipelined_folds`` on the TPU-like spec, since that
array double-buffers its weights.

    HWSEARCH_PEERS_PYTHON=<peers venv python> python -m benchmarks.hwmodel_peers
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import write_section  # noqa: E402
from hwsearch.hwmodel import Accelerator, Unrolling, cost  # noqa: E402
from hwsearch.ir import LayerSpec  # noqa: E402

KiB = 1024
REPO = "Accelergy-Project/timeloop-accelergy-exercises"


def timeloop_layer(bits: int) -> LayerSpec:
    """The exercises' layer (problem instance C=3, M=32, R=S=3, P=Q=112, stride 2, pad 1, H=W=224)."""
    return LayerSpec("conv", c=3, k=32, in_h=224, in_w=224, r=3, s=3, stride=2, pad=1, w_bits=bits, a_bits=bits)


# design: (accelerator as the model describes it, data bits, Timeloop cycles, Timeloop energy uJ, commit, note)
TIMELOOP = {
    # 14x12 PEs; per PE 24 B ifmap, 384 B weight and 16 x 16-bit psum scratchpads; 128 KiB global buffer;
    # 8-bit words; Accelergy 65 nm energies (the table our 65nm-eyeriss tech cites).
    "eyeriss_like": (Accelerator(pe_rows=12, pe_cols=14, rf_bytes=24 + 384 + 32, glb_bytes=128 * KiB, dram_bw=1e4,
                                 clock_hz=1e9, dataflow="rs", native_bits=16, precisions=(16,),
                                 tech="65nm-eyeriss", name="timeloop-eyeriss-like"),
                     8, 150_528, 62.26, "b47e6cf", "72 of 168 PEs used (42.86%)"),
    # 16x16 PEs, each a 192 x 16-bit scratchpad and three 16-bit registers; 64 Ki x 16-bit buffer; 45 nm.
    "simple_weight_stationary": (Accelerator(pe_rows=16, pe_cols=16, rf_bytes=384 + 6, glb_bytes=128 * KiB,
                                             dram_bw=1e4, clock_hz=1e9, dataflow="ws", native_bits=16,
                                             precisions=(16,), name="timeloop-simple-ws"),
                                 16, 903_168, 152.10, "82b6304", "12 of 256 PEs used (4.69%)"),
    "simple_output_stationary": (Accelerator(pe_rows=16, pe_cols=16, rf_bytes=384 + 6, glb_bytes=128 * KiB,
                                             dram_bw=1e4, clock_hz=1e9, dataflow="os", native_bits=16,
                                             precisions=(16,), name="timeloop-simple-os"),
                                 16, 677_376, 110.19, "b47e6cf", "16 of 256 PEs used (6.25%)"),
}


# design: (Timeloop's spatial unrolling, where it is stated). Timeloop's Spatial-Y is the PE rows and
# Spatial-X the columns; its M is our k (filters) and its S, the filter dimension that slides with the
# output rows Q, our r.
TIMELOOP_UNROLL = {
    "eyeriss_like": (Unrolling(rows=(("c", 3), ("r", 3)), cols=(("k", 8),)),
                     "`timeloop-mapper.map.txt` (b47e6cf): M 8 Spatial-X, C 3 x S 3 Spatial-Y"),
    # The spatial level of the mapping the stats file describes (same temporal loops, 12 PEs); the
    # design's constraint (split 1 of permutation NQPSRCM) puts every dimension but N on Spatial-Y.
    "simple_weight_stationary": (Unrolling(rows=(("c", 3), ("k", 4))),
                                 "`timeloop-mapper.map.tenssella.txt` (ccaba0c): C 3 x M 4 on Spatial-Y"),
    "simple_output_stationary": (Unrolling(rows=(("k", 16),)),
                                 "`timeloop-mapper.map.txt` (82b6304): M 16 Spatial-Y"),
}


def _within(ratio: float, cycles: bool) -> bool:
    return abs(ratio - 1) <= 0.25 if cycles else 0.5 <= ratio <= 2.0


def timeloop_section() -> list[str]:
    lines = [
        "### Timeloop + Accelergy exercise designs (published reference outputs)", "",
        f"Source: {REPO}, `workspace/baseline_designs/example_designs/<design>/ref_outputs/default_problem/` "
        "(commit given per row). Goal: cycles within 25%, energy within 2x.", "",
        "Own mapping: the model's `search` / `fast` modes. Timeloop's mapping: the model with its spatial "
        "unrolling fixed to the one Timeloop's run used (`cost(layer, accel, unroll=...)`), the buffer tiling "
        "still the model's.", "",
        "| design | Timeloop cycles | model cycles, own mapping: search / fast | ratio | Timeloop's spatial mapping "
        "| model cycles, Timeloop's mapping | ratio | Timeloop energy uJ | model energy uJ, own: search / fast "
        "| ratio | model energy uJ, Timeloop's mapping | ratio |",
        "| --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    met = {"own": [0, 0], "given": [0, 0]}
    for design, (accel, bits, cyc, uj, commit, note) in TIMELOOP.items():
        layer = timeloop_layer(bits)
        unroll, where = TIMELOOP_UNROLL[design]
        s, f = cost(layer, accel, mode="search"), cost(layer, accel, mode="fast")
        g = cost(layer, accel, unroll=unroll)
        for key, c in (("own", s), ("given", g)):
            met[key][0] += _within(c.total_cycles / cyc, True)
            met[key][1] += _within(c.total_energy_pj * 1e-6 / uj, False)
        lines.append(f"| {design} ({commit}) | {cyc:,} | {s.total_cycles:,} / {f.total_cycles:,} | "
                     f"{s.total_cycles / cyc:.2f} | `{unroll}`: {note}; {where} | {g.total_cycles:,} | "
                     f"{g.total_cycles / cyc:.2f} | {uj} | {s.total_energy_pj * 1e-6:.1f} / {f.total_energy_pj * 1e-6:.1f} | "
                     f"{s.total_energy_pj * 1e-6 / uj:.2f} | {g.total_energy_pj * 1e-6:.1f} | "
                     f"{g.total_energy_pj * 1e-6 / uj:.2f} |")
    os_unroll = TIMELOOP_UNROLL["simple_output_stationary"][0]
    os_accel, os_bits, os_cyc = TIMELOOP["simple_output_stationary"][:3]
    os_piped = cost(timeloop_layer(os_bits), os_accel.with_(pipelined_folds=True), unroll=os_unroll).total_cycles
    n = len(TIMELOOP)
    return lines + [
        "",
        f"Goal met on: cycles within 25% on {met['given'][0]} of {n} designs under Timeloop's mapping "
        f"({met['own'][0]} of {n} under the model's own); energy within 2x on {met['given'][1]} of {n} under "
        f"Timeloop's mapping ({met['own'][1]} of {n} under the model's own).",
        "",
        "Under Timeloop's own spatial mapping the Eyeriss-like and weight-stationary cycles agree with Timeloop's "
        "to within 1%: both are MACs / PEs used plus the model's pipeline fill. The output-stationary design misses: "
        "the model prices it as a systolic array, which pays the fill and drain (16 + 16 - 2 cycles) on each of its "
        "25,088 folds of 27 MACs, where Timeloop's design feeds its PEs from the buffer over a network with no "
        f"systolic skew; with `pipelined_folds` on it costs {os_piped:,} cycles ({os_piped / os_cyc:.2f}x). Its "
        "energy under Timeloop's mapping also exceeds 2x: with 16 filters on the array and one output pixel per "
        "fold, the model's output-stationary array reads all 27 weights of each filter from the buffer again for "
        "every pixel, where Timeloop's mapping keeps each weight in a PE register over 4 output columns and 16 "
        "outputs in the PE's scratchpad.",
        "",
        "Under the model's own mappings, energy is within 2x on all three but cycles are not within 25%: the "
        "published runs stopped at mappings that "
        "keep 4.7-43% of the PEs busy (the exercises' mapper settings end the random search early), while the "
        "model's mappings keep its array busy: the Eyeriss-like within 0.2% of 10,838,016 MACs / PEs, the "
        "weight-stationary 19% above it, the output-stationary 2.1x above it, paying the systolic fill of each "
        "of its many 27-MAC folds. The "
        "model's energy is higher mainly because it reads every operand from its register file for every MAC "
        "and, on the two 45 nm designs, prices DRAM at Horowitz's 160 pJ/byte against Accelergy's LPDDR4 at "
        "64 pJ/byte. A Timeloop mapper run of the Eyeriss-like design reported in the issue that asked for this "
        "comparison found 86,016 cycles and 59.28 uJ (1.33x the model's cycles, 0.77x its energy).",
    ]


PEER_SCRIPT = """
import logging, os, sys
logging.disable(logging.CRITICAL)
import zigzag
from zigzag.api import get_hardware_performance_zigzag
z = os.path.join(os.path.dirname(zigzag.__file__), "inputs")
get_hardware_performance_zigzag(os.path.join(z, "workload", "alexnet.onnx"), os.path.join(z, "hardware", "tpu_like.yaml"),
    os.path.join(z, "mapping", "tpu_like.yaml"), opt="latency", dump_folder=sys.argv[1], loma_show_progress_bar=False)
print(zigzag.__version__ if hasattr(zigzag, "__version__") else "")
"""

# ZigZag's bundled tpu_like.yaml: a 32x32 systolic array of 8-bit MACs (K on one side, C on the other), a
# 2 MiB (16 Mibit) global SRAM and a 64-bit DRAM port; cycles are ZigZag's own clock.
TPU_LIKE = Accelerator(pe_rows=32, pe_cols=32, rf_bytes=8, glb_bytes=2048 * KiB, dram_bw=8.0, clock_hz=1e9,
                       dataflow="ws", native_bits=8, precisions=(8,), name="zigzag-tpu-like")


ZIGZAG_NOTES = [
    "",
    "Under ZigZag's own spatial mapping (input channels on the rows, filters on the columns, as its bundled "
    "mapping file pins them for every layer, 3 channels on CONV1) the model with SCALE-Sim's fold accounting "
    "misses CONV3-5 only: it charges the fill and drain (2 x 32 + 32 - 2 cycles) on every fold of only 144 "
    "output pixels, which ZigZag overlaps with the next fold. An array that double-buffers its weights, as "
    "the TPU does, does overlap them, so the accelerator spec has that as an option (`pipelined_folds`, off "
    "by default and on SCALE-Sim files, whose cycle counts stay exact); with it on the TPU-like spec, every "
    "layer is within 20% of ZigZag under ZigZag's mapping. Under the model's own mapping CONV1 stays far below "
    "ZigZag's cycles: the model unrolls channels x filter taps (363) over the rows, where ZigZag's mapping "
    "file leaves 91% of the MACs idle.",
    "",
    "Energy is 2-5x ZigZag's under the model's own mappings: ZigZag's TPU-like DRAM costs 700 pJ per 64-bit "
    "access (11 pJ/byte) against the model's 160 pJ/byte (Horowitz), and its SRAM and register energies are "
    "its own tables. Under ZigZag's mapping the gap widens on CONV1 and CONV2, most on CONV1: ZigZag's PEs "
    "hold a whole filter (128-byte weight register) and accumulate over the filter taps in place, while the "
    "model's weight-stationary PE holds one weight, so every fold's partial sums go back to the buffer.",
]

# ZigZag's loop dimensions in LayerSpec's letters (B is a linear layer's rows of tokens, h).
ZIGZAG_DIMS = {"K": "k", "C": "c", "OY": "h", "OX": "w", "FY": "r", "FX": "s", "G": "g", "B": "n"}


def zigzag_unrolling(doc: dict, layer: LayerSpec) -> Unrolling:
    """ZigZag's spatial mapping of one layer: its D2 on the PE rows, D1 on the columns."""
    mapping = doc["inputs"]["layer"]["user_spatial_mapping"]
    dims = dict(ZIGZAG_DIMS, B="h" if layer.op == "linear" else "n")
    side = lambda d: tuple((dims[k], int(v)) for k, v in mapping.get(d, {}).items())  # noqa: E731
    return Unrolling(rows=side("D2"), cols=side("D1"))


def _zigzag_layer(doc: dict) -> LayerSpec | None:
    layer = doc["inputs"]["layer"]
    d = layer["loop_dimensions"]
    if "FX" in d:
        rel = layer.get("equation_relations", [])
        stride = int(rel[0].split("=")[1].split("*")[0]) if rel else 1
        ih = (d["OY"] - 1) * stride + d["FY"]
        iw = (d["OX"] - 1) * stride + d["FX"]
        g = d.get("G", 1)
        return LayerSpec("conv", n=d.get("B", 1), c=d["C"] * g, k=d["K"] * g, groups=g, in_h=ih, in_w=iw, r=d["FY"],
                         s=d["FX"], stride=stride, w_bits=8, a_bits=8, name=layer["name"])
    if "K" in d and "C" in d:
        return LayerSpec("linear", m=d.get("B", 1) * d.get("D", 1), c=d["C"], k=d["K"], w_bits=8, a_bits=8,
                         name=layer["name"])
    return None


def zigzag_section() -> list[str]:
    head = ["### ZigZag (run live), bundled TPU-like accelerator and AlexNet", ""]
    peer = os.environ.get("HWSEARCH_PEERS_PYTHON")
    if not peer:
        return head + ["Not run: `HWSEARCH_PEERS_PYTHON` names no environment with `zigzag-dse` installed."]
    with tempfile.TemporaryDirectory() as out:
        run = subprocess.run([peer, "-c", PEER_SCRIPT, out], capture_output=True, text=True, timeout=1800)
        if run.returncode:
            return head + [f"Not run: ZigZag exited with {run.returncode}: {run.stderr.strip().splitlines()[-1:]}"]
        docs = [json.loads(p.read_text()) for p in sorted(Path(out).glob("*_complete.json"),
                                                         key=lambda p: int(p.name[2:].split("_")[0]))]
    lines = head + [
        "Goal: latency within 20% per layer. ZigZag latency = data on-loading + computation + off-loading. Own "
        "mapping: the model's `search` / `fast` modes on the spec as the model describes it (fills charged per "
        "fold, as SCALE-Sim does). ZigZag's mapping: the model with ZigZag's spatial unrolling of the layer "
        "fixed, on that spec / with `pipelined_folds` on.", "",
        "| layer | shape (K x C x OY x OX, FY x FX) | ZigZag cycles | model cycles, own mapping: search / fast | "
        "ratio | ZigZag's spatial mapping (MAC use) | model cycles, ZigZag's mapping: per-fold fill / pipelined "
        "folds | ratio | ZigZag energy uJ | model energy uJ: own (search) / ZigZag's mapping, pipelined |",
        "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    piped = TPU_LIKE.with_(pipelined_folds=True)
    met, rows = {"own": 0, "given": 0, "piped": 0}, 0
    for doc in docs:
        layer = _zigzag_layer(doc)
        if layer is None:
            continue
        lat = doc["outputs"]["latency"]
        z_cyc = lat["data_onloading"] + lat["computation"] + lat["data_offloading"]
        z_uj = doc["outputs"]["energy"]["energy_total"] * 1e-6
        use = doc["outputs"]["spatial"]["mac_utilization"]["ideal"]
        d = doc["inputs"]["layer"]["loop_dimensions"]
        s, f = cost(layer, TPU_LIKE, mode="search"), cost(layer, TPU_LIKE, mode="fast")
        unroll = zigzag_unrolling(doc, layer)
        g, gp = cost(layer, TPU_LIKE, unroll=unroll), cost(layer, piped, unroll=unroll)
        rows += 1
        for key, c in (("own", s), ("given", g), ("piped", gp)):
            met[key] += abs(c.total_cycles / z_cyc - 1) <= 0.2
        shape = f"{d['K']} x {d['C']} x {d.get('OY', 1)} x {d.get('OX', 1)}, {d.get('FY', 1)} x {d.get('FX', 1)}"
        lines.append(f"| {layer.name} | {shape} | {z_cyc:,.0f} | {s.total_cycles:,} / {f.total_cycles:,} | "
                     f"{s.total_cycles / z_cyc:.2f} | `{unroll}` ({use:.0%}) | {g.total_cycles:,} / "
                     f"{gp.total_cycles:,} | {g.total_cycles / z_cyc:.2f} / {gp.total_cycles / z_cyc:.2f} | "
                     f"{z_uj:.1f} | {s.total_energy_pj * 1e-6:.1f} / {gp.total_energy_pj * 1e-6:.1f} |")
    return lines + [
        "",
        f"Goal met on: latency within 20% on {met['piped']} of {rows} layers under ZigZag's mapping with pipelined "
        f"folds ({met['given']} of {rows} with per-fold fills; {met['own']} of {rows} under the model's own mapping).",
        *ZIGZAG_NOTES,
    ]


def main() -> None:
    body = "\n".join(["## Accelerator model vs Timeloop and ZigZag", "", *timeloop_section(), "", *zigzag_section()])
    print(body)
    write_section("hwmodel-peers", body, "HWSEARCH_PEERS_PYTHON=<peers venv python> python -m benchmarks.hwmodel_peers")


if __name__ == "__main__":
    main()
