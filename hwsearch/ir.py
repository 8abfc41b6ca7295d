"""The one vocabulary every room speaks: `LayerSpec` (one compute layer) and `NetSpec` (a network).

Spaces turn a choice into a NetSpec, cost models consume LayerSpecs, lookup tables are keyed by
`LayerSpec.key`. Nothing here imports torch, so a cost query is cheap and runs on any Ray worker.

Shapes, per op (every count is a positive int; unused fields stay 1):

- ``conv`` / ``dwconv``: batch ``n``, input channels ``c``, output channels ``k``, input ``in_h`` x
  ``in_w`` (unpadded), kernel ``r`` x ``s``, ``stride``, symmetric ``pad``, ``groups``
  (``dwconv`` has ``groups == c``). The output size is derived: ``h``, ``w``, rounded down as
  frameworks do, or up with ``ceil_mode`` (SCALE-Sim's convention: the last window may run past the
  input's bottom/right edge, which reads as zeros).
- ``linear``: ``n`` samples of ``m`` tokens each, ``c`` input and ``k`` output features.
- ``matmul`` (attention QK^T and AV, no weights): ``n`` independent products (batch x heads) of an
  ``m x c`` by a ``c x k`` activation matrix.
- ``softmax``: ``n`` x ``m`` rows of length ``k``.
- ``norm`` / ``eltwise``: a tensor of ``n * c * in_h * in_w * m`` elements, ``c`` channels
  (BatchNorm over maps: ``m == 1``; LayerNorm over tokens: ``in_h == in_w == 1``, ``m`` tokens).
  ``eltwise`` with ``bias=True`` adds a learned tensor of one sample's shape (a position embedding).
- ``pool``: ``n``, ``c`` channels, ``in_h`` x ``in_w``, window ``r`` x ``s``, ``stride``, ``pad``
  (and ``ceil_mode`` as for conv).

``fn`` names the function inside an op: the activation fused into a conv/linear (``relu``,
``hswish``, ``gelu``...), the kind of norm (``batch``/``layer``), of pool (``avg``/``max``) or of
eltwise (``add``, ``mul``, ``relu``, ...). Structural pruning (channels or heads kept) and token
pruning show up as smaller shapes; fine-grained pruning as ``density`` (share of weights kept) and
N:M pruning as ``nm = (N, M)``. Pruning in whole tiles of a linear layer's (``k`` x ``c``) weight matrix
adds ``tile = (rows, cols)``, the shape of each pruned unit: ``(1, L)`` for vectors of L weights along
a row (one output feature, L consecutive inputs), ``(L, 1)`` along a column, ``(B, B)`` for blocks;
``density`` stays the share of weights kept. ``w_bits``/``a_bits`` are the bit-widths of weights and activations
(32 for an unquantized float network).

Attention-map sparsity (a static mask, as ViTCoD prunes ViT attention maps) is ``density`` on the
layers that touch the map: on the QK^T ``matmul`` the share of the ``m x k`` scores computed, on the
AV ``matmul`` the share of the ``m x c`` probabilities multiplied, on the ``softmax`` the share of each
row's ``k`` entries kept. A mask keeps the same share on all three. `LayerSpec.map_elems` names
the map's size (which operand it is follows from the shape: QK^T's output has ``k == m`` tokens,
AV's first operand ``c == m``). The dense counts (``macs``, ``vector_ops``, ``in_bytes``, ``out_bytes``)
stay those of the unmasked layer, what hardware that cannot skip runs; the ``effective_*`` counts
are what hardware that skips the masked positions runs and stores (values only; index metadata is
the hardware's and counted by `hwsearch.hwmodel`).

``density_std`` (matmul, softmax, linear) says how unevenly a mask is spread: the standard deviation,
over the rows of the masked matrix (query rows of an attention map, output rows of a linear layer's
``k x c`` weights), of each row's kept share; 0 (the default) is an even mask. Hardware that
processes rows in lockstep waits for its densest row, so an uneven mask costs it more.

In a quantized network only conv/linear layers (and quantized matmuls) carry a quantizer; the layers
between them (activations, pooling, norms, squeeze-excite products, residual adds) work on what the
layer before them produced. `NetSpec.with_inherited_activation_bits` gives those layers that width, as
an integer pipeline runs them; pricing them at float width would make every quantized network look
as slow as its float parts and cap what mixed precision can gain.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from hwsearch.errors import SpecError
from hwsearch.io import atomic_write_text

OPS = ("conv", "dwconv", "linear", "matmul", "softmax", "norm", "eltwise", "pool")
WEIGHTED_OPS = ("conv", "dwconv", "linear")
MASKED_OPS = ("linear", "matmul", "softmax")  # ops whose density may come with a row spread
IR_VERSION = 1
FLOAT_BITS = 32

_INT_FIELDS = ("n", "c", "k", "m", "in_h", "in_w", "r", "s", "stride", "groups")


@dataclass(frozen=True)
class LayerSpec:
    """One compute layer, hardware-independent and hashable (``name`` is not part of its identity)."""

    op: str
    n: int = 1
    c: int = 1
    k: int = 1
    m: int = 1
    in_h: int = 1
    in_w: int = 1
    r: int = 1
    s: int = 1
    stride: int = 1
    pad: int = 0
    groups: int = 1
    bias: bool = False
    fn: str = ""
    w_bits: int = 32
    a_bits: int = 32
    density: float = 1.0
    nm: tuple[int, int] | None = None
    tile: tuple[int, int] | None = None  # (rows, cols) of the pruned units of a tiled weight mask
    density_std: float = 0.0  # spread of the kept share over the masked matrix's rows (see above)
    ceil_mode: bool = False  # output size rounds up (SCALE-Sim) rather than down (frameworks)
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        where = f"layer {self.name or self.op!r}"
        if self.op not in OPS:
            raise SpecError(f"{where}: op {self.op!r} is unknown; expected one of {', '.join(OPS)}")
        for f in _INT_FIELDS:
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise SpecError(f"{where}: {f}={v!r} must be a positive integer")
        if not isinstance(self.pad, int) or self.pad < 0:
            raise SpecError(f"{where}: pad={self.pad!r} must be a non-negative integer")
        for f in ("w_bits", "a_bits"):
            v = getattr(self, f)
            if not isinstance(v, int) or not 1 <= v <= 32:
                raise SpecError(f"{where}: {f}={v!r} must be an integer from 1 to 32")
        if not 0.0 < float(self.density) <= 1.0:
            raise SpecError(f"{where}: density={self.density!r} must lie in (0, 1]")
        if self.nm is not None:
            nm = tuple(self.nm)
            if len(nm) != 2 or not all(isinstance(x, int) for x in nm) or not 0 < nm[0] <= nm[1]:
                raise SpecError(f"{where}: nm={self.nm!r} must be (N, M) with 0 < N <= M")
            object.__setattr__(self, "nm", nm)
        if self.tile is not None:
            tile = tuple(self.tile)
            if len(tile) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 1 for x in tile):
                raise SpecError(f"{where}: tile={self.tile!r} must be (rows, cols), both positive integers")
            if self.op != "linear":
                raise SpecError(f"{where}: tile applies to linear layers, not {self.op!r}")
            if self.nm is not None:
                raise SpecError(f"{where}: tile={tile} and nm={self.nm} cannot be combined")
            object.__setattr__(self, "tile", tile)
        if self.op in ("conv", "dwconv"):
            if self.c % self.groups or self.k % self.groups:
                raise SpecError(f"{where}: groups={self.groups} must divide c={self.c} and k={self.k}")
            if self.op == "dwconv" and self.groups != self.c:
                raise SpecError(f"{where}: a dwconv needs groups == c, got groups={self.groups}, c={self.c}")
        if self.op in ("conv", "dwconv", "pool"):
            if self.in_h + 2 * self.pad < self.r or self.in_w + 2 * self.pad < self.s:
                raise SpecError(
                    f"{where}: kernel {self.r}x{self.s} is larger than the padded input "
                    f"{self.in_h + 2 * self.pad}x{self.in_w + 2 * self.pad}"
                )
        std = self.density_std
        if isinstance(std, bool) or not isinstance(std, (int, float)) or not math.isfinite(std) or std < 0:
            raise SpecError(f"{where}: density_std={std!r} must be a non-negative number")
        if std:
            if self.op not in MASKED_OPS:
                raise SpecError(f"{where}: density_std applies to {', '.join(MASKED_OPS)}, not {self.op!r}")
            # Row shares lie in [0, 1] with mean `density`, so their spread is at most sqrt(d(1-d)).
            most = math.sqrt(float(self.density) * (1.0 - float(self.density)))
            if std > most + 1e-12:
                raise SpecError(f"{where}: density_std={std!r} cannot exceed sqrt(density*(1-density))={most:.4g}")
        object.__setattr__(self, "density_std", float(std))
        if self.ceil_mode and self.op not in ("conv", "dwconv", "pool"):
            raise SpecError(f"{where}: ceil_mode applies to conv, dwconv and pool, not {self.op!r}")
        object.__setattr__(self, "density", float(self.density))

    # ---- derived shape -------------------------------------------------------------------------
    def _out(self, size: int, kernel: int) -> int:
        span = size + 2 * self.pad - kernel
        return (-(-span // self.stride) if self.ceil_mode else span // self.stride) + 1

    @property
    def h(self) -> int:
        """Output height (conv, dwconv, pool); the input height for other ops."""
        if self.op in ("conv", "dwconv", "pool"):
            return self._out(self.in_h, self.r)
        return self.in_h

    @property
    def w(self) -> int:
        """Output width (conv, dwconv, pool); the input width for other ops."""
        if self.op in ("conv", "dwconv", "pool"):
            return self._out(self.in_w, self.s)
        return self.in_w

    @property
    def has_weights(self) -> bool:
        """Whether the layer multiplies by learned weights (conv, dwconv, linear)."""
        return self.op in WEIGHTED_OPS

    @property
    def weight_density(self) -> float:
        """Share of weights kept after fine-grained and N:M pruning (a matmul: of map positions)."""
        d = self.density
        if self.nm is not None:
            d *= self.nm[0] / self.nm[1]
        return d

    @property
    def macs(self) -> int:
        """Dense multiply-accumulates of one forward pass (what a FLOP counter reports)."""
        if self.op in ("conv", "dwconv"):
            return self.n * self.k * self.h * self.w * (self.c // self.groups) * self.r * self.s
        if self.op in ("linear", "matmul"):
            return self.n * self.m * self.c * self.k
        return 0

    @property
    def effective_macs(self) -> int:
        """MACs with a non-zero weight (a matmul: on a kept map position): what skipping hardware executes."""
        return int(round(self.macs * self.weight_density))

    @property
    def vector_ops(self) -> int:
        """Element operations of a vector op (softmax, norm, eltwise, pool); 0 for MAC layers."""
        if self.op == "softmax":
            return self.n * self.m * self.k
        if self.op in ("norm", "eltwise"):
            return self.in_elems
        if self.op == "pool":
            return self.n * self.c * self.h * self.w * self.r * self.s
        return 0

    @property
    def effective_vector_ops(self) -> int:
        """Element operations on the kept entries: a masked softmax's ``density`` share; else `vector_ops`."""
        if self.op == "softmax":
            return int(round(self.vector_ops * self.density))
        return self.vector_ops

    @property
    def map_elems(self) -> int:
        """Elements of the attention map a matmul or softmax touches (QK^T's output, AV's first
        operand, softmax's input); 0 for other ops."""
        if self.op == "softmax":
            return self.n * self.m * self.k
        if self.op == "matmul":
            return self.n * self.m * (self.c if self.map_is_input else self.k)
        return 0

    @property
    def map_is_input(self) -> bool:
        """Whether a matmul's map is its first operand (AV: ``c == m`` tokens, ``k`` not) rather
        than its output (QK^T); a product square in both moves the same bytes either way."""
        return self.op == "matmul" and self.c == self.m and self.k != self.m

    @property
    def effective_in_bytes(self) -> float:
        """Input bytes with a masked map stored compressed (kept values only, at ``a_bits``)."""
        if self.op == "softmax" or (self.op == "matmul" and self.map_is_input):
            return self.in_bytes - self._masked_elems * self.a_bits / 8
        return self.in_bytes

    @property
    def effective_out_bytes(self) -> float:
        """Output bytes with a masked map stored compressed (kept values only, at ``a_bits``)."""
        if self.op == "softmax" or (self.op == "matmul" and not self.map_is_input):
            return self.out_bytes - self._masked_elems * self.a_bits / 8
        return self.out_bytes

    @property
    def _masked_elems(self) -> int:
        return self.map_elems - int(round(self.map_elems * self.density))

    @property
    def params(self) -> int:
        """Learned parameters, dense."""
        if self.op in ("conv", "dwconv"):
            return self.k * (self.c // self.groups) * self.r * self.s + (self.k if self.bias else 0)
        if self.op == "linear":
            return self.c * self.k + (self.k if self.bias else 0)
        if self.op == "norm":
            return 2 * self.c if self.bias else 0
        if self.op == "eltwise" and self.bias:
            return self.in_elems // self.n
        return 0

    @property
    def weight_params(self) -> int:
        """Parameters of the weight tensor alone (excluding bias)."""
        if self.op in WEIGHTED_OPS:
            return self.params - (self.k if self.bias else 0)
        return 0

    @property
    def nonzero_params(self) -> int:
        """Parameters left after fine-grained / N:M pruning of the weight tensor."""
        pruned = self.weight_params - int(round(self.weight_params * self.weight_density))
        return self.params - pruned

    @property
    def weight_bytes(self) -> float:
        """Bytes of the stored non-zero parameters at ``w_bits`` (index metadata not counted)."""
        return self.nonzero_params * self.w_bits / 8

    @property
    def in_elems(self) -> int:
        """Input activation elements (both operands for matmul)."""
        if self.op in ("conv", "dwconv", "pool"):
            return self.n * self.c * self.in_h * self.in_w
        if self.op == "linear":
            return self.n * self.m * self.c
        if self.op == "matmul":
            return self.n * (self.m * self.c + self.c * self.k)
        if self.op == "softmax":
            return self.n * self.m * self.k
        return self.n * self.c * self.in_h * self.in_w * self.m

    @property
    def out_elems(self) -> int:
        """Output activation elements."""
        if self.op in ("conv", "dwconv"):
            return self.n * self.k * self.h * self.w
        if self.op == "pool":
            return self.n * self.c * self.h * self.w
        if self.op in ("linear", "matmul"):
            return self.n * self.m * self.k
        return self.in_elems

    @property
    def in_bytes(self) -> float:
        """Input activation bytes at ``a_bits``."""
        return self.in_elems * self.a_bits / 8

    @property
    def out_bytes(self) -> float:
        """Output activation bytes at ``a_bits``."""
        return self.out_elems * self.a_bits / 8

    @property
    def activation_bytes(self) -> float:
        """Input plus output activation bytes: the memory the layer needs live at once (MCUNet)."""
        return self.in_bytes + self.out_bytes

    # ---- identity and serialisation ------------------------------------------------------------
    @property
    def key(self) -> str:
        """Canonical string of everything that changes the layer's cost (``name`` excluded)."""
        parts = [self.op]
        for f in fields(self):
            if f.name in ("op", "name"):
                continue
            if ((f.name == "ceil_mode" and not self.ceil_mode) or (f.name == "tile" and self.tile is None)
                    or (f.name == "density_std" and not self.density_std)):
                continue  # keys of layers without them (and the tables keyed by them) stay as they were
            v = getattr(self, f.name)
            if f.name == "nm":
                v = "-" if v is None else f"{v[0]}:{v[1]}"
            elif f.name == "tile":
                v = f"{v[0]}x{v[1]}"
            elif f.name in ("density", "density_std"):
                v = repr(round(v, 6))
            elif f.name in ("bias", "ceil_mode"):
                v = int(v)
            parts.append(f"{f.name}={v}")
        return "|".join(parts)

    def with_activation_bits(self, bits: int) -> LayerSpec:
        """A layer without weights working on ``bits``-wide activations; a matmul's second operand is
        an activation too, so it takes the weights' width as well (what a quantized matmul describes)."""
        if self.has_weights:
            raise SpecError(f"layer {self.name or self.op!r}: a layer with weights takes its widths from its "
                            "policy (with_(w_bits=..., a_bits=...))")
        return self.with_(w_bits=bits, a_bits=bits) if self.op == "matmul" else self.with_(a_bits=bits)

    def with_(self, **changes: Any) -> LayerSpec:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; defaults are left out so files stay short."""
        d: dict[str, Any] = {"op": self.op}
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name != "op" and v != f.default:
                d[f.name] = list(v) if f.name in ("nm", "tile") else v
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LayerSpec:
        """Inverse of `to_dict`; unknown keys are an error, not silently dropped."""
        known = {f.name for f in fields(cls)}
        extra = set(d) - known
        if extra:
            raise SpecError(f"unknown LayerSpec field(s) {sorted(extra)}; known: {sorted(known)}")
        if "op" not in d:
            raise SpecError("a LayerSpec needs an 'op'")
        kw = dict(d)
        for f in ("nm", "tile"):
            if kw.get(f) is not None:
                kw[f] = tuple(kw[f])
        return cls(**kw)


@dataclass(frozen=True)
class NetSpec:
    """The ordered compute layers of one concrete network, and the shape of one input sample."""

    layers: tuple[LayerSpec, ...]
    input_shape: tuple[int, int, int]  # (channels, height, width)
    name: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", tuple(self.layers))
        shape = tuple(int(x) for x in self.input_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise SpecError(f"input_shape={self.input_shape!r} must be (channels, height, width), all >= 1")
        object.__setattr__(self, "input_shape", shape)
        for layer in self.layers:
            if not isinstance(layer, LayerSpec):
                raise SpecError(f"NetSpec layers must be LayerSpec, got {type(layer).__name__}")

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    @property
    def macs(self) -> int:
        """Total dense MACs."""
        return sum(layer.macs for layer in self.layers)

    @property
    def effective_macs(self) -> int:
        """Total MACs with a non-zero weight."""
        return sum(layer.effective_macs for layer in self.layers)

    @property
    def params(self) -> int:
        """Total dense parameters."""
        return sum(layer.params for layer in self.layers)

    @property
    def nonzero_params(self) -> int:
        """Total parameters after fine-grained / N:M pruning."""
        return sum(layer.nonzero_params for layer in self.layers)

    @property
    def weight_bytes(self) -> float:
        """Model size: stored non-zero parameters at their bit-widths."""
        return sum(layer.weight_bytes for layer in self.layers)

    @property
    def peak_activation_bytes(self) -> float:
        """Largest input+output activation of any layer (MCUNet's peak memory)."""
        return max((layer.activation_bytes for layer in self.layers), default=0.0)

    @property
    def avg_w_bits(self) -> float:
        """Weight bit-width averaged over weight parameters."""
        total = sum(layer.weight_params for layer in self.layers)
        if total == 0:
            return 0.0
        return sum(layer.weight_params * layer.w_bits for layer in self.layers) / total

    @property
    def key(self) -> str:
        """Short stable digest of the layers and input shape."""
        text = json.dumps([list(self.input_shape)] + [layer.key for layer in self.layers])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def distinct_layers(self) -> list[LayerSpec]:
        """Layers with distinct keys, in first-seen order (what a lookup table needs)."""
        seen: dict[str, LayerSpec] = {}
        for layer in self.layers:
            seen.setdefault(layer.key, layer)
        return list(seen.values())

    def with_inherited_activation_bits(self) -> NetSpec:
        """Each layer without a quantizer of its own (no weights, float width) at the activation width
        of the layer before it; a float network is returned unchanged."""
        out: list[LayerSpec] = []
        width = FLOAT_BITS
        for layer in self.layers:
            if not layer.has_weights and layer.a_bits == FLOAT_BITS and width != FLOAT_BITS:
                layer = layer.with_activation_bits(width)
            width = layer.a_bits
            out.append(layer)
        return NetSpec(tuple(out), self.input_shape, self.name)

    def with_batch(self, n: int) -> NetSpec:
        """The same network at batch size ``n``; matmul batches (batch x heads) scale too."""
        out = []
        for layer in self.layers:
            heads = layer.n // self.batch if self.batch else 1
            out.append(layer.with_(n=n * max(heads, 1)))
        return NetSpec(tuple(out), self.input_shape, self.name)

    @property
    def batch(self) -> int:
        """Batch size, read from the first layer."""
        return self.layers[0].n if self.layers else 1

    def summary(self) -> dict[str, Any]:
        """The totals a person asks for first."""
        return {
            "layers": len(self.layers),
            "macs": self.macs,
            "params": self.params,
            "weight_bytes": self.weight_bytes,
            "peak_activation_bytes": self.peak_activation_bytes,
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict with a format version."""
        return {
            "version": IR_VERSION,
            "name": self.name,
            "input_shape": list(self.input_shape),
            "layers": [layer.to_dict() for layer in self.layers],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NetSpec:
        """Inverse of `to_dict`."""
        version = d.get("version", IR_VERSION)
        if version != IR_VERSION:
            raise SpecError(f"NetSpec version {version!r} is not supported; this hwsearch reads {IR_VERSION}")
        try:
            layers = tuple(LayerSpec.from_dict(x) for x in d["layers"])
            return cls(layers, tuple(d["input_shape"]), d.get("name", ""))
        except KeyError as e:
            raise SpecError(f"a NetSpec dict needs {e.args[0]!r}") from None

    def to_json(self, path: str) -> None:
        """Write to a JSON file atomically."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def from_json(cls, path: str) -> NetSpec:
        """Read a JSON file written by `to_json`."""
        with open(path) as f:
            return cls.from_dict(json.load(f))


__all__ = ["FLOAT_BITS", "OPS", "WEIGHTED_OPS", "MASKED_OPS", "IR_VERSION", "LayerSpec", "NetSpec"]
