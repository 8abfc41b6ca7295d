"""`nb201`: the NAS-Bench-201 cell space (Dong & Yang, ICLR 2020), 5^6 = 15,625 cells.

Genes: one per cell edge ``i -> j`` (``e0to1`` ... ``e2to3``), each one of ``none``, ``skip_connect``,
``nor_conv_1x1``, ``nor_conv_3x3``, ``avg_pool_3x3``; every cell of the network is the same cell.
Choices convert to and from NAS-Bench-201's arch strings and indices (`hwsearch.spaces.nb201_arch`).

The network, as NAS-Bench-201's reference implementation defines it (facts, not code): a stem of a
3x3 conv to C = 16 channels + BN; three stages of N = 5 cells at C, 2C and 4C channels, joined by a
ResNet basic block of stride 2 (ReLU-conv3x3/2-BN, ReLU-conv3x3-BN, shortcut 2x2/2 average pool +
1x1 conv, added to the block's output); BN + ReLU, global average pooling and a linear classifier.
Inside a cell node ``j`` is the sum over ``i < j`` of ``op_ij(node i)`` and the cell's output is
node 3; ``nor_conv_kxk`` is ReLU-Conv(kxk, 'same' padding, no bias)-BN, ``avg_pool_3x3`` is a 3x3
average pool of stride 1 and padding 1 that averages over the pixels inside the map
(``count_include_pad=False``), ``skip_connect`` the identity, and ``none`` a zero tensor. BN is
affine throughout.

Two readings settle how ``none`` costs: NAS-Bench-201 multiplies the input by 0 and adds it in; here
a ``none`` edge has no layer and adds nothing, and a node whose inputs are all ``none`` is a zero map
(a cell may output zeros: such cells are valid NAS-Bench-201 members). Every other edge runs even
when its node does not reach the cell's output, as in NAS-Bench-201's cell, so the NetSpec counts
what the reference network computes. Convs, BN, ReLU, pools and adds are their own layers
(``eltwise`` ``relu``/``add``, ``pool``), as in the other spaces, and layer names are the module
names of `build`, so the two can be compared layer by layer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hwsearch.errors import ConfigError, UnknownName
from hwsearch.ir import LayerSpec, NetSpec
from hwsearch.spaces import nb201_arch as arch
from hwsearch.spaces import register
from hwsearch.spaces.base import Choice, Dim, SearchSpace

if TYPE_CHECKING:
    import torch

CONV_KERNELS = {"nor_conv_1x1": 1, "nor_conv_3x3": 3}
STAGES = 3


@dataclass(frozen=True)
class CellPlan:
    """One cell of the network: a searched cell, or the fixed residual reduction block."""

    index: int
    reduction: bool
    c_in: int
    c_out: int
    size_in: int

    @property
    def size_out(self) -> int:
        """Output height/width (a reduction halves an even map)."""
        return self.size_in // 2 if self.reduction else self.size_in

    @property
    def prefix(self) -> str:
        """Module name of the cell inside the network."""
        return f"cells.{self.index}"


class NB201Space(SearchSpace):
    """NAS-Bench-201's cell space and macro skeleton (see the module docstring)."""

    name = "nb201"

    def __init__(self, in_channels: int = 3, num_classes: int = 10, resolution: int = 32, channels: int = 16,
                 cells_per_stage: int = 5) -> None:
        for field, value in (("in_channels", in_channels), ("num_classes", num_classes),
                             ("resolution", resolution), ("channels", channels),
                             ("cells_per_stage", cells_per_stage)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"nb201: {field}={value!r} must be a positive integer")
        if resolution % 4:
            # Both reduction blocks add a strided conv's output to a 2x2 pool's: equal only on even maps.
            raise ConfigError(f"nb201: resolution={resolution} must be a multiple of 4 (two stride-2 reductions)")
        self.in_channels, self._num_classes = in_channels, num_classes
        self.resolution, self.channels, self.cells_per_stage = resolution, channels, cells_per_stage
        self.dims = tuple(Dim(g, arch.OPS) for g in arch.GENES)

    # ---- NAS-Bench-201's spellings ------------------------------------------------------------
    def to_arch_str(self, choice: Mapping[str, Any]) -> str:
        """NAS-Bench-201's arch string of ``choice``."""
        return arch.to_arch_str(self.validate(choice))

    def from_arch_str(self, arch_str: str) -> Choice:
        """The choice an arch string spells (`SpecError` on a malformed one)."""
        return self.validate(arch.from_arch_str(arch_str))

    def index_of(self, cell: str | Mapping[str, Any]) -> int:
        """NAS-Bench-201 index of a choice or an arch string."""
        return arch.index_of(cell if isinstance(cell, str) else self.validate(cell))

    def arch_str_of_index(self, index: int) -> str:
        """Arch string of the cell with NAS-Bench-201 index ``index``."""
        return arch.arch_str_of_index(index)

    def notation(self, choice: Mapping[str, Any]) -> str | None:
        """The arch string, NAS-Bench-201's own name for a cell."""
        return self.to_arch_str(choice)

    # ---- layout shared by to_netspec and build ----------------------------------------------
    def cells(self) -> list[CellPlan]:
        """The stages' cells and the two reduction blocks, in order, with their shapes."""
        out, c, size = [], self.channels, self.resolution
        for stage in range(STAGES):
            if stage:
                out.append(CellPlan(len(out), True, c, 2 * c, size))
                c, size = 2 * c, size // 2
            out.extend(CellPlan(len(out), False, c, c, size) for _ in range(self.cells_per_stage))
        return out

    # ---- the contract -----------------------------------------------------------------------
    def to_netspec(self, choice: Mapping[str, Any], batch: int = 1) -> NetSpec:
        """The exact layers `build` runs, in execution order, named by module qualname."""
        choice = self.validate(choice)
        n, c, size = batch, self.channels, self.resolution
        layers: list[LayerSpec] = [
            _conv(n, self.in_channels, c, size, 3, 1, "stem.conv"),
            _bn(n, c, size, "stem.bn"),
        ]
        for cell in self.cells():
            if cell.reduction:
                _reduction_layers(layers, n, cell)
            else:
                _cell_layers(layers, n, cell, choice)
        last = self.cells()[-1]
        c, size = last.c_out, last.size_out
        layers += [
            _bn(n, c, size, "lastact.bn"),
            LayerSpec("eltwise", fn="relu", n=n, c=c, in_h=size, in_w=size, name="lastact.relu"),
            LayerSpec("pool", fn="avg", n=n, c=c, in_h=size, in_w=size, r=size, s=size, name="pool"),
            LayerSpec("linear", n=n, c=c, k=self._num_classes, bias=True, name="classifier"),
        ]
        return NetSpec(tuple(layers), self.input_shape(choice), name="nb201")

    def input_shape(self, choice: Mapping[str, Any]) -> tuple[int, int, int]:
        """(channels, height, width) of one input sample."""
        return (self.in_channels, self.resolution, self.resolution)

    def build(self, choice: Mapping[str, Any]) -> torch.nn.Module:
        """A freshly initialised NAS-Bench-201 network for ``choice``."""
        # deferred: the module imports torch, and checking a config never builds a network
        from hwsearch.spaces._nb201_modules import NB201Network

        return NB201Network(self.validate(choice), self.cells(), self.in_channels, self.channels,
                            self._num_classes)

    def references(self) -> list[str]:
        """``largest``, ``smallest`` and named NAS-Bench-201 cells (NAS-Bench-201 arch strings work too)."""
        return sorted(_REFERENCES)

    def reference(self, name: str) -> Choice:
        """A named reference cell, or the cell an arch string (``|op~0|+...``) spells."""
        if name in _REFERENCES:
            return self.from_arch_str(_REFERENCES[name])
        if name.lstrip().startswith("|"):
            return self.from_arch_str(name)
        raise UnknownName(f"space {self.name!r} has no reference {name!r}; known: {', '.join(self.references())}, "
                          f"or a NAS-Bench-201 arch string like {arch.EXAMPLE!r}")


def _uniform(op: str) -> str:
    return arch.to_arch_str({g: op for g in arch.GENES})


_REFERENCES = {
    "largest": _uniform("nor_conv_3x3"),   # the most MACs and parameters a cell can have
    "smallest": _uniform("none"),          # no layer in any cell: stem, reductions and head only
    "all-conv3x3": _uniform("nor_conv_3x3"),
    "all-skip": _uniform("skip_connect"),
    # The cell most often reported as NAS-Bench-201's best (3x3 convs along the paths, one skip).
    "best-known": arch.EXAMPLE,
}


def _conv(n: int, c: int, k: int, size: int, kernel: int, stride: int, name: str) -> LayerSpec:
    return LayerSpec("conv", n=n, c=c, k=k, in_h=size, in_w=size, r=kernel, s=kernel, stride=stride,
                     pad=kernel // 2, name=name)


def _bn(n: int, c: int, size: int, name: str) -> LayerSpec:
    return LayerSpec("norm", fn="batch", bias=True, n=n, c=c, in_h=size, in_w=size, name=name)


def _relu_conv_bn(layers: list[LayerSpec], prefix: str, n: int, c: int, k: int, size: int, kernel: int,
                  stride: int) -> int:
    """Append NAS-Bench-201's ReLU-Conv-BN and return its output size."""
    conv = _conv(n, c, k, size, kernel, stride, f"{prefix}.conv")
    layers += [LayerSpec("eltwise", fn="relu", n=n, c=c, in_h=size, in_w=size, name=f"{prefix}.relu"),
               conv, _bn(n, k, conv.h, f"{prefix}.bn")]
    return conv.h


def _cell_layers(layers: list[LayerSpec], n: int, cell: CellPlan, choice: Mapping[str, Any]) -> None:
    """A searched cell: each node's edge ops in input order, then the adds that sum them."""
    c, size, p = cell.c_out, cell.size_in, cell.prefix
    for j in range(1, arch.NODES):
        summed = 0
        for i in range(j):
            g = arch.gene(i, j)
            op = choice[g]
            if op == "none":
                continue
            summed += 1
            if op in CONV_KERNELS:
                _relu_conv_bn(layers, f"{p}.{g}", n, c, c, size, CONV_KERNELS[op], 1)
            elif op == "avg_pool_3x3":
                layers.append(LayerSpec("pool", fn="avg", n=n, c=c, in_h=size, in_w=size, r=3, s=3, pad=1,
                                        name=f"{p}.{g}"))
        layers.extend(LayerSpec("eltwise", fn="add", n=n, c=c, in_h=size, in_w=size, name=f"{p}.add{j}_{t}")
                      for t in range(summed - 1))


def _reduction_layers(layers: list[LayerSpec], n: int, cell: CellPlan) -> None:
    """The residual reduction block: main path, then the pooled 1x1 shortcut, then their sum."""
    p, c_in, c_out, size, out = cell.prefix, cell.c_in, cell.c_out, cell.size_in, cell.size_out
    mid = _relu_conv_bn(layers, f"{p}.conv_a", n, c_in, c_out, size, 3, 2)
    _relu_conv_bn(layers, f"{p}.conv_b", n, c_out, c_out, mid, 3, 1)
    layers += [
        LayerSpec("pool", fn="avg", n=n, c=c_in, in_h=size, in_w=size, r=2, s=2, stride=2,
                  name=f"{p}.shortcut.pool"),
        _conv(n, c_in, c_out, out, 1, 1, f"{p}.shortcut.conv"),
        LayerSpec("eltwise", fn="add", n=n, c=c_out, in_h=out, in_w=out, name=f"{p}.add"),
    ]


@register("nb201")
def nb201(in_channels: int = 3, num_classes: int = 10, resolution: int = 32, channels: int = 16,
          cells_per_stage: int = 5) -> NB201Space:
    """The NAS-Bench-201 space (32x32 inputs, C = 16, N = 5 as published)."""
    return NB201Space(in_channels=in_channels, num_classes=num_classes, resolution=resolution,
                      channels=channels, cells_per_stage=cells_per_stage)


__all__ = ["CONV_KERNELS", "CellPlan", "NB201Space", "nb201"]
