"""NAS-Bench-201 cells as text: arch strings, and their indices in NAS-Bench-201's own order.

A cell (Dong & Yang, ICLR 2020) is a DAG of 4 nodes whose 6 edges ``i -> j`` (``i < j``) each carry
one of 5 operators. NAS-Bench-201 spells a cell as its three nodes 1, 2, 3 joined by ``+``, each node
listing its inputs in order ``|op~0|op~1|...|``, e.g.
``|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|``.
Benchmarks built on NAS-Bench-201 (HW-NAS-Bench, HELP) refer to a cell by its index, whose order is
NAS-Bench-201's and cannot be derived from the strings; the package ships it as data
(``data/nb201_arch_index.txt.gz``, line ``i`` is the cell with index ``i``) so that both directions
work offline. Nothing here imports torch.
"""

from __future__ import annotations

import gzip
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

from hwsearch.errors import CorruptTable, SpecError

# NAS-Bench-201's operator set, in its own order (none, skip, 1x1 conv, 3x3 conv, 3x3 average pool).
OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NODES = 4
# Edges (i, j) in the order an arch string lists them: node 1's inputs, then node 2's, then node 3's.
EDGES = tuple((i, j) for j in range(1, NODES) for i in range(j))
NUM_CELLS = len(OPS) ** len(EDGES)
TABLE = "nb201_arch_index.txt.gz"
EXAMPLE = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|"


def gene(i: int, j: int) -> str:
    """Gene name of the edge from node ``i`` to node ``j``."""
    return f"e{i}to{j}"


GENES = tuple(gene(i, j) for i, j in EDGES)


def to_arch_str(choice: Mapping[str, Any]) -> str:
    """NAS-Bench-201's arch string of a cell given as ``{gene: op}``."""
    nodes = ("|" + "|".join(f"{choice[gene(i, j)]}~{i}" for i in range(j)) + "|" for j in range(1, NODES))
    return "+".join(nodes)


def from_arch_str(arch: str) -> dict[str, str]:
    """The ``{gene: op}`` cell an arch string spells; a malformed string is a `SpecError` naming the fault."""
    if not isinstance(arch, str):
        raise SpecError(f"a NAS-Bench-201 arch string must be a str, got {type(arch).__name__}")
    text = arch.strip()
    nodes = text.split("+")
    if len(nodes) != NODES - 1:
        raise SpecError(f"arch string {arch!r} has {len(nodes)} node(s) separated by '+'; "
                        f"a NAS-Bench-201 cell has {NODES - 1}, like {EXAMPLE!r}")
    choice: dict[str, str] = {}
    for j, node in enumerate(nodes, start=1):
        if len(node) < 2 or node[0] != "|" or node[-1] != "|":
            raise SpecError(f"arch string {arch!r}: node {j} {node!r} must be enclosed in '|', like '|op~0|'")
        edges = node[1:-1].split("|")
        if len(edges) != j:
            raise SpecError(f"arch string {arch!r}: node {j} has {len(edges)} input(s) {node!r}; it needs {j}, "
                            f"one from each of nodes 0..{j - 1}")
        for i, edge in enumerate(edges):
            op, sep, src = edge.partition("~")
            if not sep or src != str(i):
                raise SpecError(f"arch string {arch!r}: edge {edge!r} of node {j} must read 'op~{i}'")
            if op not in OPS:
                raise SpecError(f"arch string {arch!r}: operator {op!r} is unknown; options: {', '.join(OPS)}")
            choice[gene(i, j)] = op
    return choice


@lru_cache(maxsize=1)
def _table() -> tuple[tuple[str, ...], dict[str, int]]:
    """The shipped index order: strings by index, and index by string."""
    with resources.files("hwsearch.spaces").joinpath("data", TABLE).open("rb") as raw:
        lines = tuple(line for line in gzip.decompress(raw.read()).decode("ascii").splitlines() if line)
    index = {s: i for i, s in enumerate(lines)}
    if len(lines) != NUM_CELLS or len(index) != NUM_CELLS:
        raise CorruptTable(f"the NAS-Bench-201 index table {TABLE} holds {len(lines)} lines "
                           f"({len(index)} distinct); it must list all {NUM_CELLS} cells once; reinstall hwsearch")
    return lines, index


def arch_str_of_index(index: int) -> str:
    """The arch string of the cell with NAS-Bench-201 index ``index``."""
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < NUM_CELLS:
        raise SpecError(f"NAS-Bench-201 index {index!r} must be an integer from 0 to {NUM_CELLS - 1}")
    return _table()[0][index]


def index_of(cell: str | Mapping[str, Any]) -> int:
    """NAS-Bench-201 index of a cell given as an arch string or as ``{gene: op}``."""
    if not isinstance(cell, str):
        missing = [g for g in GENES if g not in cell]
        if missing:
            raise SpecError(f"NAS-Bench-201 cell {dict(cell)!r} lacks edge gene(s) {missing}")
        cell = to_arch_str(cell)
    arch = to_arch_str(from_arch_str(cell))  # canonical spelling, and a check of every operator
    try:
        return _table()[1][arch]
    except KeyError:
        raise CorruptTable(f"cell {arch} is missing from the NAS-Bench-201 index table {TABLE}; "
                           "reinstall hwsearch") from None


__all__ = ["EDGES", "EXAMPLE", "GENES", "NODES", "NUM_CELLS", "OPS", "arch_str_of_index", "from_arch_str",
           "gene", "index_of", "to_arch_str"]
