"""How fast the accelerator model costs whole networks, and whether it ever beats the roofline.

Speed: networks sampled from the registered spaces are costed on accelerators the model has never
seen (random PE arrays, buffers, bandwidths, dataflows), so every layer is mapped from scratch; then
again on the same accelerator (cache hits). Physics: many random (layer, accelerator) pairs are
checked against latency >= max(MACs / peak MAC rate, DRAM bytes / DRAM bandwidth) and
energy >= MACs x MAC energy, the laws `tests/test_hwmodel_physics.py` checks on fewer examples.

    .venv/bin/python benchmarks/hwmodel_speed.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.report import write_section  # noqa: E402
from hwsearch import spaces  # noqa: E402
from hwsearch.errors import SpecError  # noqa: E402
from hwsearch.hwmodel import Accelerator, cost, network_cost  # noqa: E402
from hwsearch.hwmodel.energy import TABLES, mac_pj  # noqa: E402
from hwsearch.hwmodel.mapping import mac_widths  # noqa: E402
from hwsearch.ir import LayerSpec  # noqa: E402

KiB = 1024


def random_accelerator(rng: np.random.Generator) -> Accelerator:
    """A never-seen accelerator from the NAAS-style design space."""
    unified = rng.random() < 0.5
    bufs = ({"glb_bytes": int(rng.integers(64, 2048)) * KiB} if unified else
            {"ifmap_sram_bytes": int(rng.integers(32, 1024)) * KiB, "filter_sram_bytes": int(rng.integers(32, 1024)) * KiB,
             "ofmap_sram_bytes": int(rng.integers(32, 1024)) * KiB})
    native = int(rng.choice([8, 16]))
    precs = (native,) if rng.random() < 0.5 else tuple(p for p in (2, 4, 8, 16) if p <= native)
    return Accelerator(pe_rows=int(rng.integers(4, 65)), pe_cols=int(rng.integers(4, 65)),
                       rf_bytes=int(rng.integers(8, 1024)), dram_bw=float(rng.uniform(2, 64)),
                       clock_hz=float(rng.uniform(2e8, 1.5e9)), dataflow=str(rng.choice(["ws", "os", "is", "rs"])),
                       native_bits=native, precisions=precs, sparsity=str(rng.choice(["none", "zero_skip", "nm"])),
                       vector_lanes=int(rng.integers(4, 65)), **bufs)


def random_layer(rng: np.random.Generator) -> LayerSpec:
    """A random conv / dwconv / linear / matmul / vector layer with random bits and sparsity."""
    op = str(rng.choice(["conv", "dwconv", "linear", "matmul", "softmax", "norm"]))
    bits = [2, 4, 8, 16, 32]
    wb, ab = int(rng.choice(bits)), int(rng.choice(bits))
    density = float(rng.choice([1.0, 0.5, 0.2]))
    nm = [None, (2, 4)][int(rng.integers(2))]
    if op in ("conv", "dwconv"):
        c = int(rng.integers(1, 256))
        r = int(rng.choice([1, 3, 5, 7]))
        hw = int(rng.integers(r, 64))
        return LayerSpec(op, n=int(rng.integers(1, 3)), c=c, k=c if op == "dwconv" else int(rng.integers(1, 256)),
                         groups=c if op == "dwconv" else 1, in_h=hw, in_w=hw, r=r, s=r, pad=r // 2,
                         stride=int(rng.choice([1, 2])), w_bits=wb, a_bits=ab, density=density, nm=nm)
    if op == "linear":
        return LayerSpec(op, m=int(rng.integers(1, 400)), c=int(rng.integers(1, 2048)), k=int(rng.integers(1, 2048)),
                         w_bits=wb, a_bits=ab, density=density, nm=nm)
    if op == "matmul":
        return LayerSpec(op, n=int(rng.integers(1, 24)), m=int(rng.integers(1, 200)), c=int(rng.integers(1, 128)),
                         k=int(rng.integers(1, 200)), a_bits=ab)
    return LayerSpec(op, n=1, m=int(rng.integers(1, 200)), k=int(rng.integers(1, 200)), c=int(rng.integers(1, 200)),
                     a_bits=ab)


def speed(rng: np.random.Generator) -> list[str]:
    lines = ["| space | layers per network (distinct MAC layers) | never-seen accelerator: ms per network "
             "(CPU ms) | same accelerator again: ms per network |", "| --- | ---: | ---: | ---: |"]
    for name in spaces.names():
        space = spaces.get(name)
        nets = [space.to_netspec(space.sample(rng)) for _ in range(5)]
        cold, cold_cpu, warm = [], [], []
        for i in range(40):
            net = nets[i % len(nets)]
            accel = random_accelerator(rng)
            t0, c0 = time.perf_counter(), time.process_time()
            network_cost(net, accel)
            cold.append(time.perf_counter() - t0)
            cold_cpu.append(time.process_time() - c0)
            t0 = time.perf_counter()
            network_cost(net, accel)
            warm.append(time.perf_counter() - t0)
        n_layers = statistics.median(len(n) for n in nets)
        n_mac = statistics.median(len([x for x in n.distinct_layers() if x.macs]) for n in nets)
        lines.append(f"| {name} | {n_layers:.0f} ({n_mac:.0f}) | {statistics.median(cold) * 1e3:.1f} "
                     f"({statistics.median(cold_cpu) * 1e3:.1f}) | "
                     f"{statistics.median(warm) * 1e3:.2f} |")
    return lines


def physics(rng: np.random.Generator, pairs: int) -> list[str]:
    worst_time, worst_energy, checked, refused = np.inf, np.inf, 0, 0
    violations = 0
    for _ in range(pairs):
        layer, accel = random_layer(rng), random_accelerator(rng)
        try:
            c = cost(layer, accel)
        except SpecError:
            refused += 1
            continue
        checked += 1
        bound = c.dram_bytes / accel.dram_bw
        if layer.macs:
            bound = max(bound, c.executed_macs / c.peak_macs_per_cycle)
            pw, pa, passes = mac_widths(layer, accel)
            e_bound = c.executed_macs * passes * mac_pj(TABLES[accel.tech], pw, pa)
            worst_energy = min(worst_energy, c.total_energy_pj / e_bound)
            violations += c.total_energy_pj < e_bound * (1 - 1e-9)
        worst_time = min(worst_time, c.total_cycles / bound)
        violations += c.total_cycles < bound * (1 - 1e-9)
    return [f"Roofline laws (also a hypothesis test: `.venv/bin/python -m pytest tests/test_hwmodel_physics.py`): "
            f"{checked:,} random (layer, accelerator) pairs checked ({refused} refused: buffer smaller than one "
            f"tile): **{violations} violations**. Closest approach: latency / roofline bound = {worst_time:.4f}, "
            f"energy / (MACs x MAC energy) = {worst_energy:.3f}."]


def main() -> None:
    rng = np.random.default_rng(0)
    body = "\n".join(["## Accelerator model: speed and roofline laws", "",
                      "Costing whole networks (median of 40 networks per space, each on a freshly drawn "
                      "accelerator, so every layer is mapped from scratch). Wall time depends on how busy the "
                      "shared 2-core machine is; the CPU time of the costing process is given beside it:",
                      "", *speed(rng), "", *physics(rng, 20000)])
    print(body)
    write_section("hwmodel-speed", body, ".venv/bin/python benchmarks/hwmodel_speed.py")


if __name__ == "__main__":
    main()
