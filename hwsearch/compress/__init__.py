"""Applying a compression policy to a torch model: structural, N:M, vector, block, head and token pruning, quantization.

Public API:

- `LayerPolicy`, `Policy`, `token_schedule` — what to do to each layer, the ViT token schedule and the
  attention-product bits (JSON round trip).
- `prunable_layers(model, input_shape)` — the conv/linear layers a policy may address, in execution
  order, each with its traced LayerSpec and the coupled group (leader, unit, units) its width follows.
- `apply_policy(model, policy, input_shape, calib=None)` — a compressed copy of the model.
- `rebuild(model, policy, input_shape, state_dict)` — restore an exported compressed model.
- `compressed_netspec(model, input_shape, policy=None)` — the NetSpec of what the compressed model runs.
- `calibrate(model, batch)` — activation ranges (min-max or MSE-optimal clipping).
- `calibrate_attention(model, batch)`, `threshold_mask`, `density_mask` — static sparse attention masks
  from the attention maps averaged over data (a policy's ``attention_density`` on a qkv layer).
- `fine_tune(model, data, epochs, ..., teacher=None)` — quantization/sparsity-aware training: a few
  epochs, or with `final_recipe` until validation accuracy stops improving, distilling from a teacher.
- `to_int8(model) -> (model, converted)` — real int8 kernels (torch.ao, qnnpack, CPU) for the layers
  at 8-bit weights and activations.
- `export_onnx(model, input_shape, path)` / `onnx_max_error(...)` — ONNX with folded fake quantization.
"""

from hwsearch.compress.apply import apply_policy, check_policy, compressed_netspec, nonzero_params, rebuild
from hwsearch.compress.attention_mask import calibrate_attention, density_mask, threshold_mask
from hwsearch.compress.export import export_onnx, onnx_max_error, to_int8
from hwsearch.compress.finetune import final_recipe, fine_tune, fine_tune_recipe
from hwsearch.compress.graph import PrunableLayer, prunable_layers
from hwsearch.compress.modules import QConv2d, QLinear, calibrate
from hwsearch.compress.policy import DENSE, LayerPolicy, Policy, token_schedule

__all__ = [
    "DENSE", "LayerPolicy", "Policy", "PrunableLayer", "QConv2d", "QLinear", "apply_policy", "calibrate",
    "calibrate_attention", "density_mask", "threshold_mask",
    "check_policy", "compressed_netspec", "export_onnx", "final_recipe", "fine_tune", "fine_tune_recipe", "nonzero_params",
    "onnx_max_error", "prunable_layers", "rebuild", "to_int8", "token_schedule",
]
