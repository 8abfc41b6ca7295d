"""Static sparse attention: the threshold rule, masks at a target density, masked softmax, reloading,
composition with token pruning, and the NetSpec densities the accelerator model prices."""

from __future__ import annotations

import pytest
import torch

from hwsearch import spaces
from hwsearch.compress import LayerPolicy, Policy, apply_policy, compressed_netspec, rebuild
from hwsearch.compress.attention_mask import (
    MaskedSoftmax,
    calibrate_attention,
    density_mask,
    kept_entries,
    masked_softmaxes,
    threshold_mask,
)
from hwsearch.errors import ConfigError
from hwsearch.ir import NetSpec

SHAPE = (1, 16, 16)


def _vit(depth: int = 3) -> tuple[torch.nn.Module, object]:
    sp = spaces.get("vit", in_channels=1, num_classes=10, resolution=16, patch_size=4, embeds=(16,),
                    depths=(depth,), heads=(2,), mlp_ratios=(2,))
    torch.manual_seed(0)
    return sp.build(sp.reference("middle")).eval(), sp


def _images(n: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def test_threshold_rule_keeps_the_largest_entries_of_each_row_until_their_sum_reaches_it():
    attn = torch.tensor([[0.5, 0.3, 0.15, 0.05],
                         [0.05, 0.9, 0.03, 0.02],
                         [0.25, 0.25, 0.25, 0.25]])
    mask = threshold_mask(attn, 0.75)
    assert mask.tolist() == [[True, True, False, False],   # 0.5 < 0.75, then 0.8 reaches it
                             [False, True, False, False],  # 0.9 alone reaches it
                             [True, True, True, False]]    # three quarters, ties by position
    assert threshold_mask(attn, 1.0)[0].all()
    assert threshold_mask(attn, 0.01).sum(dim=-1).tolist() == [1, 1, 1]  # never an empty row


def test_density_mask_keeps_exactly_the_target_count_as_the_threshold_rule_at_one_threshold():
    torch.manual_seed(0)
    attn = torch.softmax(torch.randn(3, 10, 10) * 2, dim=-1)
    for density in (0.2, 0.35, 0.5, 0.8):
        mask = density_mask(attn, density)
        assert int(mask.sum()) == kept_entries(density, 30, 10)
        assert mask.any(dim=-1).all()
        # each row keeps its largest entries: every kept score beats every dropped one in that row
        kept_min = torch.where(mask, attn, torch.inf).min(dim=-1).values
        dropped_max = torch.where(mask, -torch.inf, attn).max(dim=-1).values
        assert (kept_min >= dropped_max).all()
    # a density the threshold rule reaches gives the threshold rule's own mask
    mask = threshold_mask(attn, 0.6)
    assert torch.equal(density_mask(attn, int(mask.sum()) / mask.numel()), mask)
    with pytest.raises(ConfigError, match="density"):
        density_mask(attn, 0.0)
    unseen = attn.clone()
    unseen[0, 3] = 0.0  # a row no sample measured keeps one entry, the rest of the budget goes elsewhere
    mask = density_mask(unseen, 0.3)
    assert int(mask[0, 3].sum()) == 1 and int(mask.sum()) == kept_entries(0.3, 30, 10)


def test_masked_attention_equals_a_reference_computation():
    model, _ = _vit()
    c = apply_policy(model, Policy({"blocks.1.attn.qkv": LayerPolicy(attention_density=0.3)}), SHAPE, calib=_images())
    attn = c.blocks[1].attn
    mask = attn.softmax.mask.bool()
    x = torch.randn(4, 16, 16)
    h, d = attn.heads, attn.head_dim
    q, k, v = attn.qkv(x).reshape(4, 16, 3, h, d).permute(2, 0, 3, 1, 4)
    scores = (q * d ** -0.5) @ k.transpose(-2, -1)
    weights = torch.exp(scores - scores.max(dim=-1, keepdim=True).values) * mask
    ref = (weights / weights.sum(dim=-1, keepdim=True)) @ v
    ref = attn.proj(ref.transpose(1, 2).reshape(4, 16, h * d))
    with torch.no_grad():
        torch.testing.assert_close(attn(x), ref, rtol=1e-5, atol=1e-6)


def test_masks_are_buffers_a_rebuilt_model_reloads_to_identical_logits():
    model, sp = _vit()
    policy = Policy({"blocks.0.attn.qkv": LayerPolicy(attention_density=0.5),
                     "blocks.2.attn.qkv": LayerPolicy(keep=0.5, attention_density=0.25, w_bits=6, a_bits=6)},
                    tokens=(1.0, 0.75, 0.5))
    x = _images()
    c = apply_policy(model, policy, SHAPE, calib=x)
    assert "blocks.2.attn.softmax.mask" in c.state_dict()
    fresh = sp.build(sp.reference("middle"))
    again = rebuild(fresh, Policy.from_dict(policy.to_dict()), SHAPE, c.state_dict()).eval()
    with torch.no_grad():
        assert torch.equal(c(x), again(x))
    unmeasured = apply_policy(model, policy, SHAPE)
    with pytest.raises(ConfigError, match="no measured mask"):
        unmeasured(x)
    calibrate_attention(unmeasured, x)
    assert torch.equal(unmeasured.blocks[0].attn.softmax.mask, c.blocks[0].attn.softmax.mask)


def test_token_pruning_takes_the_dropped_tokens_rows_and_columns_out_of_later_masks():
    model, _ = _vit()
    with torch.no_grad():  # blocks that add nothing: a token keeps its patch + position embedding throughout
        for block in model.blocks:
            for lin in (block.attn.proj, block.mlp.fc2):
                lin.weight.zero_()
                lin.bias.zero_()
    policy = Policy({"blocks.2.attn.qkv": LayerPolicy(attention_density=0.3)}, tokens=(0.75, 0.5, 0.5))
    x = _images(6)
    c = apply_policy(model, policy, SHAPE, calib=x)
    soft = c.blocks[2].attn.softmax
    seen = {}
    soft.register_forward_hook(lambda m, i, o: seen.update(probs=o, pos=m.positions.index.clone()))
    c.blocks[2].register_forward_pre_hook(lambda m, i: seen.update(tokens=i[0]))
    with torch.no_grad():
        c(x)
        embedded = c.pos(c.patch(x).flatten(2).transpose(1, 2))
    probs, pos = seen["probs"], seen["pos"]
    assert probs.shape == (6, 2, 8, 8) and pos.shape == (6, 8)
    assert (pos.diff(dim=1) > 0).all() and int(pos.max()) < 16
    # the tracked positions are the original places of the tokens that reached block 2
    torch.testing.assert_close(seen["tokens"], torch.gather(embedded, 1, pos[..., None].expand(-1, -1, 16)))
    # the entries that survive are the mask's rows and columns at those places (an emptied row attends to itself)
    mask = soft.mask.bool()
    for b in range(6):
        expected = mask[:, pos[b]][:, :, pos[b]]
        lonely = ~expected.any(dim=-1, keepdim=True)
        expected = expected | (lonely & torch.eye(8, dtype=torch.bool))
        assert torch.equal(probs[b] > 0, expected)


def test_netspec_reports_each_masks_density_on_its_products_and_softmax_only():
    model, _ = _vit()
    policy = Policy({"blocks.0.attn.qkv": LayerPolicy(attention_density=0.4),
                     "blocks.1.attn.qkv": LayerPolicy(keep=0.5, attention_density=0.7)}, tokens=(1.0, 1.0, 0.5))
    c = apply_policy(model, policy, SHAPE, calib=_images())
    net = compressed_netspec(c, SHAPE)
    soft = masked_softmaxes(c)
    for j in (0, 1):
        mask = soft[f"blocks.{j}.attn.softmax"].mask
        share = float(mask.mean())
        assert share == kept_entries((0.4, 0.7)[j], mask.shape[0] * 16, 16) / mask.numel()
        for part in ("qk", "softmax", "av"):
            assert net.layers[[x.name for x in net.layers].index(f"blocks.{j}.attn.{part}")].density == share
    assert all(x.density == 1.0 for x in net.layers if not x.name.startswith(("blocks.0.attn", "blocks.1.attn")))
    # The planned share before measuring is the measured one; the rows' spread comes with the data.
    planned = compressed_netspec(model, SHAPE, policy)
    assert planned == NetSpec(tuple(x.with_(density_std=0.0) for x in net.layers), net.input_shape)
    assert all(x.density_std == 0.0 for x in planned.layers)


def test_netspec_reports_the_spread_of_each_masks_kept_share_over_its_query_rows():
    model, _ = _vit()
    policy = Policy({"blocks.0.attn.qkv": LayerPolicy(attention_density=0.4),
                     "blocks.1.attn.qkv": LayerPolicy(attention_density=0.7)})
    c = apply_policy(model, policy, SHAPE, calib=_images())
    net = {x.name: x for x in compressed_netspec(c, SHAPE).layers}
    for j, soft in enumerate(masked_softmaxes(c).values()):
        rows = soft.mask.double().mean(dim=-1).flatten()  # heads x tokens query rows
        want = float(((rows - rows.mean()) ** 2).mean().sqrt())
        assert want > 0.0  # one threshold per block leaves focused and diffuse rows unequal
        for part in ("qk", "softmax", "av"):
            assert net[f"blocks.{j}.attn.{part}"].density_std == pytest.approx(want, rel=1e-9, abs=1e-12)
    # The uneven mask pays its densest rows' wait on hardware that skips, and nothing elsewhere.
    from hwsearch.hwmodel import Accelerator, cost

    qk = net["blocks.0.attn.qk"]
    sparse, dense = Accelerator.preset("edge-sparse"), Accelerator.preset("edge-systolic")
    uneven, even = cost(qk, sparse), cost(qk.with_(density_std=0.0), sparse)
    assert uneven.mapping["time_share"] > even.mapping["time_share"] == qk.density
    assert uneven.total_cycles >= even.total_cycles
    assert cost(qk, dense).to_dict() == cost(qk.with_(density_std=0.0), dense).to_dict()


def test_attention_density_is_validated_with_errors_naming_the_layer():
    model, _ = _vit()
    with pytest.raises(ConfigError, match="attention_density"):
        LayerPolicy(attention_density=0.0)
    with pytest.raises(ConfigError, match="blocks.0.mlp.fc1.*qkv"):
        apply_policy(model, Policy({"blocks.0.mlp.fc1": LayerPolicy(attention_density=0.5)}), SHAPE)
    lp = LayerPolicy(keep=0.5, attention_density=0.25)
    assert LayerPolicy.from_dict(lp.to_dict()) == lp and "attention_density" in lp.to_dict()
    assert isinstance(MaskedSoftmax(2, 4, 0.5), torch.nn.Softmax)  # the tracer still sees a softmax layer


def test_a_masked_token_pruned_model_exports_to_torchscript_and_onnx_with_the_same_logits(tmp_path):
    pytest.importorskip("onnxruntime")
    from hwsearch.compress import export_onnx, onnx_max_error

    model, _ = _vit()
    policy = Policy({"blocks.2.attn.qkv": LayerPolicy(attention_density=0.3)}, tokens=(1.0, 0.75, 0.5))
    x = _images()
    c = apply_policy(model, policy, SHAPE, calib=x).eval()
    traced = torch.jit.trace(c, x[:1], check_trace=False)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), c(x))
    assert onnx_max_error(c, export_onnx(c, SHAPE, tmp_path / "m.onnx"), x) < 1e-4
