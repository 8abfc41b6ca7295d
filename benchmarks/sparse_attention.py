"""Static sparse attention with and without token pruning on `vit` (CIFAR-10): accuracy and modelled latency.

Reproduces the set-up of Heo, Rho and Chung (Hanyang University) at this project's scale: a `vit`
reference under the ``cifar10`` profile is trained from scratch, then compressed every way below and
each compressed network fine-tuned with the same recipe (`hwsearch.compress.fine_tune`, distilling
from the dense network):

- ``sparse``: every block's attention map under a static mask (`hwsearch.compress.attention_mask`:
  the map averaged over ``--calib`` training images, the largest entries of each query row kept at
  the one threshold that removes the given share) at each sparsity of ``--sparsities``;
- ``sparse+tokens``: the same, plus token pruning (importance = attention received; the first
  ``--exempt`` blocks keep every token -- by default a quarter of them, as the paper exempts 3 of
  DeiT's 12 -- then a geometric schedule down to ``--token-keep``, as `hwsearch.compress.token_schedule`
  builds it);
- ``tokens``: token pruning alone, and ``dense``, for reference.

Reports test accuracy before and after fine-tuning, and end-to-end latency and energy at 8-bit on
the accelerator presets of ``--presets`` (`hwsearch.hwmodel`), which price a layer's ``density`` on
attention products only where the preset declares sparse-attention support. The paper's figures,
for comparison: on ImageNet DeiT-Tiny/Small/Base the pair costs 0.9 / 0.5 / 0.2 points against
sparse attention alone and runs 1.31x faster end to end.

Each seed trains its own reference; the table gives the median over seeds with the range in brackets.
A seed's rows are kept in ``runs/benchmarks/sparse_attention/`` (keyed by every setting) with each
network's compressed NetSpec, so seeds can be added later and latency is priced when the report is
written.

    python -m benchmarks.sparse_attention [--seeds 3 4 5] [--epochs 30] [--ft-epochs 3] [--presets edge-systolic,edge-sparse]
    python -m benchmarks.sparse_attention --source digits --epochs 1 --ft-epochs 1 --no-write   # smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from benchmarks.report import ROOT, kept, spread, write_section  # noqa: E402
from hwsearch import spaces  # noqa: E402
from hwsearch.compress import (  # noqa: E402
    LayerPolicy,
    Policy,
    apply_policy,
    compressed_netspec,
    fine_tune,
    prunable_layers,
    token_schedule,
)
from hwsearch.compress.finetune import fine_tune_recipe  # noqa: E402
from hwsearch.data import load_data  # noqa: E402
from hwsearch.hwmodel import Accelerator, hardware_metrics  # noqa: E402
from hwsearch.ir import NetSpec  # noqa: E402
from hwsearch.spaces.profiles import PROFILES  # noqa: E402
from hwsearch.train import RECIPES, evaluate, train_and_evaluate  # noqa: E402

SECTION = "sparse_attention"
SHARED_COPY = ROOT.parent / "shared" / "datasets" / "cifar10" / "cifar10-jpeg.tar.gz"
SPARSITIES = (0.5, 0.6, 0.7, 0.8)
# The same array without and with sparse-attention support (``edge-sparse`` comes with the
# attention-aware cost model of `hwsearch.hwmodel`; ``--presets`` names others).
PRESETS = ("edge-systolic", "edge-sparse")
OUT = ROOT / "runs" / "benchmarks" / SECTION
# settings that change what a seed's rows are: the key its rows are kept under
TRAINING = ("source", "train_subset", "reference", "epochs", "ft_epochs", "ft_lr", "sparsities", "token_keep", "exempt",
            "calib")


def at_8_bits(net: NetSpec) -> NetSpec:
    """``net`` with every layer at 8-bit weights and activations, the presets' native width."""
    return dataclasses.replace(net, layers=tuple(layer.with_(w_bits=8, a_bits=8) for layer in net.layers))


def variants(qkv: list[str], depth: int, args: argparse.Namespace) -> list[tuple[str, float, Policy]]:
    """(kind, sparsity, policy) of every compressed network the benchmark fine-tunes."""
    # Tokens dropped after the last block save nothing, so at least one block must follow the first drop.
    exempt = max(1, round(depth / 4)) if args.exempt is None else args.exempt
    exempt = max(0, min(exempt, depth - 2))
    tokens = token_schedule(depth, args.token_keep, exempt=exempt)
    out = [("tokens", 0.0, Policy(tokens=tokens))]
    for s in args.sparsities:
        layers = {n: LayerPolicy(attention_density=round(1.0 - s, 6)) for n in qkv}
        out.append(("sparse", s, Policy(layers)))
        out.append(("sparse+tokens", s, Policy(layers, tokens=tokens)))
    return out


def hardware(net: NetSpec, accels: dict[str, Accelerator]) -> dict[str, dict[str, float]]:
    """Latency (ms) and energy (mJ) of ``net`` at 8 bits on every preset."""
    out = {}
    for name, accel in accels.items():
        m = hardware_metrics(at_8_bits(net), accel)
        out[name] = {"latency_ms": m["latency_ms"], "energy_mj": m["energy_mj"]}
    return out


def attention_share(net: NetSpec) -> float:
    """Share of the attention products' MACs the masks keep."""
    products = [x for x in net.layers if x.op == "matmul"]
    dense = sum(x.macs for x in products)
    return sum(x.effective_macs for x in products) / dense if dense else 1.0


def run(args: argparse.Namespace, seed: int) -> dict:
    """Train the reference, compress and fine-tune every variant; one row per network, and the setting."""
    if args.source == "cifar10":
        source = f"cifar10:{args.data}?train_subset={args.train_subset}"
    else:
        source = args.source
    data = load_data(source, seed=0)
    options = {**PROFILES["cifar10"]["vit"], "in_channels": data.channels, "num_classes": data.num_classes}
    space = spaces.get("vit", **options)
    choice = space.reference(args.reference)
    shape = space.input_shape(choice)
    data = data.at_resolution(shape[1])
    recipe = RECIPES["cifar10-cpu"].model_copy(update={"epochs": args.epochs, "threads": args.threads})
    torch.manual_seed(seed)
    model = space.build(choice)
    base = train_and_evaluate(model, data, seed=seed, recipe=recipe)
    model.eval()
    qkv = [x.name for x in prunable_layers(model, shape) if x.unit == "heads" and x.leader]
    dense_net = compressed_netspec(model, shape)
    rows = [{"kind": "dense", "sparsity": 0.0, "before_ft": base.test_acc, "test_acc": base.test_acc,
             "attention_kept": 1.0, "macs": dense_net.macs, "netspec": dense_net.to_dict()}]
    print(json.dumps(rows[0]), flush=True)
    calib = data.x_train[:args.calib]
    ft_recipe = fine_tune_recipe(args.ft_epochs, lr=args.ft_lr, threads=args.threads)
    for kind, sparsity, policy in variants(qkv, len(qkv), args):
        small = apply_policy(model, policy, shape, calib=calib).eval()
        before = evaluate(small, data.x_test, data.y_test)
        ft = fine_tune(small, data, epochs=args.ft_epochs, seed=seed, recipe=ft_recipe, teacher=model)
        small.eval()
        net = compressed_netspec(small, shape)
        row = {"kind": kind, "sparsity": sparsity, "before_ft": before, "test_acc": ft.test_acc,
               "tokens": list(policy.tokens), "attention_kept": attention_share(net), "macs": net.macs,
               "netspec": net.to_dict(), "ft_time_s": ft.train_time_s}
        print(json.dumps(row), flush=True)
        rows.append(row)
    # the data as a reader would name it: where this machine keeps its copy is nobody else's business
    shown = f"cifar10?train_subset={args.train_subset}" if args.source == "cifar10" else source
    setting = {"source": shown, "reference": args.reference, "depth": len(qkv), "tokens": shape[1] // options["patch_size"],
               "schedule": [round(k, 2) for k in rows[1]["tokens"]]}
    return {"rows": rows, "setting": setting}


def render(runs: dict[int, dict], args: argparse.Namespace) -> str:
    """The BENCHMARKS.md section body: per network the median over seeds, the range in brackets."""
    presets = list(args.presets)
    accels = {name: Accelerator.preset(name) for name in presets}
    seeds = sorted(runs)
    setting = runs[seeds[0]]["setting"]
    for out in runs.values():
        for r in out["rows"]:
            r["hw"] = hardware(NetSpec.from_dict(r["netspec"]), accels)
    first = runs[seeds[0]]["rows"]

    def over(i: int, get) -> list[float]:
        return [get(runs[s]["rows"][i]) for s in seeds]

    def alone(rows: list[dict], r: dict) -> dict | None:
        """The row of sparse attention alone at ``r``'s sparsity (None unless ``r`` is a pair)."""
        if r["kind"] != "sparse+tokens":
            return None
        return next(x for x in rows if x["kind"] == "sparse" and x["sparsity"] == r["sparsity"])

    lines = [
        "## Static sparse attention with token pruning (`vit`, CIFAR-10)",
        "",
        f"`vit` {setting['reference']} (`profile: cifar10`, {setting['depth']} blocks, {setting['tokens'] ** 2} tokens), "
        f"{setting['source']}, seeds {', '.join(map(str, seeds))} (median, range in brackets; each seed trains its "
        f"own reference): trained {args.epochs} epochs, each compressed network fine-tuned "
        f"{args.ft_epochs} epochs at lr {args.ft_lr:g} distilling from the dense one. Masks from the attention "
        f"averaged over {args.calib} training images; token schedule {setting['schedule']} (share of tokens left "
        "after each block). Test accuracy in %; latency at 8 bits, whole network, from the accelerator model; "
        "'x vs sparse' is the latency of sparse attention alone at the same sparsity over that of the pair; "
        "'Δ vs sparse alone' is taken per seed.",
        "",
        "| network | sparsity | attention MACs kept | acc before fine-tune | acc | Δ vs sparse alone | "
        + " | ".join(f"{p} ms (x vs sparse)" for p in presets) + " |",
        "|---|---|---|---|---|---|" + "---|" * len(presets),
    ]
    for i, r in enumerate(first):
        pair = alone(first, r) is not None
        delta = spread([100 * (x["test_acc"] - alone(runs[s]["rows"], x)["test_acc"])
                        for s in seeds for x in [runs[s]["rows"][i]]], "+.1f") if pair else "-"
        cells = []
        for p in presets:
            ms = statistics.median(over(i, lambda x, p=p: x["hw"][p]["latency_ms"]))
            ratio = ""
            if pair:
                ratio = f" ({statistics.median(alone(runs[s]['rows'], runs[s]['rows'][i])['hw'][p]['latency_ms'] for s in seeds) / ms:.2f}x)"
            cells.append(f"{ms:.3f}{ratio}")
        lines.append(f"| {r['kind']} | {r['sparsity']:.1f} | {statistics.median(over(i, lambda x: x['attention_kept'])):.2f} | "
                     f"{spread(over(i, lambda x: 100 * x['before_ft']))} | {spread(over(i, lambda x: 100 * x['test_acc']))} | "
                     f"{delta} | " + " | ".join(cells) + " |")
    lines += ["", "The paper (ImageNet, DeiT-Tiny/Small/Base, cycle-level simulator): the pair costs 0.9 / 0.5 / "
              "0.2 points against sparse attention alone and runs 1.31x faster end to end."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and write (or print) its section."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--source", default="cifar10", help="cifar10 (the --data copy) or any data source, e.g. digits")
    p.add_argument("--data", default=str(SHARED_COPY))
    p.add_argument("--train-subset", type=int, default=45_000)
    p.add_argument("--reference", default="largest")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--ft-epochs", type=int, default=3)
    p.add_argument("--ft-lr", type=float, default=1e-3)
    p.add_argument("--seeds", type=int, nargs="+", default=[3])
    p.add_argument("--sparsities", type=lambda s: [float(v) for v in s.split(",")], default=list(SPARSITIES))
    p.add_argument("--token-keep", type=float, default=0.5, help="share of tokens left after the last block")
    p.add_argument("--exempt", type=int, default=None, help="first blocks that keep every token (default: a quarter)")
    p.add_argument("--calib", type=int, default=256)
    p.add_argument("--presets", type=lambda s: s.split(","), default=list(PRESETS),
                   help="accelerator presets, one of them declaring sparse-attention support")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    setting = json.dumps({k: getattr(args, k) for k in TRAINING}, sort_keys=True)
    runs = {seed: kept(OUT, "rows", json.dumps([setting, seed]), lambda s=seed: run(args, s)) for seed in args.seeds}
    body = render(runs, args)
    if args.no_write:
        print(body)
    else:
        subset = f"--train-subset {args.train_subset} " if args.source == "cifar10" else f"--source {args.source} "
        command = (f"python -m benchmarks.sparse_attention {subset}--seeds {' '.join(map(str, args.seeds))} --epochs {args.epochs} "
                   f"--ft-epochs {args.ft_epochs} --presets {','.join(args.presets)}")
        write_section(SECTION, body, command)


if __name__ == "__main__":
    main()
