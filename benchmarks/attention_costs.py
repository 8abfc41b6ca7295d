"""Model costs of masked attention and vector-pruned linear layers, on hardware that skips them and on hardware that does not.

Prices the ``vit`` references (``profile: cifar10``) with a static attention mask of each density on
every QK^T, softmax and AV layer, with token pruning, and with both; and the ``gpt`` reference with the linear layers of its blocks
pruned in vectors at each density (TF-MVP's directions: along rows for the qkv projection and the
first MLP matrix, along columns for the output projection and the second MLP matrix; the lengths
are ours), on ``edge-sparse`` (declares sparse attention and vector sparsity) and ``edge-systolic``
(the same array without them). Every layer at 8-bit weights and activations, the arrays' native
width; masks are even (``density_std`` 0). Reports latency, energy and the share of time in
attention (matmul and softmax) and in linear layers: sparse attention shrinks only the first share,
which bounds what it can gain end to end, whereas token pruning shrinks both. Model costs only (no
training), so it runs in seconds.

    python -m benchmarks.attention_costs
"""

from __future__ import annotations

import argparse
import math

from benchmarks.report import write_section
from hwsearch import spaces
from hwsearch.compress.policy import token_schedule
from hwsearch.compress.tokens import token_counts
from hwsearch.hwmodel import Accelerator, network_cost
from hwsearch.ir import NetSpec
from hwsearch.spaces.base import Choice
from hwsearch.spaces.vit import ViTSpace

SECTION = "attention_costs"
DECLARING, PLAIN = "edge-sparse", "edge-systolic"
ATTENTION_DENSITIES = (1.0, 0.5, 0.4, 0.3, 0.2)
VECTOR_DENSITIES = (1.0, 0.4, 0.3, 0.2)
TOKEN_KEEP = 0.5  # tokens left after the last block, reached by a geometric decay
# The DeiT recipe exempts the first 3 of 12 blocks; these networks have 2 to 5, so only the first is.
TOKEN_EXEMPT = 1
# (rows, cols) of the pruned vectors of each block matrix of `gpt`: rows for qkv and fc1, columns for
# proj and fc2 (TF-MVP's dominant directions on GPT-2); the lengths are ours.
GPT_TILES = {"attn.qkv": (1, 16), "attn.proj": (8, 1), "mlp.fc1": (1, 8), "mlp.fc2": (4, 1)}


def at_8_bits(net: NetSpec) -> NetSpec:
    """Every layer at 8-bit weights and activations."""
    return NetSpec(tuple(x.with_(w_bits=8, a_bits=8) for x in net.layers), net.input_shape, net.name)


def masked(net: NetSpec, density: float) -> NetSpec:
    """The attention maps of every block kept at ``density`` (a static mask); a map that is already
    masked (`gpt`'s causal triangle) keeps ``density`` of what its mask keeps, row by row."""
    out = []
    for x in net.layers:
        if x.op in ("matmul", "softmax"):
            d = x.density * density
            x = x.with_(density=d, density_std=min(x.density_std * density, math.sqrt(d * (1.0 - d))))
        out.append(x)
    return NetSpec(tuple(out), net.input_shape, net.name)


def token_pruned(space: ViTSpace, choice: Choice, keep: float) -> NetSpec:
    """``choice`` of ``vit`` with tokens pruned after each block (the first `TOKEN_EXEMPT` exempt) down
    to ``keep`` of them after the last, each block running on the tokens the block before it left
    (`hwsearch.compress.tokens`' schedule)."""
    plan = space.plan(choice)
    net = space.to_netspec(choice)
    counts = token_counts(token_schedule(len(plan.blocks), keep, exempt=TOKEN_EXEMPT), plan.tokens)
    before = [plan.tokens, *counts[:-1]]
    out = [x for x in net.layers if not x.name.startswith(("blocks.", "norm"))][:2]
    for j, (b, t) in enumerate(zip(plan.blocks, before, strict=True)):
        out += b.layers(f"blocks.{j}", 1, t)
    out += [x.with_(m=counts[-1]) if x.name == "norm" else x for x in net.layers if x.name in ("norm", "pool", "head")]
    return NetSpec(tuple(out), net.input_shape, net.name)


def vector_pruned(net: NetSpec, density: float, tiles: bool = True) -> NetSpec:
    """The block matrices of ``gpt`` kept at ``density``, in vectors (or fine-grained)."""
    out = []
    for x in net.layers:
        tile = next((t for suffix, t in GPT_TILES.items() if x.name.endswith(suffix)), None)
        if tile is not None and density < 1.0:
            x = x.with_(density=density, tile=tile if tiles else None)
        out.append(x)
    return NetSpec(tuple(out), net.input_shape, net.name)


def shares(net: NetSpec, accel: Accelerator) -> tuple[float, float, float, float]:
    """(latency in us, energy in uJ, share of time in attention, share in linear layers)."""
    nc = network_cost(net, accel)
    total = nc.latency_s
    attn = sum(c.latency_s for c, x in zip(nc.layers, net.layers, strict=True) if x.op in ("matmul", "softmax"))
    lin = sum(c.latency_s for c, x in zip(nc.layers, net.layers, strict=True) if x.op == "linear")
    return total * 1e6, nc.energy_pj * 1e-6, attn / total, lin / total


def table(rows: list[tuple[str, str, NetSpec]], declaring: Accelerator, plain: Accelerator) -> list[str]:
    """Markdown rows: each network on both presets, speed-ups over its dense row on the same preset."""
    lines = [f"| network | pruning | {declaring.name}: latency (us) | energy (uJ) | speed-up | attention / linear "
             f"share | {plain.name}: latency (us) | energy (uJ) | speed-up | attention / linear share |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    dense: dict[tuple[str, str], float] = {}
    for name, label, net in rows:
        cells = [name, label]
        for accel in (declaring, plain):
            lat, energy, attn, lin = shares(net, accel)
            base = dense.setdefault((name, accel.name), lat)
            cells += [f"{lat:,.1f}", f"{energy:,.2f}", f"{base / lat:.2f}x", f"{attn:.0%} / {lin:.0%}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    """Price every network on both presets and write the BENCHMARKS.md section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true", help="print the section instead of writing it")
    args = parser.parse_args()
    presets = [Accelerator.preset(DECLARING), Accelerator.preset(PLAIN)]

    vit = spaces.get("vit", profile="cifar10")
    vit_rows = []
    for ref in vit.references():
        choice = vit.reference(ref)
        net = at_8_bits(vit.to_netspec(choice))
        for d in ATTENTION_DENSITIES:
            vit_rows.append((f"vit {ref}", "dense" if d == 1.0 else f"attention {d:g}", masked(net, d)))
        tokens = at_8_bits(token_pruned(vit, choice, TOKEN_KEEP))
        vit_rows.append((f"vit {ref}", f"tokens {TOKEN_KEEP:g}", tokens))
        vit_rows.append((f"vit {ref}", f"tokens {TOKEN_KEEP:g} + attention 0.3", masked(tokens, 0.3)))
    gpt = spaces.get("gpt")
    net = at_8_bits(gpt.to_netspec(gpt.reference("middle")))
    gpt_rows = [("gpt middle", "dense" if d == 1.0 else f"vectors {d:g}", vector_pruned(net, d))
                for d in VECTOR_DENSITIES]
    gpt_rows += [("gpt middle", f"fine-grained {d:g}", vector_pruned(net, d, tiles=False))
                 for d in VECTOR_DENSITIES[1:]]
    gpt_rows += [("gpt middle", f"vectors {d:g} + attention 0.5", masked(vector_pruned(net, d), 0.5))
                 for d in VECTOR_DENSITIES[1:]]

    declaring = presets[0]
    by_label = {(name, label): net for name, label, net in vit_rows}
    combined = "; ".join(
        f"{name.split()[1]} {shares(by_label[name, 'attention 0.3'], declaring)[0] / shares(net, declaring)[0]:.2f}x"
        for (name, label), net in by_label.items() if label.startswith("tokens") and "attention" in label)
    tiles = ", ".join(f"{k} {r}x{c}" for k, (r, c) in GPT_TILES.items())
    accel = presets[0]
    body = "\n".join([
        "### Attention-aware costs: masked attention and vector-pruned linears, with and without hardware support",
        "",
        f"Model costs (no training) on `{DECLARING}` (declares sparse attention and vector sparsity: "
        f"vectors of {accel.vector_length} weights along rows or columns) and `{PLAIN}` (the same array, "
        "neither declared). Every layer at 8-bit weights and activations; masks are even. Speed-up is over "
        "the dense row of the same network on the same preset. Attention share: time in the QK^T, softmax "
        "and AV layers; linear share: time in the linear layers.",
        "",
        "**ViT (`vit`, `profile: cifar10` references): static attention mask at each density; token pruning "
        f"(`hwsearch.compress` schedule: {TOKEN_KEEP:g} of the tokens left after the last block, the first "
        f"{TOKEN_EXEMPT} exempt since these networks have 2 to 5 blocks); both.**",
        "",
        *table(vit_rows, *presets),
        "",
        f"Token pruning with the 0.3 mask over the 0.3 mask alone, on `{DECLARING}`: {combined} (Heo, Rho "
        "and Chung report 1.31x end to end on DeiT, 12 blocks, on a cycle-level simulator). The "
        "time neither in attention nor in linear layers is the norms, activations and adds on the vector unit.",
        "",
        f"**GPT (`gpt` middle reference), block matrices pruned in vectors ({tiles}), fine-grained at the "
        "same densities, and vectors with an attention mask that keeps half of each row's causal keys.** "
        "Every `gpt` row already carries the causal mask: QK^T, softmax and AV at the lower triangle's "
        "density, which only the declaring preset skips.",
        "",
        *table(gpt_rows, *presets),
        "",
        "Hardware without declared support prices every masked or pruned layer dense, so its rows do not "
        "move. Skipping hardware pays the mask's bitmap (one bit per map position, read by each masked "
        "layer), the vectors' index (one bit per hardware vector) and a floor on how fast it steps "
        "through skipped positions; fine-grained pruning gains nothing on it, since its vectors skip whole "
        "vectors only. On the ViT the linear layers keep their time whatever the mask, so the end-to-end "
        "speed-up of sparse attention stays bounded by the attention share of the dense network; token "
        "pruning, which shortens every layer after the blocks it prunes, cuts the linear time too, on either "
        "preset (the smallest reference, 2 blocks, prunes only after its last block, so it gains little).",
    ])
    command = "python -m benchmarks.attention_costs"
    if args.no_write:
        print(body)
    else:
        write_section(SECTION, body, command)
        print(body)


if __name__ == "__main__":
    main()
