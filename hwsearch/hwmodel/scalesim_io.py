"""Reading SCALE-Sim's files: topology CSVs (conv or GEMM) here, ``.cfg`` architecture files through
`hwsearch.hwmodel.scalesim_cfg` (which says how words, clock and bandwidth convert).

A topology row becomes `LayerSpec`s that keep SCALE-Sim's own conventions, so that costing a topology
reproduces SCALE-Sim layer by layer. What SCALE-Sim does (``scalesim/topology_utils.py`` and
``scalesim/compute/operand_matrix.py``, in scale-sim-v2 and in SCALE-Sim 3 unless said otherwise):

- output size ``ceil((H - FH + S) / S)`` (``topo_calc_hyperparams``), one more row or column than a
  framework's ``floor((H - FH) / S) + 1`` when ``H - FH`` is not a multiple of ``S``; the windows past
  the input's bottom/right edge get no address (``-1``) and read nothing. Layers read here therefore
  carry ``ceil_mode=True``; layers of the project's own spaces keep the framework rounding.
- no padding column: the row gives the (already padded) input size, so ``pad`` is 0.
- ``Channels`` is the input channels, ``Num Filter`` the output channels. The eighth column is the
  stride of both axes; scale-sim-v2 reads an optional ninth column as the stride along the width (a
  different one is refused here: a `LayerSpec` has one stride), SCALE-Sim 3 reads it as the layer's
  ``N:M`` sparsity ratio, which is not read here.
- a row whose name contains ``DP`` is depthwise: it runs as one layer per input channel, each with one
  channel and ``Num Filter`` filters (``load_arrays_conv``), and is read here as those layers, named
  ``<name>Channel_<i>`` as SCALE-Sim names them.
- batch is 1 (the operand matrices fix ``batch_size = 1``).
- a GEMM row ``M, N, K`` runs as an ``M x K`` input, one ``1 x K`` filter of one channel per output
  column, ``N`` filters (``load_arrays_gemm``): a `linear` layer of ``m=M`` rows, ``c=K``, ``k=N``.
"""

from __future__ import annotations

import csv
from pathlib import Path

from hwsearch.errors import SpecError
from hwsearch.hwmodel.spec import Accelerator
from hwsearch.ir import LayerSpec


def read_cfg(path: str | Path) -> Accelerator:
    """An `Accelerator` from a SCALE-Sim ``.cfg`` file (`Accelerator.from_scalesim_cfg`)."""
    return Accelerator.from_scalesim_cfg(path)


def read_topology(path: str | Path, gemm: bool | None = None, bits: int = 8) -> list[LayerSpec]:
    """LayerSpecs from a SCALE-Sim topology CSV; ``gemm=None`` tells conv from GEMM by column count."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"topology file {str(path)!r} does not exist")
    with open(path, newline="") as f:
        rows = [[x.strip() for x in row if x.strip()] for row in csv.reader(f)]
    rows = [r for r in rows if r]
    if len(rows) < 2:
        raise SpecError(f"topology file {path.name!r} has no layer rows after its header")
    body = rows[1:]
    if gemm is None:
        gemm = len(rows[0]) == 4 or all(len(r) in (4, 5) for r in body)
    out = []
    for i, r in enumerate(body, start=2):
        want = 4 if gemm else 8
        if len(r) < want:
            raise SpecError(f"{path.name}:{i}: expected {want} columns for a {'GEMM' if gemm else 'conv'} row, got {r}")
        try:
            vals = [int(x) for x in r[1:want]]
        except ValueError:
            raise SpecError(f"{path.name}:{i}: non-integer shape in {r}") from None
        name = r[0]
        if gemm:
            m, n, k = vals
            out.append(LayerSpec("linear", m=m, c=k, k=n, w_bits=bits, a_bits=bits, name=name))
            continue
        h, w, fh, fw, c, k, s = vals
        stride_w = int(r[want]) if len(r) > want and r[want].isdigit() else s
        if stride_w != s:
            raise SpecError(f"{path.name}:{i}: strides {s} (height) and {stride_w} (width) differ; "
                            "a LayerSpec has one stride for both")
        shape = dict(in_h=h, in_w=w, r=fh, s=fw, stride=s, ceil_mode=True, w_bits=bits, a_bits=bits)
        if "DP" in name:
            out.extend(LayerSpec("conv", c=1, k=k, name=f"{name}Channel_{j}", **shape) for j in range(c))
        else:
            out.append(LayerSpec("conv", c=c, k=k, name=name, **shape))
    return out
