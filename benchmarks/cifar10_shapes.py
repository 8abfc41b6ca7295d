"""Which ofa-mbv3 stride plan suits 32x32 CIFAR-10 images? The `mbv3-like` reference under each plan.

The space's default strides are ImageNet's (a stride-2 stem, then 2/2/2/1/2: a total stride of 32,
so a 32x32 image reaches the last stage at 1x1). CIFAR ports of MobileNets keep more resolution.
For each candidate plan this trains the ``mbv3-like`` reference at 32x32 from scratch on a stratified
training subset with the CPU recipe and writes test / validation accuracy, MACs, parameters and the
CPU time per epoch (one torch thread) into BENCHMARKS.md.

    .venv/bin/python benchmarks/cifar10_shapes.py [--data ../shared/datasets/cifar10/cifar10-jpeg.tar.gz]
        [--train-subset 5000] [--epochs 2] [--threads 1] [--plans A C E] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from benchmarks.cifar10_trained import train_once  # noqa: E402
from benchmarks.report import ROOT, write_section  # noqa: E402
from hwsearch import spaces  # noqa: E402
from hwsearch.data import load_data  # noqa: E402
from hwsearch.spaces.profiles import PROFILES  # noqa: E402
from hwsearch.train import RECIPES  # noqa: E402

SECTION = "cifar10_shapes"
SHARED_COPY = ROOT.parent / "shared" / "datasets" / "cifar10" / "cifar10-jpeg.tar.gz"
# Candidate plans: (stem stride, stage strides, what it is).
PLANS: dict[str, tuple[int, tuple[int, ...], str]] = {
    "A": (2, (2, 2, 2, 1, 2), "ImageNet's (the space's default): total stride 32"),
    "B": (1, (2, 2, 2, 1, 2), "stride-1 stem: total stride 16"),
    "C": (2, (1, 2, 2, 1, 2), "stride-1 first stage: total stride 16"),
    "E": (2, (1, 2, 2, 1, 1), "stride-1 first and last stage: total stride 8"),
}


def last_map(space: spaces.SearchSpace, choice: dict) -> int:
    """Side of the feature map the last stage produces."""
    net = space.to_netspec(choice)
    return next(layer.in_h for layer in net.layers if layer.name == "pool")


def mbv3_like_macs(plan: str) -> int:
    """MACs of the ``mbv3-like`` reference at 32x32 under ``plan``."""
    stem, strides, _ = PLANS[plan]
    space = spaces.get("ofa-mbv3", stem_stride=stem, strides=strides)
    return space.to_netspec(space.reference("mbv3-like")).macs


def main(argv: list[str] | None = None) -> None:
    """Train the reference under each plan and write the section."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(SHARED_COPY))
    p.add_argument("--train-subset", type=int, default=5_000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plans", nargs="+", default=["A", "C", "E"], help=f"of {', '.join(PLANS)}")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    load_avg = os.getloadavg()[0]  # other work on the machine slows every time below
    source = f"cifar10:{args.data}?train_subset={args.train_subset}"
    data = load_data(source, seed=0)
    recipe = RECIPES["cifar10-cpu"].model_copy(update={"epochs": args.epochs, "threads": args.threads})
    rows = []
    for key in args.plans:
        stem, strides, what = PLANS[key]
        options = {"stem_stride": stem, "strides": list(strides)}
        space = spaces.get("ofa-mbv3", **options)
        choice = space.reference("mbv3-like")
        net = space.to_netspec(choice)
        result = train_once("ofa-mbv3", options, choice, data, source, recipe, args.seed)
        if options == {k: PROFILES["cifar10"]["ofa-mbv3"].get(k) for k in options}:
            what += " (*profile*)"
        row = {"plan": key, "stem_stride": stem, "strides": list(strides), "what": what,
               "last_map": last_map(space, choice), "macs": net.macs, "params": net.params,
               "test_acc": result["test_acc"], "val_acc": result["val_acc"],
               "epoch_s": result["cpu_s"] / max(1, args.epochs)}
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
    table = "\n".join(
        f"| {r['plan']} | {r['stem_stride']} | {'/'.join(map(str, r['strides']))} | {r['what']} | "
        f"{r['last_map']}x{r['last_map']} | {r['macs'] / 1e6:.1f} | {r['params'] / 1e6:.2f} | "
        f"{100 * r['test_acc']:.1f} | {100 * r['val_acc']:.1f} | {r['epoch_s']:.0f} |" for r in rows)
    skipped = [f"{k} ({PLANS[k][2]}, {mbv3_like_macs(k) / 1e6:.1f} MMACs)" for k in PLANS if k not in args.plans]
    if skipped:
        table += "\n\nDefined in the script but not trained in this run: " + "; ".join(skipped) + "."
    body = (
        "## CIFAR-10: ofa-mbv3 stride plans at 32x32 (`mbv3-like` reference, trained from scratch)\n\n"
        f"The shared JPEG copy of CIFAR-10; a stratified training subset of {args.train_subset:,} images "
        f"(data seed 0), {args.epochs} epochs of the `cifar10-cpu` recipe (AdamW, batch "
        f"{recipe.batch_size}, peak lr {recipe.lr:g}, cosine, crop+flip), seed {args.seed}, one run each, "
        f"{args.threads} torch thread(s); test accuracy on the official 10,000-image test split, "
        "validation on the 5,000 held-out images. A few epochs on a subset: far below published "
        "CIFAR-10 figures, and only the ranking is meant. Time per epoch is process CPU time (what one "
        "otherwise idle core would take; the machine was shared, so wall times mostly measured the "
        "neighbours) and includes the validation pass. The plan marked *profile* is the cifar10 profile's: its "
        "network is the `mbv3-like` row of the ofa-mbv3 reference table (one training, kept by "
        "`benchmarks/cifar10_trained.py`). "
        f"Load average at the start: {load_avg:.1f} on {os.cpu_count()} cores.\n\n"
        "| plan | stem stride | stage strides | | last stage map | MMACs | M params | test % | val % | CPU s / epoch |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n" + table
    )
    if not args.no_write:
        cmd = "python benchmarks/cifar10_shapes.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_section(SECTION, body, cmd.strip())
    print(body)


if __name__ == "__main__":
    main()
