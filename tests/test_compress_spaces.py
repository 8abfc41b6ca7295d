import numpy as np
import pytest
import torch

from hwsearch import spaces
from hwsearch.compress import (
    LayerPolicy,
    Policy,
    apply_policy,
    compressed_netspec,
    nonzero_params,
    prunable_layers,
    rebuild,
    token_schedule,
)
from hwsearch.compress.sparsity import nm_violations
from hwsearch.estimators.counters import count_params

SPACES = {"ofa-mbv3": {}, "vit": {}, "fbnet": {"resolution": 32, "num_classes": 10}, "nb201": {}}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _sample(name, seed):
    space = spaces.get(name, **SPACES[name])
    choice = space.sample(np.random.default_rng(seed))
    torch.manual_seed(seed)
    return space, choice, space.build(choice).eval(), space.input_shape(choice)


def _aggressive_policy(layers, seed):
    """Every leader at half width, N:M where allowed, mixed 3..8 bits; tokens dropped in a ViT."""
    rng = np.random.default_rng(seed)
    out = {}
    for layer in layers:
        nm = "nm" in layer.patterns and rng.random() < 0.5
        out[layer.name] = LayerPolicy(
            keep=0.5 if layer.leader else 1.0,
            pattern="nm" if nm else "fine", nm=(2, 4) if nm else None, density=1.0 if nm else 0.6,
            w_bits=int(rng.integers(3, 9)), a_bits=int(rng.integers(4, 9)),
        )
        if layer.group is None:
            out[layer.name] = LayerPolicy(w_bits=8, a_bits=8)
    blocks = sum(1 for layer in layers if layer.unit == "heads")
    return Policy(out, tokens=token_schedule(blocks, 0.5, exempt=1) if blocks > 1 else ())


@pytest.mark.parametrize("name", sorted(SPACES))
def test_an_identity_policy_gives_the_space_netspec(name):
    space, choice, model, shape = _sample(name, 0)
    assert compressed_netspec(model, shape, Policy()) == space.to_netspec(choice)


@pytest.mark.parametrize("name", sorted(SPACES))
def test_compressed_space_networks_match_their_netspec_and_rebuild_exactly(name):
    space, choice, model, shape = _sample(name, 1)
    layers = prunable_layers(model, shape)
    for layer in layers:
        if layer.group is not None and not layer.structural:
            assert name == "fbnet" and "grouped conv" in layer.note
    policy = _aggressive_policy(layers, 1)
    x = torch.randn(8, *shape, generator=torch.Generator().manual_seed(1))
    small = apply_policy(model, policy, shape, calib=x)
    net = compressed_netspec(small, shape)
    assert net.params == count_params(small)
    assert net.nonzero_params == nonzero_params(small)
    assert net.macs < space.to_netspec(choice).macs
    for layer in net.layers:
        if layer.nm is not None:
            mask = small.get_submodule(layer.name).weight_mask
            live = mask[mask.flatten(1).sum(1) > 0]  # rows zeroed by a channel-mask fallback hold no group
            assert nm_violations(live, *layer.nm) == 0
    torch.manual_seed(99)
    again = rebuild(space.build(choice), Policy.from_dict(policy.to_dict()), shape, small.state_dict()).eval()
    assert torch.equal(small(x), again(x))
