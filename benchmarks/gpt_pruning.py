"""Pruning a trained `gpt` on tiny-shakespeare: fine-grained, mixed-length vector, head and block, each fine-tuned alike.

Trains a reference network of the ``gpt`` space on the character windows of tiny-shakespeare, then
prunes the linear layers of its transformer blocks (attention qkv and output projections, both MLP
matrices; the tied embedding/head is left dense, as TF-MVP leaves GPT-2's) at each ratio of weights
removed, four ways:

- ``fine``: magnitude mask per matrix (pattern ``fine``);
- ``vector``: TF-MVP's mixed-length vector pruning (pattern ``vector``): per matrix the direction of
  its fine-grained mask, and the length `hwsearch.compress.tiles.choose_length` picks from 16/8/4/2
  (the longest whose kept weight energy is within ``--tolerance`` of the fine mask's; 2 when none
  is, so that this kind never turns into fine-grained pruning);
- ``head``: structured pruning, heads and MLP hidden units kept at ``1 - ratio`` (``keep`` on the qkv
  and fc1 group leaders); heads are few, so the share really removed is reported beside the target;
- ``block``: ``--block`` x ``--block`` tiles by L2 norm (pattern ``block``).

Each pruned network is fine-tuned with the same recipe (`hwsearch.compress.fine_tune`), and validation
and test loss (nats per character) and perplexity are reported before and after, with the share of
block weights removed read from the compressed NetSpec. The paper's ordering on GPT-2 / Wikitext-2
is fine-grained <= mixed vectors < blocks, head pruning collapsing past about a quarter of weights.

The copy is found as the ``tinyshakespeare`` data source finds it (``$HWSEARCH_DATA``), else at
``../shared/datasets/tinyshakespeare/`` beside the project root. ``--train-windows`` trains on a
subset (a smoke test, or a CPU-sized run).

Each seed trains its own reference and prunes it; the table gives the median over seeds with the
range in brackets. A seed's rows are kept in ``runs/benchmarks/gpt_pruning/`` (keyed by every setting),
with each network's compressed NetSpec, so more seeds can be added later and the hardware columns are
priced when the report is written: a correction to the accelerator model reaches them untrained.

    python -m benchmarks.gpt_pruning [--reference middle] [--epochs 10] [--ft-epochs 2] [--seeds 1 2 3]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics

import torch

from benchmarks.report import ROOT, kept, spread, write_section
from hwsearch import spaces
from hwsearch.compress import (
    LayerPolicy,
    Policy,
    apply_policy,
    compressed_netspec,
    fine_tune,
    prunable_layers,
)
from hwsearch.compress.finetune import fine_tune_recipe
from hwsearch.compress.sparsity import fine_mask
from hwsearch.compress.tiles import choose_length, dominant_direction
from hwsearch.data import load_data
from hwsearch.datasets.tinyshakespeare import TextDataset
from hwsearch.hwmodel import Accelerator, hardware_metrics
from hwsearch.ir import NetSpec
from hwsearch.lm_eval import split_score
from hwsearch.train import Recipe, train_and_evaluate

KINDS = ("fine", "vector", "head", "block")
RATIOS = (0.6, 0.7, 0.8)
LENGTHS = (16, 8, 4, 2)
SHARED_COPY = ROOT.parent / "shared" / "datasets" / "tinyshakespeare"
OUT = ROOT / "runs" / "benchmarks" / "gpt_pruning"
# settings that change what a seed's rows are: the key its rows are kept under
TRAINING = ("reference", "context", "epochs", "ft_epochs", "lr", "ft_lr", "batch_size", "kinds", "ratios", "block",
            "tolerance", "train_windows")


def source(context: int) -> str:
    """The data source string: ``$HWSEARCH_DATA`` when set, else the shared copy beside the project."""
    if os.environ.get("HWSEARCH_DATA") or not SHARED_COPY.is_dir():
        return f"tinyshakespeare?context={context}"
    return f"tinyshakespeare:{SHARED_COPY}?context={context}"


def block_linears(model: torch.nn.Module, shape: tuple[int, int, int]) -> list:
    """The prunable linear layers inside transformer blocks (not the tied embedding/head)."""
    return [layer for layer in prunable_layers(model, shape) if layer.name.startswith("blocks.")]


def policy_for(kind: str, ratio: float, model: torch.nn.Module, layers: list, block: int,
               tolerance: float) -> tuple[Policy, dict]:
    """The policy of one pruning kind at one ratio, and what was chosen per matrix (vector lengths)."""
    density = round(1.0 - ratio, 6)
    chosen: dict[str, str] = {}
    out: dict[str, LayerPolicy] = {}
    for layer in layers:
        if kind == "fine":
            out[layer.name] = LayerPolicy(pattern="fine", density=density)
        elif kind == "block":
            out[layer.name] = LayerPolicy(pattern="block", block=block, density=density)
        elif kind == "vector":
            w = model.get_submodule(layer.name).weight.detach()
            direction = dominant_direction(fine_mask(w, density))
            length = max(min(LENGTHS), choose_length(w, density, LENGTHS, tolerance, direction))
            chosen[layer.name] = f"{length}{direction[0]}"
            out[layer.name] = LayerPolicy(pattern="vector", vector=length, direction=direction, density=density)
        elif kind == "head" and layer.leader and (layer.unit == "heads" or layer.name.endswith("mlp.fc1")):
            out[layer.name] = LayerPolicy(keep=density)
    return Policy(out, round_to=1), chosen


def removed_share(dense, net, names: set[str]) -> float:
    """Share of the block matrices' weights that are gone (pruned to zero or removed structurally)."""
    before = sum(layer.weight_params for layer in dense.layers if layer.name in names)
    after = sum(round(layer.weight_params * layer.weight_density) for layer in net.layers if layer.name in names)
    return 1.0 - after / before


def scores(model: torch.nn.Module, data: TextDataset) -> dict[str, float]:
    """Validation and test loss and perplexity."""
    return {**split_score(model, data, "val").to_dict("val_"), **split_score(model, data, "test").to_dict("test_")}


def priced(net: NetSpec, presets: list[str]) -> dict[str, dict[str, float]]:
    """Latency and energy of ``net`` at 8-bit on each preset (a float network runs at their native width)."""
    layers = tuple(layer.with_(w_bits=8, a_bits=8) if layer.has_weights else layer for layer in net.layers)
    at8 = NetSpec(layers, net.input_shape, net.name).with_inherited_activation_bits()
    return {p: hardware_metrics(at8, Accelerator.preset(p)) for p in presets}


def run(args: argparse.Namespace, seed: int) -> list[dict]:
    """Train the reference, prune it every way at every ratio, fine-tune each; one row per network."""
    data = load_data(source(args.context), seed=seed)
    if args.train_windows:
        data = dataclasses.replace(data, x_train=data.x_train[:args.train_windows],
                                   y_train=data.y_train[:args.train_windows])
    space = spaces.get("gpt", num_classes=data.num_classes, context=args.context)
    choice = space.reference(args.reference)
    shape = space.input_shape(choice)
    torch.manual_seed(seed)
    model = space.build(choice)
    recipe = Recipe(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, label_smoothing=0.0,
                    warmup_epochs=min(1.0, args.epochs / 10), threads=1)
    base = train_and_evaluate(model, data, recipe=recipe, seed=seed)
    model.eval()
    dense = space.to_netspec(choice)
    layers = block_linears(model, shape)
    names = {layer.name for layer in layers}
    rows = [{"kind": "dense", "ratio": 0.0, "removed": 0.0, "train_time_s": base.train_time_s, **scores(model, data),
             "netspec": dense.to_dict()}]
    print(json.dumps(rows[0]), flush=True)
    for kind in args.kinds:
        for ratio in args.ratios:
            policy, chosen = policy_for(kind, ratio, model, layers, args.block, args.tolerance)
            small = apply_policy(model, policy, shape)
            before = scores(small, data)
            ft = fine_tune(small, data, epochs=args.ft_epochs, seed=seed,
                           recipe=fine_tune_recipe(args.ft_epochs, lr=args.ft_lr, batch_size=args.batch_size,
                                                   threads=1))
            small.eval()
            net = compressed_netspec(small, shape)
            row = {"kind": kind, "ratio": ratio, "removed": removed_share(dense, net, names),
                   "before_ft": before, **scores(small, data), "effective_macs": net.effective_macs,
                   "macs": net.macs, "ft_time_s": ft.train_time_s, "vectors": chosen, "netspec": net.to_dict()}
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def render(runs: dict[int, list[dict]], args: argparse.Namespace) -> str:
    """The BENCHMARKS.md section body: per network the median over seeds, the range in brackets."""
    for rows in runs.values():
        for r in rows:
            r["hw"] = priced(NetSpec.from_dict(r["netspec"]), args.presets)
    seeds = sorted(runs)
    first = runs[seeds[0]]

    def over(i: int, get) -> list[float]:
        return [get(runs[s][i]) for s in seeds]

    def hw(i: int, p: str, key: str) -> float:
        return statistics.median(over(i, lambda r: r["hw"][p][key]))

    lines = [
        "## GPT on tiny-shakespeare: fine-grained, mixed-length vector, head and block pruning",
        "",
        f"`gpt` {args.reference} reference, context {args.context}, seeds {', '.join(map(str, seeds))} (median, range "
        f"in brackets); each seed trains its own reference for {args.epochs} epochs, and each pruned network is "
        f"fine-tuned {args.ft_epochs} epochs at lr {args.ft_lr:g}. Loss in nats per character; 'removed' is the share "
        "of the blocks' matrix weights gone, from the compressed NetSpec; latency and energy at 8 bits from the "
        "accelerator model (median over seeds: the vector lengths chosen may differ between seeds).",
        "",
        "| pruning | target | removed | val ppl before fine-tune | val loss | val ppl | test ppl | "
        + " | ".join(f"{p} ms / mJ (x dense)" for p in args.presets) + " |",
        "|---|---|---|---|---|---|---|" + "---|" * len(args.presets),
    ]
    for i, r in enumerate(first):
        pre = "-" if "before_ft" not in r else spread(over(i, lambda x: x["before_ft"]["val_perplexity"]), ".2f")
        cells = " | ".join(f"{hw(i, p, 'latency_ms'):.3f} / {hw(i, p, 'energy_mj'):.4f} "
                           f"({hw(0, p, 'latency_ms') / hw(i, p, 'latency_ms'):.2f}x)" for p in args.presets)
        lines.append(f"| {r['kind']} | {r['ratio']:.1f} | {statistics.median(over(i, lambda x: x['removed'])):.2f} | "
                     f"{pre} | {statistics.median(over(i, lambda x: x['val_loss'])):.3f} | "
                     f"{spread(over(i, lambda x: x['val_perplexity']), '.2f')} | "
                     f"{spread(over(i, lambda x: x['test_perplexity']), '.2f')} | {cells} |")
    lines += ["", "The paper's ordering, fine-grained <= mixed vectors < blocks, held per seed on validation "
              "perplexity at:", ""]
    for ratio in args.ratios:
        ppl = {s: {r["kind"]: r["val_perplexity"] for r in runs[s] if r["ratio"] == ratio} for s in seeds}
        held = [s for s in seeds if {"fine", "vector", "block"} <= set(ppl[s])
                and ppl[s]["fine"] <= ppl[s]["vector"] < ppl[s]["block"]]
        lines.append(f"- {ratio:.1f}: {len(held)} of {len(seeds)} seeds")
    chosen = [f"{r['ratio']:.1f}: " + ", ".join(f"{n} {v}" for n, v in r["vectors"].items())
              for r in first if r["kind"] == "vector"]
    if chosen:
        lines += ["", f"Vector length and direction (r: along rows, c: along columns) per matrix, by ratio, seed "
                  f"{seeds[0]}:", ""]
        lines += [f"- {c}" for c in chosen]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and write (or print) its section."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reference", default="middle")
    p.add_argument("--presets", type=lambda s: s.split(","), default=["edge-systolic", "edge-sparse"],
                   help="accelerator presets to price on: one without and one with vector-sparsity support")
    p.add_argument("--context", type=int, default=64)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--ft-epochs", type=int, default=2)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--ft-lr", type=float, default=3e-4)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--seeds", type=int, nargs="+", default=[1])
    p.add_argument("--kinds", type=lambda s: s.split(","), default=list(KINDS))
    p.add_argument("--ratios", type=lambda s: [float(v) for v in s.split(",")], default=list(RATIOS))
    p.add_argument("--block", type=int, default=8)
    p.add_argument("--tolerance", type=float, default=0.1)
    p.add_argument("--train-windows", type=int, default=0, help="train on the first N windows only (0: all)")
    p.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    setting = json.dumps({k: getattr(args, k) for k in TRAINING}, sort_keys=True)
    runs = {seed: kept(OUT, "rows", json.dumps([setting, seed]), lambda s=seed: run(args, s)) for seed in args.seeds}
    body = render(runs, args)
    if args.no_write:
        print(body)
    else:
        windows = f"--train-windows {args.train_windows} " if args.train_windows else ""
        command = (f"python -m benchmarks.gpt_pruning --reference {args.reference} {windows}--epochs {args.epochs} "
                   f"--ft-epochs {args.ft_epochs} --seeds {' '.join(map(str, args.seeds))} --presets {','.join(args.presets)}")
        write_section("gpt_pruning", body, command)


if __name__ == "__main__":
    main()
