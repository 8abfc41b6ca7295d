import pytest
import torch
from torch import nn

from hwsearch.errors import SpecError
from hwsearch.estimators.counters import count_macs, count_params, trace_netspec
from hwsearch.spaces.ops import Add, AddParam, MatMul


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, stride=2, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(8)
        self.act = nn.ReLU()
        self.dw = nn.Conv2d(8, 8, 5, padding=2, groups=8)
        self.add = Add()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        y = self.act(self.bn(self.conv(x)))
        y = self.add(y, self.dw(y))
        return self.fc(self.pool(y).flatten(1))


def test_traced_layers_follow_execution_order_with_exact_macs_and_params():
    model = Tiny()
    net = trace_netspec(model, (3, 16, 16))
    assert [layer.op for layer in net.layers] == ["conv", "norm", "eltwise", "dwconv", "eltwise", "pool", "linear"]
    assert net.macs == 8 * 8 * 8 * 3 * 9 + 8 * 8 * 8 * 25 + 8 * 10
    assert net.params == count_params(model)
    assert count_macs(model, (3, 16, 16), batch=2) == 2 * net.macs


def test_attention_products_and_position_embeddings_are_traced():
    class Attn(nn.Module):
        def __init__(self):
            super().__init__()
            self.pos = AddParam(5, 4)
            self.qk = MatMul()
            self.sm = nn.Softmax(dim=-1)

        def forward(self, x):  # x: (n, 1, 5, 4) -> tokens (n, 5, 4)
            t = self.pos(x.flatten(1, 2))
            return self.sm(self.qk(t, t.transpose(1, 2)))

    net = trace_netspec(Attn(), (1, 5, 4))
    assert [layer.op for layer in net.layers] == ["eltwise", "matmul", "softmax"]
    assert net.layers[1].macs == 5 * 4 * 5
    assert net.params == 20


def test_a_parametrised_module_the_tracer_cannot_describe_is_refused():
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Conv1d(2, 2, 1))
    with pytest.raises(SpecError, match="Conv1d"):
        trace_netspec(model, (1, 4, 4))
    assert not model[0]._forward_hooks  # hooks were cleaned up


def test_tracing_leaves_training_mode_and_weights_untouched():
    model = Tiny().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trace_netspec(model, (3, 8, 8))
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
