"""Running a compressed model elsewhere: ONNX with folded fake quantization, and real int8 on CPU.

`export_onnx` writes the eval-mode graph: weights are masked and rounded to their grid at export
(constant-folded, so the file stores the dequantized b-bit values) and activations keep their
quantize-round-clamp-dequantize steps as plain ONNX ops, which is exact for any width from 2 to 8
bits where QuantizeLinear/DequantizeLinear only express 8. `onnx_max_error` checks the file with
onnxruntime against torch.

`to_int8` swaps every conv/linear layer quantized to 8-bit weights and 8-bit activations for torch.ao's
int8 kernels (`torch.ao.nn.quantized.Conv2d` and `Linear`, packed for the qnnpack engine, CPU only):
the input is quantized with the calibrated (scale, zero point), the weights per channel with the
layer's own scales, and the output requantized to 8 bits over the range seen in calibration, then
dequantized for the float ops around it (norms, activations, residual adds, attention products stay
float). Layers below 8 bits have no torch int8 kernel and stay fake-quantized.
"""

from __future__ import annotations

import copy
import io
from pathlib import Path

import torch
from torch import nn

from hwsearch.compress.modules import COMPRESSED, QUANTIZED, QConv2d, QLinear
from hwsearch.compress.quant import act_params
from hwsearch.errors import ConfigError
from hwsearch.io import atomic_write_bytes


@torch.no_grad()
def onnx_bytes(model: nn.Module, example: torch.Tensor, opset: int = 17) -> bytes:
    """``model`` traced on ``example`` as an ONNX file's bytes (input ``input``, output ``logits``, batch
    dimension dynamic); `export_onnx` and the run bundle (`hwsearch.search.engine.bundle`) both write these."""
    buf = io.BytesIO()
    # dynamo=False: the TorchScript-based exporter needs no onnxscript and handles every space's ops.
    torch.onnx.export(model, (example,), buf, dynamo=False, opset_version=opset, input_names=["input"],
                      output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return buf.getvalue()


@torch.no_grad()
def export_onnx(model: nn.Module, input_shape: tuple[int, int, int], path: str | Path, opset: int = 17) -> Path:
    """Write ``model`` (eval mode, batch dimension dynamic) as ONNX; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = copy.deepcopy(model).eval().cpu()
    for m in model.modules():
        if isinstance(m, QUANTIZED) and not m.calibrated:
            raise ConfigError(f"layer {m.layer_name!r} has no activation range; calibrate before exporting")
    x = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
    atomic_write_bytes(path, onnx_bytes(model, x, opset))
    return path


@torch.no_grad()
def onnx_max_error(model: nn.Module, path: str | Path, x: torch.Tensor) -> float:
    """Largest absolute difference between onnxruntime's and torch's outputs on ``x``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x.cpu().numpy()})[0]
    want = copy.deepcopy(model).eval().cpu()(x.cpu()).numpy()
    return float(abs(got - want).max())


class Int8Conv2d(nn.Module):
    """A `QConv2d` at 8/8 bits run by torch.ao's int8 conv kernel (float in, float out)."""

    def __init__(self, q: QConv2d) -> None:
        super().__init__()
        self.op = torch.ao.nn.quantized.Conv2d(
            q.in_channels, q.out_channels, q.kernel_size, q.stride, q.padding, q.dilation, q.groups,
            q.bias is not None, q.padding_mode)
        _load(self, q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.op(torch.quantize_per_tensor(x, self.in_scale, self.in_zero, torch.quint8)).dequantize()


class Int8Linear(nn.Module):
    """A `QLinear` at 8/8 bits run by torch.ao's int8 linear kernel (float in, float out)."""

    def __init__(self, q: QLinear) -> None:
        super().__init__()
        self.op = torch.ao.nn.quantized.Linear(q.in_features, q.out_features, q.bias is not None)
        _load(self, q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        return self.op(torch.quantize_per_tensor(x, self.in_scale, self.in_zero, torch.quint8)).dequantize()


def _load(wrapper: nn.Module, q: QConv2d | QLinear) -> None:
    scale, zero = q.act_qparams()
    wrapper.in_scale, wrapper.in_zero = float(scale), int(zero)
    w = q._masked_weight().detach().float().cpu()
    w_scale = q.w_scale.detach().double().cpu()
    qw = torch.quantize_per_channel(w, w_scale, torch.zeros(len(w_scale), dtype=torch.long), 0, torch.qint8)
    bias = q.bias.detach().float().cpu() if q.bias is not None else None
    wrapper.op.set_weight_bias(qw, bias)
    o_scale, o_zero = act_params(q.o_range[0].cpu(), q.o_range[1].cpu(), 8)
    wrapper.op.scale, wrapper.op.zero_point = float(o_scale), int(o_zero)


def int8_ready(layer: nn.Module) -> bool:
    """Whether ``layer`` is an 8-bit-weight, 8-bit-activation compressed layer with known ranges."""
    return isinstance(layer, COMPRESSED) and layer.w_bits == 8 and layer.a_bits == 8 and layer.calibrated \
        and not bool(torch.isnan(layer.o_range).any())


@torch.no_grad()
def to_int8(model: nn.Module, engine: str = "qnnpack") -> tuple[nn.Module, list[str]]:
    """A CPU copy of ``model`` whose 8/8-bit conv and linear layers run torch.ao int8 kernels.

    Returns the model and the names of the layers converted; the model is for inference only. The
    weights are packed for ``engine``. The default is qnnpack because the x86/fbgemm/onednn kernels
    multiply uint8 x int8 pairs into a saturating int16 on CPUs without VNNI (the reason torch's own
    observers shrink activations to 7 bits there), which breaks full-range 8-bit activations; qnnpack
    accumulates in int32 and agrees with the fake-quantized model up to the output requantization.
    """
    engines = torch.backends.quantized.supported_engines
    if engine not in engines:
        raise ConfigError(f"int8 engine {engine!r} is not in this torch build; supported: {engines}")
    out = copy.deepcopy(model).eval().cpu()
    converted = []
    previous = torch.backends.quantized.engine
    torch.backends.quantized.engine = engine
    try:
        for name, m in list(out.named_modules()):
            if not int8_ready(m):
                continue
            new = Int8Conv2d(m) if isinstance(m, QConv2d) else Int8Linear(m)
            parent_name, _, child = name.rpartition(".")
            setattr(out.get_submodule(parent_name) if parent_name else out, child, new)
            converted.append(name)
    finally:
        torch.backends.quantized.engine = previous
    return out, converted


__all__ = ["Int8Conv2d", "Int8Linear", "export_onnx", "int8_ready", "onnx_bytes", "onnx_max_error", "to_int8"]
