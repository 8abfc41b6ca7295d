import json

import numpy as np
import pytest
import torch

from hwsearch.errors import ConfigError
from hwsearch.ir import LayerSpec
from hwsearch.kernels import (
    NoKernel,
    TimerConfig,
    device_fingerprint,
    make_kernel,
    measure_network,
    profile_layer,
    threads_pinned,
    time_fn,
)
from hwsearch.kernels.fingerprint import DeviceFingerprint
from hwsearch.kernels.timing import median_ci

L = LayerSpec
TINY = [
    L("conv", c=4, k=8, in_h=9, in_w=9, r=3, s=3, stride=2, pad=1, bias=True),
    L("dwconv", c=8, k=8, in_h=8, in_w=8, r=5, s=5, pad=2, groups=8),
    L("linear", c=16, k=8, m=5, bias=True),
    L("linear", c=16, k=10),
    L("matmul", n=2, m=5, c=4, k=5),
    L("softmax", n=2, m=5, k=5),
    L("norm", fn="batch", c=8, in_h=4, in_w=4, bias=True),
    L("norm", fn="layer", c=16, m=5, bias=True),
    L("eltwise", fn="add", c=8, in_h=4, in_w=4),
    L("eltwise", fn="add", c=16, m=5, bias=True),
    L("eltwise", fn="mul", c=8, in_h=4, in_w=4),
    L("eltwise", fn="hswish", c=8, in_h=4, in_w=4),
    L("eltwise", fn="gelu", c=16, m=5),
    L("pool", fn="avg", c=8, in_h=4, in_w=4, r=4, s=4),
    L("pool", fn="max", c=8, in_h=8, in_w=8, r=3, s=3, stride=2, pad=1),
]


def expected_out_elems(layer: LayerSpec) -> int:
    return layer.out_elems


@pytest.mark.parametrize("layer", TINY, ids=lambda x: f"{x.op}-{x.fn}")
def test_every_op_runs_as_a_float_kernel_whose_output_has_the_layers_size(layer):
    kernel = make_kernel(layer, "cpu", "fp32")
    with torch.inference_mode():
        out = kernel.run()
    assert kernel.precision == "fp32" and out.dtype == torch.float32
    assert out.numel() == expected_out_elems(layer)


@pytest.mark.parametrize("layer", TINY, ids=lambda x: f"{x.op}-{x.fn}")
def test_eight_bit_layers_run_torch_quantized_int8_kernels_on_cpu(layer):
    kernel = make_kernel(layer.with_(w_bits=8, a_bits=8), "cpu", "fp32")
    with torch.inference_mode():
        out = kernel.run()
    assert kernel.precision == "int8"
    assert out.is_quantized and out.numel() == expected_out_elems(layer)


def test_weight_only_eight_bit_linear_runs_the_dynamic_int8_kernel():
    kernel = make_kernel(L("linear", c=16, k=8, w_bits=8), "cpu")
    with torch.inference_mode():
        out = kernel.run()
    assert kernel.precision == "int8-dynamic" and out.dtype == torch.float32 and out.shape == (1, 8)


@pytest.mark.parametrize("bits", [(4, 4), (2, 8), (16, 16), (6, 32)])
def test_bit_widths_without_a_real_cpu_kernel_raise_nokernel_naming_the_layer(bits):
    layer = L("conv", c=4, k=4, in_h=4, in_w=4, w_bits=bits[0], a_bits=bits[1], name="blocks.3.conv")
    with pytest.raises(NoKernel, match="blocks.3.conv"):
        make_kernel(layer, "cpu")


def test_fine_grained_sparsity_runs_dense_on_cpu_and_the_kernel_says_so():
    kernel = make_kernel(L("conv", c=4, k=8, in_h=6, in_w=6, r=3, s=3, density=0.3), "cpu")
    assert not kernel.sparse and "dense" in kernel.notes


def test_profiling_a_layer_gives_a_positive_median_and_records_spread_and_samples():
    fp = device_fingerprint("cpu", threads=1)
    prof = profile_layer(TINY[0], fp, TimerConfig.quick())
    m = prof.measurement
    assert prof.latency_s > 0 and m.spread >= 0 and 1 <= m.samples <= 5 and m.inner >= 1
    assert json.loads(json.dumps(m.to_dict()))["median_s"] == m.median_s


def test_measuring_a_module_end_to_end_times_one_forward_at_the_given_batch():
    fp = device_fingerprint("cpu", threads=1)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 6 * 6, 4))
    m = measure_network(model, (3, 8, 8), fp, batch=2, timer=TimerConfig.quick())
    assert m.median_s > 0 and m.samples >= 1


def test_thread_pinning_sets_the_count_inside_and_restores_it_after():
    before = torch.get_num_threads()
    with threads_pinned(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


# ---- timer statistics, driven by synthetic clocks --------------------------------------------------
def make_clock(values):
    it = iter(values)
    return lambda fn, inner: next(it) * inner


def test_timer_stops_early_once_the_median_interval_is_tight():
    cfg = TimerConfig(min_samples=7, max_samples=60, rel_ci=0.05, min_sample_s=1e-9, warmup_s=1e-9)
    m = time_fn(lambda: None, cfg, make_clock([1.0] * 200))
    assert m.converged and m.samples == 7 and m.median_s == pytest.approx(1.0)


def test_timer_stops_at_the_sample_cap_when_noise_never_settles():
    rng = np.random.default_rng(0)
    cfg = TimerConfig(min_samples=5, max_samples=12, rel_ci=1e-4, min_sample_s=1e-9, warmup_s=1e-9,
                      max_time_s=100)
    m = time_fn(lambda: None, cfg, make_clock(rng.uniform(1, 3, 500)))
    assert not m.converged and m.samples + m.rejected == 12


def test_timer_rejects_rare_slow_outliers_and_keeps_the_median_of_the_rest():
    vals = [1.0, 1.01, 0.99, 1.02, 0.98, 50.0, 1.0, 1.01, 0.99, 40.0] * 10
    cfg = TimerConfig(min_samples=10, max_samples=10, min_sample_s=1e-9, warmup_s=1e-9, min_warmup_calls=1)
    m = time_fn(lambda: None, cfg, make_clock([1.0] + vals))
    assert m.rejected == 2 and m.median_s == pytest.approx(1.0, abs=0.011) and m.spread < 0.05


def test_median_confidence_interval_brackets_the_sample_median():
    x = np.sort(np.random.default_rng(1).normal(10, 1, 41))
    lo, hi = median_ci(x)
    assert lo <= np.median(x) <= hi and lo < hi


def test_timer_settings_out_of_range_are_a_config_error():
    with pytest.raises(ConfigError, match="min_samples"):
        TimerConfig(min_samples=2)


# ---- fingerprint -----------------------------------------------------------------------------------
def test_cpu_fingerprint_names_model_torch_threads_dtype_clock_and_int8_engine():
    fp = device_fingerprint("cpu", threads=1)
    d = fp.to_dict()
    assert d["device"] == "cpu" and d["model"] and d["torch"] == torch.__version__
    assert d["threads"] == 1 and d["dtype"] == "fp32" and d["clock"] == "thread"
    assert d["quant_engine"] in torch.backends.quantized.supported_engines
    assert DeviceFingerprint.from_dict(json.loads(json.dumps(d))) == fp


def test_fingerprint_digest_differs_when_threads_or_clock_differ():
    one = device_fingerprint("cpu", threads=1)
    assert one.digest != device_fingerprint("cpu", threads=1, clock="wall").digest
    if torch.get_num_threads() > 1 or (__import__("os").cpu_count() or 1) > 1:
        assert one.digest != device_fingerprint("cpu", threads=2).digest


def test_thread_cpu_clock_with_several_threads_is_refused():
    import os

    if (os.cpu_count() or 1) < 2:
        pytest.skip("needs two CPUs")
    with pytest.raises(ConfigError, match="one thread"):
        device_fingerprint("cpu", threads=2, clock="thread")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_asking_for_cuda_without_a_gpu_is_a_config_error():
    with pytest.raises(ConfigError, match="no CUDA GPU"):
        device_fingerprint("cuda")


def test_half_precision_tables_are_refused_on_cpu():
    with pytest.raises(ConfigError, match="fp32"):
        device_fingerprint("cpu", dtype="fp16")


def test_a_layer_chain_is_timed_as_one_call_and_reports_the_requested_statistic():
    from hwsearch.kernels.profile import measure_layer_chain

    fp = device_fingerprint("cpu", threads=1)
    chain = [TINY[0], TINY[2], TINY[0], TINY[5]]
    whole = measure_layer_chain(chain, fp, TimerConfig.quick(statistic="min"))
    assert whole.latency_s == whole.min_s > 0 and whole.statistic == "min"
