"""The elastic supernet: weight cutting, extraction, channel sorting, progressive shrinking, caching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hwsearch import spaces
from hwsearch.data import Dataset, load_data
from hwsearch.errors import SpecError
from hwsearch.estimators.counters import trace_netspec
from hwsearch.spaces.supernet import (
    SuperNet,
    calibrated,
    extract_subnet,
    gene_kind,
    load_or_train,
    schedule,
    subnet_accuracy,
    supernet_key,
    train_supernet,
)
from hwsearch.spaces.supernet.slicing import KernelTransforms, centre_crop
from hwsearch.spaces.supernet.training import Sampler, unlocked_kinds
from hwsearch.train import RECIPES, evaluate

TINY = {
    "ofa-mbv3": {"in_channels": 1, "resolutions": [8, 10], "stem_width": 8, "first_width": 8, "widths": [8, 16, 16],
                 "strides": [2, 1, 2], "acts": ["relu", "hswish", "hswish"], "se": [False, True, True],
                 "head_width": 16, "depths": [1, 2], "kernels": [3, 5, 7], "expand_ratios": [2, 3]},
    "vit": {"in_channels": 1, "resolution": 8, "patch_size": 4, "embeds": [16, 24], "head_dim": 8,
            "depths": [1, 2], "heads": [1, 2], "mlp_ratios": [1, 2]},
}


@pytest.fixture(scope="module")
def digits() -> Dataset:
    full = load_data("digits")
    # A small training split keeps each step cheap; val/test stay whole.
    return Dataset(full.name, full.x_train[:96], full.y_train[:96], full.x_val[:120], full.y_val[:120],
                   full.x_test[:120], full.y_test[:120], full.num_classes)


@pytest.fixture(scope="module", params=sorted(TINY))
def trained(request, digits) -> SuperNet:
    torch.manual_seed(0)
    sn = SuperNet(spaces.get(request.param, **TINY[request.param]))
    train_supernet(sn, digits, schedule({"preset": "tiny", "max_steps_per_epoch": 1}), seed=0)
    return sn


def _choices(sn: SuperNet, n: int = 1) -> list[dict]:
    rng = np.random.default_rng(1)
    return [sn.space.reference("largest"), sn.space.reference("smallest")] + [sn.space.sample(rng) for _ in range(n)]


def test_extracted_module_accuracy_equals_in_supernet_accuracy_exactly(trained, digits):
    for choice in _choices(trained):
        inside = subnet_accuracy(trained, digits, choice, "test")
        model = extract_subnet(trained, digits, choice)
        data = digits.at_resolution(trained.resolution(choice))
        assert evaluate(model, data.x_test, data.y_test) == inside
        buffers = calibrated(trained, digits, choice)
        assert torch.equal(model(data.x_test), trained.logits(choice, data.x_test, buffers))


def test_extracted_state_loads_into_a_fresh_space_build_and_keeps_the_netspec(trained, digits):
    for choice in _choices(trained):
        state = extract_subnet(trained, digits, choice).state_dict()
        fresh = trained.space.build(choice)
        fresh.load_state_dict(state, strict=True)
        shape = trained.space.input_shape(choice)
        assert trace_netspec(fresh, shape).key == trained.space.to_netspec(choice).key


def test_kernel_transformation_starts_as_the_centre_crop_and_receives_gradients():
    w = torch.randn(4, 1, 7, 7, requires_grad=True)
    kt = KernelTransforms({"dw.weight": (4, 1, 7, 7)}, [3, 5, 7])
    assert torch.equal(kt.transform("dw.weight", w, 3), centre_crop(w, 3))
    kt.transform("dw.weight", w, 3).sum().backward()
    assert all(p.grad is not None for p in kt.parameters())
    with pytest.raises(SpecError, match="not among"):
        kt.transform("dw.weight", w, 4)


def test_sorting_channels_by_importance_keeps_the_largest_network_function(trained, digits):
    x = digits.at_resolution(trained.resolution(trained.largest)).x_val[:16]
    trained.eval()
    model = trained.full.eval()
    before = model(x)
    assert trained.reorder_channels() > 0
    assert torch.allclose(model(x), before, atol=1e-5)


def test_sorted_channels_put_the_largest_importance_first():
    sp = spaces.get("ofa-mbv3", **TINY["ofa-mbv3"])
    sn = SuperNet(sp)
    sn.reorder_channels()
    for name, p in sn.full.named_parameters():
        if name.startswith("stages.") and name.endswith("project.conv.weight"):
            imp = p.detach().abs().sum(dim=(0, 2, 3))
            assert torch.all(imp[:-1] >= imp[1:])


def test_a_phase_samples_only_unlocked_genes(trained):
    sampler = Sampler(trained, unlocked_kinds("kernel"))
    rng = np.random.default_rng(0)
    for _ in range(20):
        c = sampler.sample(rng)
        for gene, value in c.items():
            if gene_kind(gene) not in ("kernel", "resolution"):
                assert value == trained.largest[gene]


def test_gene_kinds_follow_the_spaces_gene_names():
    assert gene_kind("stage0.block1.kernel") == "kernel"
    assert gene_kind("stage2.depth") == "depth"
    assert gene_kind("resolution") == "resolution"
    assert gene_kind("layer0.heads") == "width"
    assert gene_kind("stage0.block0.expand") == "width"


def test_an_eval_mode_subnetwork_without_statistics_is_refused(trained, digits):
    trained.eval()
    x = digits.at_resolution(trained.resolution(trained.largest)).x_val[:4]
    with pytest.raises(SpecError, match="calibrated"):
        trained(x, trained.largest)


def test_checkpoint_is_cached_reused_and_a_corrupt_one_is_retrained(tmp_path, monkeypatch):
    monkeypatch.setenv("HWSEARCH_CACHE", str(tmp_path))
    plan = {"preset": "tiny", "max_steps_per_epoch": 1}
    first = load_or_train("vit", "digits", plan, seed=0, space_kwargs=TINY["vit"])
    assert first.trained_now and first.path.is_file() and first.path.parent.parent == tmp_path
    again = load_or_train("vit", "digits", plan, seed=0, space_kwargs=TINY["vit"])
    assert not again.trained_now and again.key == first.key
    for name, t in first.supernet.state_dict().items():
        assert torch.equal(t, again.supernet.state_dict()[name])
    other = load_or_train("vit", "digits", plan, seed=1, space_kwargs=TINY["vit"])
    assert other.key != first.key
    first.path.write_bytes(first.path.read_bytes()[:100])  # a truncated file must never be used
    with pytest.warns(UserWarning, match="unreadable"):
        redone = load_or_train("vit", "digits", plan, seed=0, space_kwargs=TINY["vit"])
    assert redone.trained_now


def test_a_supernet_trained_twice_under_one_seed_is_the_same_whatever_ran_before(tmp_path):
    plan = {"preset": "tiny", "max_steps_per_epoch": 1}
    states = []
    for rng_before, root in ((1, tmp_path / "a"), (2, tmp_path / "b")):
        torch.manual_seed(rng_before)  # the caller's RNG state must not reach the initial weights
        torch.rand(7)
        states.append(load_or_train("vit", "digits", plan, seed=0, space_kwargs=TINY["vit"], root=root)
                      .supernet.state_dict())
    assert states[0].keys() == states[1].keys()
    for name, t in states[0].items():
        assert torch.equal(t, states[1][name]), name


# CIFAR-shaped spaces: the cifar10 profile's strides and patches, with narrow widths to stay cheap.
CIFAR_TINY = {
    "ofa-mbv3": {"profile": "cifar10", "resolutions": [24, 32], "stem_width": 8, "first_width": 8,
                 "widths": [8, 8, 16, 16, 16], "head_width": 16, "depths": [1, 2], "expand_ratios": [2, 3]},
    "vit": {"profile": "cifar10", "embeds": [16, 24], "head_dim": 8, "depths": [1, 2], "heads": [1, 2],
            "mlp_ratios": [1, 2]},
}


def _random_cifar_shaped(n: int = 24) -> Dataset:
    gen = torch.Generator().manual_seed(0)

    def part(k: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(k, 3, 32, 32, generator=gen), torch.randint(0, 10, (k,), generator=gen)

    (xt, yt), (xv, yv), (xs, ys) = part(n), part(16), part(16)
    return Dataset("random-32", xt, yt, xv, yv, xs, ys, 10)


@pytest.mark.parametrize("name", sorted(CIFAR_TINY))
def test_cifar_shaped_subnetworks_extract_with_their_netspec_and_in_supernet_logits(name):
    data = _random_cifar_shaped()
    torch.manual_seed(0)
    sn = SuperNet(spaces.get(name, **CIFAR_TINY[name]))
    train_supernet(sn, data, schedule({"preset": "tiny", "max_steps_per_epoch": 1, "recipe": {"batch_size": 8}}),
                   seed=0)
    for choice in _choices(sn, n=2):
        model = extract_subnet(sn, data, choice)
        shape = sn.space.input_shape(choice)
        assert trace_netspec(model, shape).key == sn.space.to_netspec(choice).key
        x = data.at_resolution(shape[1]).x_test
        assert torch.equal(model(x), sn.logits(choice, x, calibrated(sn, data, choice)))


@pytest.mark.parametrize("name", ["ofa-mbv3", "vit"])
def test_cifar10_schedules_are_registered_and_the_cpu_one_is_the_shorter(name):
    cpu, gpu = schedule("cifar10-cpu", name), schedule("cifar10-gpu", name)
    assert cpu.total_epochs < gpu.total_epochs
    assert cpu.recipe.batch_size == RECIPES["cifar10-cpu"].batch_size
    assert gpu.recipe.device == "auto"
    assert schedule({"preset": "cifar10-cpu", "epochs_width": 1}, name).epochs_full == cpu.epochs_full


def test_supernet_key_ignores_settings_left_at_their_defaults_and_sees_any_other():
    plan = schedule("cifar10-cpu", "ofa-mbv3")
    key = supernet_key("ofa-mbv3", {"profile": "cifar10"}, "cifar10", plan, 0)
    # a recipe setting spelled out at its default trains the same supernet: same key
    spelled = plan.model_copy(update={"recipe": plan.recipe.model_copy(update={"kd_ratio": 0.0})})
    assert supernet_key("ofa-mbv3", {"profile": "cifar10"}, "cifar10", spelled, 0) == key
    changed = plan.model_copy(update={"recipe": plan.recipe.model_copy(update={"kd_ratio": 0.5})})
    assert supernet_key("ofa-mbv3", {"profile": "cifar10"}, "cifar10", changed, 0) != key
    assert supernet_key("ofa-mbv3", {"profile": "cifar10"}, "cifar10", schedule("tiny"), 0) != key
