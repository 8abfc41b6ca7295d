import json

import numpy as np
import pytest
import torch
from torch import nn

from hwsearch.compress import (
    LayerPolicy,
    Policy,
    apply_policy,
    calibrate,
    compressed_netspec,
    export_onnx,
    nonzero_params,
    onnx_max_error,
    prunable_layers,
    rebuild,
    to_int8,
    token_schedule,
)
from hwsearch.compress.quant import act_error, act_range, fake_quant_weight, weight_scale
from hwsearch.compress.sparsity import nm_violations
from hwsearch.compress.structural import kept_units
from hwsearch.errors import ConfigError
from hwsearch.estimators.counters import count_params, trace_netspec
from hwsearch.spaces.ops import Add, AddParam, MatMul, Mul

CNN_SHAPE = (1, 16, 16)
VIT_SHAPE = (1, 16, 16)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Two threads on a shared two-core machine make tiny convs 100x slower.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


class Block(nn.Module):
    def __init__(self, c, e, se=True):
        super().__init__()
        self.expand = nn.Conv2d(c, e, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(e)
        self.act1 = nn.Hardswish()
        self.dw = nn.Conv2d(e, e, 3, padding=1, groups=e, bias=False)
        self.bn2 = nn.BatchNorm2d(e)
        self.act2 = nn.ReLU()
        self.se = se
        if se:
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc1 = nn.Conv2d(e, 8, 1)
            self.act3 = nn.ReLU()
            self.fc2 = nn.Conv2d(8, e, 1)
            self.gate = nn.Hardsigmoid()
            self.mul = Mul()
        self.project = nn.Conv2d(e, c, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c)
        self.add = Add()

    def forward(self, x):
        y = self.act2(self.bn2(self.dw(self.act1(self.bn1(self.expand(x))))))
        if self.se:
            y = self.mul(y, self.gate(self.fc2(self.act3(self.fc1(self.pool(y))))))
        return self.add(x, self.bn3(self.project(y)))


class TinyCNN(nn.Module):
    """Residual inverted-bottleneck CNN with depthwise convs and squeeze-excite."""

    def __init__(self, classes=10):
        super().__init__()
        self.stem = nn.Conv2d(1, 16, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.act = nn.ReLU()
        self.blocks = nn.Sequential(Block(16, 32), Block(16, 48, se=False))
        self.head = nn.Conv2d(16, 64, 1)
        self.hact = nn.Hardswish()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = self.blocks(self.act(self.bn(self.stem(x))))
        return self.fc(self.pool(self.hact(self.head(x))).flatten(1))


class Attention(nn.Module):
    def __init__(self, embed, heads, head_dim):
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        self.qkv = nn.Linear(embed, 3 * heads * head_dim)
        self.scale = Mul()
        self.qk = MatMul()
        self.softmax = nn.Softmax(dim=-1)
        self.av = MatMul()
        self.proj = nn.Linear(heads * head_dim, embed)

    def forward(self, x):
        n, t, _ = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4)
        attn = self.softmax(self.qk(self.scale(q, self.head_dim ** -0.5), k.transpose(-2, -1)))
        return self.proj(self.av(attn, v).transpose(1, 2).reshape(n, t, self.heads * self.head_dim))


class VitBlock(nn.Module):
    def __init__(self, embed, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(embed)
        self.attn = Attention(embed, heads, 8)
        self.add1 = Add()
        self.norm2 = nn.LayerNorm(embed)
        self.fc1 = nn.Linear(embed, 2 * embed)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(2 * embed, embed)
        self.add2 = Add()

    def forward(self, x):
        x = self.add1(x, self.attn(self.norm1(x)))
        return self.add2(x, self.fc2(self.act(self.fc1(self.norm2(x)))))


class TinyViT(nn.Module):
    """Patch-embed conv, position embedding, 4 pre-norm blocks, final norm, grid mean-pool, head."""

    def __init__(self, embed=32, depth=4, heads=4, classes=10):
        super().__init__()
        self.grid = 4
        self.patch = nn.Conv2d(1, embed, 4, 4)
        self.pos = AddParam(16, embed)
        self.blocks = nn.Sequential(*(VitBlock(embed, heads) for _ in range(depth)))
        self.norm = nn.LayerNorm(embed)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(embed, classes)

    def forward(self, x):
        x = self.norm(self.blocks(self.pos(self.patch(x).flatten(2).transpose(1, 2))))
        grid = x.transpose(1, 2).reshape(x.shape[0], x.shape[2], self.grid, self.grid)
        return self.head(self.pool(grid).flatten(1))


def _batch(shape, n=16, seed=0):
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed))


def _cnn():
    torch.manual_seed(0)
    return TinyCNN().eval()


def _vit():
    torch.manual_seed(0)
    return TinyViT().eval()


# ---- policy ------------------------------------------------------------------------------------
def test_policy_json_round_trip_keeps_every_layer_choice(tmp_path):
    policy = Policy(
        {"a": LayerPolicy(keep=0.5, w_bits=4, a_bits=6), "b": LayerPolicy(pattern="nm", nm=(2, 4), w_bits=8),
         "c": LayerPolicy(pattern="fine", density=0.3), "d": LayerPolicy()},
        tokens=(1.0, 1.0, 0.7, 0.5), round_to=4, w_clip="mse", a_clip="minmax", attention_bits=6,
    )
    again = Policy.from_dict(json.loads(json.dumps(policy.to_dict())))
    assert again == policy
    assert again.layer("b").nm == (2, 4) and again.layer("zzz") == LayerPolicy()
    policy.to_json(str(tmp_path / "p.json"))
    assert Policy.from_json(str(tmp_path / "p.json")) == policy


@pytest.mark.parametrize("bad", [
    {"keep": 0.0}, {"w_bits": 1}, {"a_bits": 9}, {"pattern": "nm"}, {"pattern": "nm", "nm": (4, 4)},
    {"density": 0.5}, {"pattern": "blocky"},
])
def test_invalid_layer_policies_are_refused_with_a_config_error(bad):
    with pytest.raises(ConfigError):
        LayerPolicy(**bad)


def test_token_schedules_exempt_the_first_blocks_and_never_increase():
    s = token_schedule(8, 0.25, exempt=3)
    assert s[:3] == (1.0, 1.0, 1.0) and abs(s[-1] - 0.25) < 1e-9
    assert all(a >= b for a, b in zip(s[:-1], s[1:], strict=True))
    with pytest.raises(ConfigError):
        Policy(tokens=(1.0, 0.5, 0.7))


def test_kept_units_round_to_multiples_where_the_layer_is_wide_enough():
    assert kept_units(64, 0.3, 8) == 16
    assert kept_units(64, 0.01, 8) == 8
    assert kept_units(6, 0.5, 8) == 3
    assert kept_units(64, 1.0, 8) == 64


# ---- discovery ---------------------------------------------------------------------------------
def test_prunable_layers_group_residual_and_depthwise_couplings():
    layers = {layer.name: layer for layer in prunable_layers(_cnn(), CNN_SHAPE)}
    assert list(layers) == ["stem", "blocks.0.expand", "blocks.0.dw", "blocks.0.fc1", "blocks.0.fc2",
                            "blocks.0.project", "blocks.1.expand", "blocks.1.dw", "blocks.1.project", "head", "fc"]
    # the residual stream: stem and every project conv share one width, led by the stem
    assert {n for n, layer in layers.items() if layer.group == "stem"} == {"stem", "blocks.0.project", "blocks.1.project"}
    # depthwise conv and SE expand follow their block's expand conv
    assert layers["blocks.0.dw"].group == layers["blocks.0.fc2"].group == "blocks.0.expand"
    assert layers["fc"].group is None and not layers["fc"].structural
    assert "nm" not in layers["blocks.0.dw"].patterns and "nm" in layers["blocks.0.expand"].patterns


def test_attention_heads_form_a_group_led_by_the_qkv_layer():
    layers = {layer.name: layer for layer in prunable_layers(_vit(), VIT_SHAPE)}
    qkv = layers["blocks.0.attn.qkv"]
    assert qkv.leader and qkv.unit == "heads" and qkv.units == 4
    assert layers["blocks.0.fc1"].leader and layers["blocks.0.fc1"].structural


# ---- structural pruning ------------------------------------------------------------------------
def test_structural_pruning_shrinks_params_and_macs_to_what_the_netspec_reports():
    model = _cnn()
    policy = Policy({"stem": LayerPolicy(keep=0.5), "blocks.0.expand": LayerPolicy(keep=0.5),
                     "blocks.1.expand": LayerPolicy(keep=0.3), "head": LayerPolicy(keep=0.5)})
    small = apply_policy(model, policy, CNN_SHAPE)
    net = compressed_netspec(small, CNN_SHAPE)
    widths = {layer.name: layer.k for layer in net.layers if layer.has_weights}
    assert widths["stem"] == widths["blocks.0.project"] == widths["blocks.1.project"] == 8
    assert widths["blocks.0.expand"] == widths["blocks.0.dw"] == widths["blocks.0.fc2"] == 16
    assert widths["blocks.1.expand"] == 16 and widths["head"] == 32
    assert net.params == count_params(small) < count_params(model)
    dense = trace_netspec(model, CNN_SHAPE)
    assert net.macs < dense.macs / 2
    assert compressed_netspec(model, CNN_SHAPE, policy) == net
    assert small(_batch(CNN_SHAPE)).shape == (16, 10)
    assert [p.shape for p in model.parameters()] == [p.shape for p in _cnn().parameters()]  # input untouched


def test_a_policy_that_keeps_everything_reproduces_the_model_exactly():
    model = _cnn()
    same = apply_policy(model, Policy({"stem": LayerPolicy(keep=1.0)}), CNN_SHAPE)
    x = _batch(CNN_SHAPE)
    assert torch.equal(model(x), same(x))


def test_pruning_the_width_of_a_non_leader_or_the_output_is_refused():
    model = _cnn()
    with pytest.raises(ConfigError, match="leader"):
        apply_policy(model, Policy({"blocks.0.dw": LayerPolicy(keep=0.5)}), CNN_SHAPE)
    with pytest.raises(ConfigError, match="fixed"):
        apply_policy(model, Policy({"fc": LayerPolicy(keep=0.5)}), CNN_SHAPE)
    with pytest.raises(ConfigError, match="unknown layer"):
        apply_policy(model, Policy({"nope": LayerPolicy(keep=0.5)}), CNN_SHAPE)


def test_head_pruning_removes_whole_heads_from_qkv_proj_and_the_attention_products():
    model = _vit()
    policy = Policy({"blocks.1.attn.qkv": LayerPolicy(keep=0.5), "blocks.0.fc1": LayerPolicy(keep=0.5)})
    small = apply_policy(model, policy, VIT_SHAPE)
    attn = small.blocks[1].attn
    assert attn.heads == 2 and attn.qkv.out_features == 3 * 2 * 8 and attn.proj.in_features == 16
    net = compressed_netspec(small, VIT_SHAPE)
    by_name = {layer.name: layer for layer in net.layers}
    assert by_name["blocks.1.attn.qk"].n == 2 and by_name["blocks.0.attn.qk"].n == 4
    assert by_name["blocks.0.fc1"].k == 32
    assert net.params == count_params(small)
    assert small(_batch(VIT_SHAPE)).shape == (16, 10)


def test_token_pruning_drops_tokens_after_the_exempt_blocks_only():
    model = _vit()
    policy = Policy(tokens=(1.0, 1.0, 0.5, 0.25))
    small = apply_policy(model, policy, VIT_SHAPE)
    net = compressed_netspec(small, VIT_SHAPE)
    m = {layer.name: layer.m for layer in net.layers if layer.op == "linear" and "qkv" in layer.name}
    assert m == {"blocks.0.attn.qkv": 16, "blocks.1.attn.qkv": 16, "blocks.2.attn.qkv": 16, "blocks.3.attn.qkv": 8}
    assert {layer.name: layer.m for layer in net.layers}["norm"] == 4
    assert net.macs < trace_netspec(model, VIT_SHAPE).macs
    assert small(_batch(VIT_SHAPE)).shape == (16, 10)
    with pytest.raises(ConfigError, match="4 transformer blocks"):
        apply_policy(model, Policy(tokens=(1.0, 0.5)), VIT_SHAPE)


# ---- masks -------------------------------------------------------------------------------------
@pytest.mark.parametrize("nm", [(2, 4), (1, 4)])
def test_nm_masks_keep_exactly_n_nonzeros_in_every_group_of_m(nm):
    names = ["blocks.0.expand", "blocks.0.project", "head", "fc"]
    policy = Policy({n: LayerPolicy(pattern="nm", nm=nm) for n in names})
    small = apply_policy(_cnn(), policy, CNN_SHAPE)
    for n in names:
        layer = small.get_submodule(n)
        assert nm_violations(layer.weight_mask, *nm) == 0
        assert nm_violations(layer.qweight().detach(), *nm) == 0
    net = compressed_netspec(small, CNN_SHAPE)
    assert net.nonzero_params == nonzero_params(small)
    assert {layer.name: layer.nm for layer in net.layers if layer.name in names} == {n: nm for n in names}


def test_nm_on_a_depthwise_conv_is_refused_and_fine_masks_keep_the_asked_density():
    with pytest.raises(ConfigError, match="divisible"):
        apply_policy(_cnn(), Policy({"blocks.0.dw": LayerPolicy(pattern="nm", nm=(2, 4))}), CNN_SHAPE)
    small = apply_policy(_cnn(), Policy({"head": LayerPolicy(pattern="fine", density=0.25)}), CNN_SHAPE)
    mask = small.head.weight_mask
    assert int(mask.sum()) == round(0.25 * mask.numel())
    net = compressed_netspec(small, CNN_SHAPE)
    assert net.nonzero_params == nonzero_params(small) == count_params(small) - (mask.numel() - int(mask.sum()))


# ---- quantization ------------------------------------------------------------------------------
@pytest.mark.parametrize("bits", range(2, 9))
def test_fake_quant_weights_have_at_most_two_to_the_bits_values_per_channel(bits):
    w = torch.randn(6, 5, 3, 3, generator=torch.Generator().manual_seed(bits))
    for clip in ("minmax", "mse"):
        q = fake_quant_weight(w, weight_scale(w, bits, clip), bits)
        for row in q.reshape(6, -1):
            assert len(torch.unique(row)) <= 2 ** bits
    scale = weight_scale(w, bits)
    ints = fake_quant_weight(w, scale, bits) / scale[:, None, None, None]
    assert torch.allclose(ints, ints.round(), atol=1e-4)


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_mse_clipping_error_is_never_above_minmax_error(bits):
    x = torch.cat([torch.randn(16000), torch.tensor([40.0, -25.0])])  # heavy outliers
    mse = act_error(x, *act_range(x, bits, "mse"), bits)
    minmax = act_error(x, *act_range(x, bits, "minmax"), bits)
    assert mse <= minmax
    if bits <= 4:
        assert mse < 0.5 * minmax


def test_quantized_policy_sets_bits_in_the_netspec_and_needs_calibration():
    policy = Policy({n: LayerPolicy(w_bits=4, a_bits=6) for n in ("stem", "blocks.0.expand", "fc")})
    x = _batch(CNN_SHAPE)
    model = apply_policy(_cnn(), policy, CNN_SHAPE)
    with pytest.raises(ConfigError, match="calibrat"):
        model(x)
    calibrate(model, x)
    net = compressed_netspec(model, CNN_SHAPE)
    bits = {layer.name: (layer.w_bits, layer.a_bits) for layer in net.layers if layer.has_weights}
    assert bits["stem"] == bits["fc"] == (4, 6) and bits["head"] == (32, 32)
    assert net.weight_bytes < trace_netspec(_cnn(), CNN_SHAPE).weight_bytes
    logits = model(x)
    assert torch.isfinite(logits).all() and not torch.equal(logits, _cnn()(x))


def test_quantized_training_passes_gradients_straight_through_and_masks_stay_zero():
    policy = Policy({"blocks.0.expand": LayerPolicy(pattern="nm", nm=(2, 4), w_bits=4, a_bits=4),
                     "fc": LayerPolicy(w_bits=3, a_bits=8)})
    x = _batch(CNN_SHAPE)
    model = apply_policy(_cnn(), policy, CNN_SHAPE, calib=x).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    loss = nn.functional.cross_entropy(model(x), torch.arange(16) % 10)
    loss.backward()
    expand = model.blocks[0].expand
    assert expand.weight.grad.abs().sum() > 0 and model.fc.weight.grad.abs().sum() > 0
    opt.step()
    assert nm_violations(expand.qweight().detach(), 2, 4) == 0


# ---- rebuild and export ------------------------------------------------------------------------
def _mixed_policy():
    return Policy({
        "stem": LayerPolicy(keep=0.5, w_bits=8, a_bits=8),
        "blocks.0.expand": LayerPolicy(keep=0.5, pattern="nm", nm=(2, 4), w_bits=4, a_bits=6),
        "blocks.0.fc1": LayerPolicy(pattern="fine", density=0.5, w_bits=5, a_bits=5),
        "blocks.1.project": LayerPolicy(w_bits=2, a_bits=8),
        "head": LayerPolicy(keep=0.5, w_bits=8, a_bits=8),
        "fc": LayerPolicy(w_bits=8, a_bits=8),
    }, w_clip="mse")


def test_rebuilding_from_policy_and_state_dict_reproduces_logits_exactly():
    x = _batch(CNN_SHAPE)
    policy = _mixed_policy()
    trained = apply_policy(_cnn(), policy, CNN_SHAPE, calib=x)
    state = {k: v.clone() for k, v in trained.state_dict().items()}
    torch.manual_seed(123)
    again = rebuild(TinyCNN(), Policy.from_dict(policy.to_dict()), CNN_SHAPE, state).eval()
    assert torch.equal(trained(x), again(x))
    assert compressed_netspec(again, CNN_SHAPE) == compressed_netspec(trained, CNN_SHAPE)


def test_rebuilding_a_token_and_head_pruned_vit_reproduces_logits_exactly():
    x = _batch(VIT_SHAPE)
    policy = Policy({"blocks.2.attn.qkv": LayerPolicy(keep=0.5, w_bits=6, a_bits=8)}, tokens=(1.0, 0.75, 0.5, 0.5))
    trained = apply_policy(_vit(), policy, VIT_SHAPE, calib=x)
    torch.manual_seed(7)
    again = rebuild(TinyViT(), policy, VIT_SHAPE, trained.state_dict()).eval()
    assert torch.equal(trained(x), again(x))


def test_weights_of_another_policy_do_not_load_silently():
    trained = apply_policy(_cnn(), _mixed_policy(), CNN_SHAPE, calib=_batch(CNN_SHAPE))
    with pytest.raises(ConfigError, match="do not fit"):
        rebuild(TinyCNN(), Policy({"stem": LayerPolicy(keep=0.25)}), CNN_SHAPE, trained.state_dict())


def test_onnx_export_of_a_quantized_pruned_model_matches_torch(tmp_path):
    x = _batch(CNN_SHAPE, n=8)
    model = apply_policy(_cnn(), _mixed_policy(), CNN_SHAPE, calib=_batch(CNN_SHAPE, n=32, seed=1))
    path = export_onnx(model, CNN_SHAPE, tmp_path / "m.onnx")
    scale = float(model(x).abs().max())
    assert onnx_max_error(model, path, x) <= 1e-3 * scale


def test_onnx_export_of_a_token_pruned_vit_matches_torch(tmp_path):
    x = _batch(VIT_SHAPE, n=4)
    policy = Policy({"blocks.0.fc1": LayerPolicy(w_bits=4, a_bits=4)}, tokens=(1.0, 0.5, 0.5, 0.25),
                    attention_bits=6)
    model = apply_policy(_vit(), policy, VIT_SHAPE, calib=x)
    path = export_onnx(model, VIT_SHAPE, tmp_path / "v.onnx")
    assert onnx_max_error(model, path, x) <= 1e-3 * float(model(x).abs().max())


def test_int8_kernels_run_the_eight_bit_layers_close_to_fake_quant():
    x = _batch(CNN_SHAPE, n=32)
    model = apply_policy(_cnn(), _mixed_policy(), CNN_SHAPE, calib=x)
    fast, converted = to_int8(model)
    assert converted == ["stem", "head", "fc"]
    assert type(fast.stem).__name__ == "Int8Conv2d"
    with torch.no_grad():
        want, got = model(x), fast(x)
    assert float((got - want).abs().max()) <= 0.03 * float(want.abs().max())
    assert np.mean((got.argmax(1) == want.argmax(1)).numpy()) >= 0.9


class HardCodedWidth(nn.Module):
    """Its forward hard-codes a channel count, so shrinking the conv breaks it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 16, 3, padding=1)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        y = self.conv(x)
        return self.fc(y.reshape(y.shape[0], 16, -1).mean(-1))


def test_a_group_that_cannot_be_shrunk_safely_falls_back_to_a_channel_mask():
    model = HardCodedWidth().eval()
    small = apply_policy(model, Policy({"conv": LayerPolicy(keep=0.5)}), (1, 8, 8))
    x = _batch((1, 8, 8))
    assert small(x).shape == (16, 10)
    assert small.conv.out_channels == 16
    assert int((small.conv.qweight().detach().reshape(16, -1).abs().sum(1) > 0).sum()) == 8
    net = compressed_netspec(small, (1, 8, 8))
    assert net.layers[0].density == 0.5 and net.nonzero_params == nonzero_params(small)


def test_a_token_pruned_model_deep_copies_and_pickles_after_a_training_step():
    import copy
    import pickle

    x = _batch(VIT_SHAPE)
    policy = Policy({"blocks.0.fc1": LayerPolicy(w_bits=6, a_bits=6)}, tokens=(1.0, 0.5, 0.5, 0.25))
    model = apply_policy(_vit(), policy, VIT_SHAPE, calib=x).train()
    model(x).sum().backward()
    model.eval()
    with torch.no_grad():
        want = model(x)
        assert torch.equal(copy.deepcopy(model)(x), want)
        assert torch.equal(pickle.loads(pickle.dumps(model))(x), want)


def test_int8_linear_kernels_take_token_sequences():
    x = _batch(VIT_SHAPE)
    policy = Policy({n: LayerPolicy(w_bits=8, a_bits=8) for n in ("blocks.0.fc1", "blocks.1.fc2")})
    model = apply_policy(_vit(), policy, VIT_SHAPE, calib=x)
    fast, converted = to_int8(model)
    assert converted == ["blocks.0.fc1", "blocks.1.fc2"]
    with torch.no_grad():
        want = model(x)
        assert float((fast(x) - want).abs().max()) <= 0.03 * float(want.abs().max())


def test_a_compressed_model_traces_to_torchscript_that_reloads_with_the_same_logits(tmp_path):
    x = _batch(VIT_SHAPE, n=4)
    policy = Policy({"blocks.1.attn.qkv": LayerPolicy(keep=0.5, w_bits=4, a_bits=8)}, tokens=(1.0, 0.5, 0.5, 0.25))
    model = apply_policy(_vit(), policy, VIT_SHAPE, calib=x)
    with torch.no_grad():
        torch.jit.save(torch.jit.trace(model, x), str(tmp_path / "m.pt"))
        assert torch.equal(torch.jit.load(str(tmp_path / "m.pt"))(x), model(x))


def test_attention_bits_quantize_both_operands_of_every_attention_product():
    x = _batch(VIT_SHAPE)
    policy = Policy(attention_bits=4)
    model = apply_policy(_vit(), policy, VIT_SHAPE, calib=x)
    seen = []
    qk = model.blocks[0].attn.qk
    qk.register_forward_hook(lambda m, inputs, out: seen.append(inputs))
    with torch.no_grad():
        model(x)
        a, b = seen[0]
        assert len(torch.unique(qk._quant(a, qk.a_range))) <= 16 and len(torch.unique(qk._quant(b, qk.b_range))) <= 16
    net = compressed_netspec(model, VIT_SHAPE)
    assert {(layer.w_bits, layer.a_bits) for layer in net.layers if layer.op == "matmul"} == {(4, 4)}
    assert {layer.a_bits for layer in net.layers if layer.op == "linear"} == {32}
    again = rebuild(_vit(), Policy.from_dict(policy.to_dict()), VIT_SHAPE, model.state_dict())
    with torch.no_grad():
        assert torch.equal(again(x), model(x))


def test_fine_tuning_keeps_masks_and_the_reloaded_export_reproduces_its_test_accuracy():
    from hwsearch.compress import fine_tune, fine_tune_recipe
    from hwsearch.data import Dataset, load_data
    from hwsearch.train import evaluate

    full = load_data("digits", seed=0).at_resolution(16)
    data = Dataset("digits", full.x_train[:640], full.y_train[:640], full.x_val[:128], full.y_val[:128],
                   full.x_test[:256], full.y_test[:256], full.num_classes)
    policy = Policy({"blocks.0.expand": LayerPolicy(keep=0.5, pattern="nm", nm=(2, 4), w_bits=4, a_bits=8),
                     "head": LayerPolicy(pattern="fine", density=0.5, w_bits=6, a_bits=6)}, attention_bits=32)
    model = apply_policy(_cnn(), policy, CNN_SHAPE, calib=data.x_train[:64])
    before = model.head.weight.detach().clone()
    result = fine_tune(model, data, epochs=1, seed=0, recipe=fine_tune_recipe(1, lr=3e-3, augment_shift=0.0))
    assert not torch.equal(before, model.head.weight)
    assert nm_violations(model.blocks[0].expand.weight_mask, 2, 4) == 0
    assert float((model.head.qweight() * (1 - model.head.weight_mask)).abs().sum()) == 0.0
    again = rebuild(_cnn(), policy, CNN_SHAPE, model.state_dict())
    assert evaluate(again, data.x_test, data.y_test) == result.test_acc


def test_pruning_channels_that_carry_nothing_leaves_the_outputs_unchanged():
    model = _cnn()
    block = model.blocks[0]
    dead = torch.arange(0, 32, 2)  # half of the expand group's channels
    with torch.no_grad():
        for bn in (block.bn1, block.bn2):
            bn.running_mean.uniform_(-1, 1)
            bn.running_var.uniform_(0.5, 2)
            bn.bias.uniform_(-0.5, 0.5)
            bn.running_mean[dead] = 0
            bn.bias[dead] = 0
            bn.weight[dead] = 0
        block.expand.weight[dead] = 0
        block.dw.weight[dead] = 0
        block.fc2.weight[dead] = 0
        block.fc2.bias[dead] = 0
        block.fc1.weight[:, dead] = 0
        block.project.weight[:, dead] = 0
    small = apply_policy(model, Policy({"blocks.0.expand": LayerPolicy(keep=0.5)}), CNN_SHAPE)
    assert small.blocks[0].expand.out_channels == 16
    x = _batch(CNN_SHAPE)
    with torch.no_grad():
        assert torch.allclose(small(x), model(x), atol=1e-5)
