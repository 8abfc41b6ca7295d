"""Roofline laws the accelerator model must obey for every layer on every accelerator."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hwsearch.errors import SpecError
from hwsearch.hwmodel import Accelerator, cost
from hwsearch.hwmodel.energy import TABLES, mac_pj
from hwsearch.hwmodel.mapping import mac_widths
from hwsearch.ir import LayerSpec

BITS = st.sampled_from([2, 4, 8, 16, 32])


@st.composite
def layers(draw):
    op = draw(st.sampled_from(["conv", "dwconv", "linear", "matmul", "softmax", "eltwise", "pool"]))
    w_bits, a_bits = draw(BITS), draw(BITS)
    density = draw(st.sampled_from([1.0, 0.7, 0.3]))
    nm = draw(st.sampled_from([None, (2, 4), (1, 8)]))
    if op in ("conv", "dwconv"):
        c = draw(st.integers(1, 96))
        r = draw(st.sampled_from([1, 3, 5]))
        hw = draw(st.integers(r, 40))
        k = c if op == "dwconv" else draw(st.integers(1, 96))
        return LayerSpec(op, n=draw(st.integers(1, 2)), c=c, k=k, groups=c if op == "dwconv" else 1,
                         in_h=hw, in_w=hw, r=r, s=r, stride=draw(st.sampled_from([1, 2])), pad=r // 2,
                         w_bits=w_bits, a_bits=a_bits, density=density, nm=nm)
    if op == "linear":
        return LayerSpec(op, m=draw(st.integers(1, 200)), c=draw(st.integers(1, 800)), k=draw(st.integers(1, 800)),
                         w_bits=w_bits, a_bits=a_bits, density=density, nm=nm)
    if op == "matmul":
        return LayerSpec(op, n=draw(st.integers(1, 12)), m=draw(st.integers(1, 100)), c=draw(st.integers(1, 100)),
                         k=draw(st.integers(1, 100)), a_bits=a_bits)
    if op == "pool":
        return LayerSpec(op, c=draw(st.integers(1, 64)), in_h=8, in_w=8, r=2, s=2, stride=2, a_bits=a_bits)
    return LayerSpec(op, n=draw(st.integers(1, 4)), m=draw(st.integers(1, 64)), k=draw(st.integers(1, 64)),
                     c=draw(st.integers(1, 64)), a_bits=a_bits)


@st.composite
def accelerators(draw):
    native = draw(st.sampled_from([8, 16]))
    precs = draw(st.sampled_from([(native,), tuple(p for p in (2, 4, 8, 16) if p <= native)]))
    unified = draw(st.booleans())
    kib = 1024
    bufs = ({"glb_bytes": draw(st.integers(32, 4096)) * kib} if unified else
            {"ifmap_sram_bytes": draw(st.integers(16, 2048)) * kib,
             "filter_sram_bytes": draw(st.integers(16, 2048)) * kib,
             "ofmap_sram_bytes": draw(st.integers(16, 2048)) * kib})
    return Accelerator(pe_rows=draw(st.integers(1, 64)), pe_cols=draw(st.integers(1, 64)),
                       rf_bytes=draw(st.integers(6, 1024)), dram_bw=draw(st.floats(0.5, 128)),
                       clock_hz=draw(st.floats(1e8, 2e9)), dataflow=draw(st.sampled_from(["ws", "os", "is", "rs"])),
                       native_bits=native, precisions=precs,
                       sparsity=draw(st.sampled_from(["none", "zero_skip", "nm"])),
                       vector_lanes=draw(st.integers(1, 64)), tech=draw(st.sampled_from(sorted(TABLES))), **bufs)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layer=layers(), accel=accelerators())
def test_latency_and_energy_never_beat_the_roofline(layer, accel):
    try:
        c = cost(layer, accel)
    except SpecError as e:  # a buffer too small for the layer is a user error, not a law broken
        assert "smallest tile" in str(e)
        return
    dram_bound = c.dram_bytes / accel.dram_bw
    assert c.total_cycles >= dram_bound * (1 - 1e-9)
    if layer.macs:
        assert c.total_cycles >= c.executed_macs / c.peak_macs_per_cycle * (1 - 1e-9)
        pw, pa, passes = mac_widths(layer, accel)
        assert c.total_energy_pj >= c.executed_macs * passes * mac_pj(TABLES[accel.tech], pw, pa) * (1 - 1e-9)
        assert 0 < c.utilization <= 1 + 1e-9
        assert c.writes["dram"] >= layer.out_bytes * (1 - 1e-9)  # every output leaves the chip once
    assert c.latency_s == c.total_cycles / accel.clock_hz
    assert all(v >= 0 for v in c.energy_pj.values())
    assert c.reads["dram"] >= 0 and c.writes["dram"] > 0
