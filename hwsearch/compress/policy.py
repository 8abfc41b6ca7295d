"""A compression policy: per-layer pruning and bit-width choices, plus a ViT token-keep schedule.

`LayerPolicy` is what an AMC/HAQ agent decides for one layer; `Policy` maps layer names (module
qualnames, as in `prunable_layers` and the traced NetSpec) to them. Layers a policy does not name stay
dense and float. A policy is plain data: JSON through `to_dict` / `from_dict`, no torch import, so a
search can store it beside the network choice and rebuild the compressed model from both.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from hwsearch.errors import ConfigError
from hwsearch.io import atomic_write_text
from hwsearch.ir import FLOAT_BITS

PATTERNS = ("dense", "fine", "nm", "vector", "block")
DIRECTIONS = ("auto", "row", "col")
DENSITY_PATTERNS = ("fine", "vector", "block")  # patterns whose share of kept weights is ``density``
CLIPS = ("minmax", "mse")
MIN_BITS, MAX_BITS = 2, 8
POLICY_VERSION = 1


@dataclass(frozen=True)
class LayerPolicy:
    """One layer's compression: units kept, weight sparsity pattern, weight/activation bits.

    ``keep`` is the share of output channels kept (or of heads, for the query layer of an attention
    module); it is read from the leader of a coupled group (see `prunable_layers`). ``pattern`` is
    ``dense``, ``fine`` (magnitude mask keeping ``density`` of the weights) or ``nm`` (``nm = (N, M)``:
    N non-zeros in every M consecutive input weights), ``vector`` (linear layers: vectors of ``vector``
    weights along ``direction`` -- ``row``, ``col``, or ``auto`` for the dominant direction of the
    fine-grained mask -- kept by L2 norm to ``density``; see `hwsearch.compress.tiles`) or ``block``
    (linear layers: ``block`` x ``block`` tiles kept by L2 norm to ``density``). Bits are 2..8, or 32
    for float. ``attention_density`` (the query layer ``qkv`` of an attention module only) is the share
    of the block's attention map a static mask keeps (`hwsearch.compress.attention_mask`; 1: dense).
    """

    keep: float = 1.0
    pattern: str = "dense"
    density: float = 1.0
    nm: tuple[int, int] | None = None
    w_bits: int = FLOAT_BITS
    a_bits: int = FLOAT_BITS
    vector: int | None = None
    direction: str = "auto"
    block: int | None = None
    attention_density: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < float(self.keep) <= 1.0:
            raise ConfigError(f"keep={self.keep!r} must lie in (0, 1]")
        object.__setattr__(self, "keep", float(self.keep))
        if self.pattern not in PATTERNS:
            raise ConfigError(f"pattern={self.pattern!r} is unknown; use one of {', '.join(PATTERNS)}")
        if not 0.0 < float(self.density) <= 1.0:
            raise ConfigError(f"density={self.density!r} must lie in (0, 1]")
        object.__setattr__(self, "density", float(self.density))
        ad = self.attention_density
        if isinstance(ad, bool) or not isinstance(ad, (int, float)) or not 0.0 < float(ad) <= 1.0:
            raise ConfigError(f"attention_density={self.attention_density!r} must lie in (0, 1] (share of the "
                              "attention map kept; 1 = dense)")
        object.__setattr__(self, "attention_density", float(self.attention_density))
        if self.pattern not in DENSITY_PATTERNS and self.density != 1.0:
            raise ConfigError(f"density={self.density} needs pattern {' or '.join(map(repr, DENSITY_PATTERNS))}, "
                              f"got pattern {self.pattern!r}")
        for name in ("vector", "block"):  # each is the tile length of the pattern of the same name
            v = getattr(self, name)
            if self.pattern == name:
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    raise ConfigError(f"{name}={v!r} must be a positive integer (the tile length) for pattern {name!r}")
            elif v is not None:
                raise ConfigError(f"{name}={v!r} needs pattern {name!r}, got pattern {self.pattern!r}")
        if self.direction not in DIRECTIONS:
            raise ConfigError(f"direction={self.direction!r} is unknown; use one of {', '.join(DIRECTIONS)}")
        if self.direction != "auto" and self.pattern != "vector":
            raise ConfigError(f"direction={self.direction!r} needs pattern 'vector', got pattern {self.pattern!r}")
        if self.pattern == "nm":
            nm = tuple(self.nm) if self.nm is not None else ()
            if len(nm) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) for x in nm) \
                    or not 0 < nm[0] < nm[1]:
                raise ConfigError(f"nm={self.nm!r} must be (N, M) with 0 < N < M, e.g. (2, 4)")
            object.__setattr__(self, "nm", nm)
        elif self.nm is not None:
            raise ConfigError(f"nm={self.nm!r} needs pattern 'nm', got pattern {self.pattern!r}")
        for name in ("w_bits", "a_bits"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not (MIN_BITS <= v <= MAX_BITS or v == FLOAT_BITS):
                raise ConfigError(f"{name}={v!r} must be an integer from {MIN_BITS} to {MAX_BITS}, or 32 (float)")

    @property
    def is_identity(self) -> bool:
        """Whether this policy leaves the layer unchanged."""
        return self == LayerPolicy()

    @property
    def weight_density(self) -> float:
        """Share of the (kept) weights that stay non-zero."""
        if self.pattern == "nm":
            return self.nm[0] / self.nm[1]
        return self.density

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict; defaults are left out."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v != f.default:
                out[f.name] = list(v) if f.name == "nm" else v
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> LayerPolicy:
        """Inverse of `to_dict`; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        extra = set(d) - known
        if extra:
            raise ConfigError(f"unknown layer-policy key(s) {sorted(extra)}; known: {sorted(known)}")
        kw = dict(d)
        if kw.get("nm") is not None:
            kw["nm"] = tuple(kw["nm"])
        return cls(**kw)


DENSE = LayerPolicy()


@dataclass(frozen=True)
class Policy:
    """A whole network's compression: layer name -> `LayerPolicy`, and how tokens are dropped.

    ``tokens`` is the ViT token-keep schedule: entry ``i`` is the share of the original patch tokens
    still present after transformer block ``i`` (non-increasing; 1.0 for the exempt first blocks;
    empty = no token pruning). ``round_to`` rounds kept channel counts to multiples of it where a layer
    is at least that wide. ``w_clip`` / ``a_clip`` choose min-max or MSE-optimal clipping for weights
    (per output channel) and activations (per tensor, from the calibration batch).
    """

    layers: Mapping[str, LayerPolicy] = field(default_factory=dict)
    tokens: tuple[float, ...] = ()
    round_to: int = 8
    w_clip: str = "minmax"
    a_clip: str = "mse"
    attention_bits: int = FLOAT_BITS

    def __post_init__(self) -> None:
        layers = {}
        for name, lp in dict(self.layers).items():
            if not isinstance(lp, LayerPolicy):
                raise ConfigError(f"policy for layer {name!r} must be a LayerPolicy, got {type(lp).__name__}")
            layers[str(name)] = lp
        object.__setattr__(self, "layers", layers)
        tokens = tuple(float(t) for t in self.tokens)
        for i, t in enumerate(tokens):
            if not 0.0 < t <= 1.0:
                raise ConfigError(f"tokens[{i}]={t} must lie in (0, 1]")
            if i and t > tokens[i - 1]:
                raise ConfigError(f"tokens must not increase: tokens[{i}]={t} > tokens[{i - 1}]={tokens[i - 1]}")
        object.__setattr__(self, "tokens", tokens)
        if isinstance(self.round_to, bool) or not isinstance(self.round_to, int) or self.round_to < 1:
            raise ConfigError(f"round_to={self.round_to!r} must be a positive integer (1 = no rounding)")
        b = self.attention_bits
        if isinstance(b, bool) or not isinstance(b, int) or not (MIN_BITS <= b <= MAX_BITS or b == FLOAT_BITS):
            raise ConfigError(f"attention_bits={b!r} must be an integer from {MIN_BITS} to {MAX_BITS}, or 32 (float)")
        for name in ("w_clip", "a_clip"):
            if getattr(self, name) not in CLIPS:
                raise ConfigError(f"{name}={getattr(self, name)!r} is unknown; use one of {', '.join(CLIPS)}")

    def __hash__(self) -> int:
        return hash((tuple(sorted(self.layers.items())), self.tokens, self.round_to, self.w_clip, self.a_clip,
                     self.attention_bits))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Policy):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def layer(self, name: str) -> LayerPolicy:
        """The policy of layer ``name`` (dense float when the policy does not name it)."""
        return self.layers.get(name, DENSE)

    @property
    def quantized(self) -> bool:
        """Whether any layer has weights or activations below 32 bits."""
        return self.attention_bits < FLOAT_BITS or any(
            lp.w_bits < FLOAT_BITS or lp.a_bits < FLOAT_BITS for lp in self.layers.values())

    @property
    def needs_calibration(self) -> bool:
        """Whether activation ranges must come from a calibration batch (or a saved state dict)."""
        return self.attention_bits < FLOAT_BITS or any(lp.a_bits < FLOAT_BITS for lp in self.layers.values())

    @classmethod
    def uniform(cls, names: list[str] | tuple[str, ...], layer: LayerPolicy, **kw: Any) -> Policy:
        """The same `LayerPolicy` for every named layer."""
        return cls({n: layer for n in names}, **kw)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict with a format version; dense float layers are left out."""
        return {
            "version": POLICY_VERSION,
            "layers": {n: lp.to_dict() for n, lp in sorted(self.layers.items()) if not lp.is_identity},
            "tokens": list(self.tokens),
            "round_to": self.round_to,
            "w_clip": self.w_clip,
            "a_clip": self.a_clip,
            "attention_bits": self.attention_bits,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Policy:
        """Inverse of `to_dict`."""
        version = d.get("version", POLICY_VERSION)
        if version != POLICY_VERSION:
            raise ConfigError(f"policy version {version!r} is not supported; this hwsearch reads {POLICY_VERSION}")
        extra = set(d) - {"version", "layers", "tokens", "round_to", "w_clip", "a_clip", "attention_bits"}
        if extra:
            raise ConfigError(f"unknown policy key(s) {sorted(extra)}")
        layers = d.get("layers", {})
        if not isinstance(layers, Mapping):
            raise ConfigError("policy 'layers' must map layer names to layer policies")
        return cls(
            {n: LayerPolicy.from_dict(v) for n, v in layers.items()},
            tuple(d.get("tokens", ())),
            int(d.get("round_to", 8)),
            d.get("w_clip", "minmax"),
            d.get("a_clip", "mse"),
            int(d.get("attention_bits", FLOAT_BITS)),
        )

    def to_json(self, path: str) -> None:
        """Write to a JSON file atomically."""
        atomic_write_text(path, json.dumps(self.to_dict(), indent=1))

    @classmethod
    def from_json(cls, path: str) -> Policy:
        """Read a file written by `to_json`."""
        try:
            with open(path) as f:
                return cls.from_dict(json.load(f))
        except json.JSONDecodeError as e:
            raise ConfigError(f"policy file {path} is not valid JSON: {e}") from None


def token_schedule(depth: int, keep: float, exempt: int = 3, steps: int | None = None) -> tuple[float, ...]:
    """A geometric token-keep schedule over ``depth`` blocks: the first ``exempt`` keep all tokens,
    then the share decays each block so that ``keep`` of the tokens remain after the last one."""
    if depth < 1:
        raise ConfigError(f"depth={depth} must be >= 1")
    if not 0.0 < keep <= 1.0:
        raise ConfigError(f"keep={keep} must lie in (0, 1]")
    exempt = max(0, min(exempt, depth))
    n = depth - exempt if steps is None else max(0, min(steps, depth - exempt))
    if n == 0:
        return (1.0,) * depth
    rate = keep ** (1.0 / n)
    out = [1.0] * exempt + [rate ** (i + 1) for i in range(n)]
    out += [out[-1]] * (depth - len(out))
    return tuple(out)


__all__ = ["CLIPS", "DENSE", "DENSITY_PATTERNS", "DIRECTIONS", "FLOAT_BITS", "LayerPolicy", "MAX_BITS", "MIN_BITS",
           "PATTERNS", "Policy", "token_schedule"]
