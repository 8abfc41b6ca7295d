"""The spaces' named reference networks at CIFAR-10 shapes, trained from scratch: the hand-designed baselines.

For every named reference of ``ofa-mbv3`` and ``vit`` under the ``cifar10`` profile, trains the network
from scratch on a stratified training subset of CIFAR-10 with the ``cifar10-cpu`` recipe and writes
test accuracy (official 10,000-image test split), validation accuracy (5,000 held-out training
images), MACs, parameters, training time, and latency / energy on the accelerator presets (the network
at 8-bit weights and activations) into BENCHMARKS.md: one section per space
(``cifar10_references:SPACE``). Results are kept (`benchmarks/cifar10_trained.py`), so references can
train in separate processes (``--references NAME --no-write``) and a last run without ``--references``
writes the table from what they left. The defaults are sized so that the table fits in about 40
minutes of a shared two-core machine.

    .venv/bin/python benchmarks/cifar10_references.py [--spaces ofa-mbv3 vit] [--train-subset 5000]
        [--epochs 2] [--seeds 0] [--references largest ...] [--threads 1] [--no-write]
        [--data ../shared/datasets/cifar10/cifar10-jpeg.tar.gz]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from benchmarks.cifar10_trained import train_once  # noqa: E402
from benchmarks.report import ROOT, write_section  # noqa: E402
from hwsearch import spaces  # noqa: E402
from hwsearch.data import load_data  # noqa: E402
from hwsearch.hwmodel import Accelerator, hardware_metrics  # noqa: E402
from hwsearch.ir import NetSpec  # noqa: E402
from hwsearch.spaces.profiles import PROFILES  # noqa: E402
from hwsearch.train import RECIPES  # noqa: E402

SECTION = "cifar10_references"
SHARED_COPY = ROOT.parent / "shared" / "datasets" / "cifar10" / "cifar10-jpeg.tar.gz"
PRESETS = ("eyeriss", "nvdla-small", "edge-systolic", "bitfusion")


def at_8_bits(net: NetSpec) -> NetSpec:
    """``net`` with every layer at 8-bit weights and activations, the presets' native width."""
    return dataclasses.replace(net, layers=tuple(layer.with_(w_bits=8, a_bits=8) for layer in net.layers))


def main(argv: list[str] | None = None) -> None:
    """Train every reference and write one section per space."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spaces", nargs="+", default=["ofa-mbv3", "vit"])
    p.add_argument("--data", default=str(SHARED_COPY))
    p.add_argument("--train-subset", type=int, default=5_000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--references", nargs="+", default=None, help="only these references (default: all)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    load_avg = os.getloadavg()[0]  # other work on the machine slows every time below
    source = f"cifar10:{args.data}?train_subset={args.train_subset}"
    data = load_data(source, seed=0)
    recipe = RECIPES["cifar10-cpu"].model_copy(update={"epochs": args.epochs, "threads": args.threads})
    accels = {name: Accelerator.preset(name) for name in PRESETS}
    for name in args.spaces:
        options = dict(PROFILES["cifar10"][name])
        space = spaces.get(name, **options)
        rows = []
        # Cheapest first, so that a run cut short still has most of its rows.
        refs = [r for r in space.references() if args.references is None or r in args.references]
        for ref in sorted(refs, key=lambda r: space.to_netspec(space.reference(r)).macs):
            choice = space.reference(ref)
            net = space.to_netspec(choice)
            runs = [train_once(name, options, choice, data, source, recipe, s) for s in args.seeds]
            hw = {a: hardware_metrics(at_8_bits(net), acc) for a, acc in accels.items()}
            row = {"space": name, "reference": ref, "resolution": space.input_shape(choice)[1], "macs": net.macs,
                   "params": net.params, "test_acc": [r["test_acc"] for r in runs],
                   "val_acc": [r["val_acc"] for r in runs], "train_s": statistics.median(r["cpu_s"] for r in runs),
                   "hw": {a: {"latency_ms": m["latency_ms"], "energy_mj": m["energy_mj"]} for a, m in hw.items()}}
            print(json.dumps(row), file=sys.stderr, flush=True)
            rows.append(row)
        hw_cols = " | ".join(f"{a} ms / mJ" for a in PRESETS)
        table = "\n".join(
            f"| `{r['reference']}` | {r['resolution']} | {r['macs'] / 1e6:.1f} | {r['params'] / 1e6:.3f} | "
            f"{100 * statistics.median(r['test_acc']):.1f} | {100 * statistics.median(r['val_acc']):.1f} | "
            f"{r['train_s'] / 60:.1f} | "
            + " | ".join(f"{r['hw'][a]['latency_ms']:.3f} / {r['hw'][a]['energy_mj']:.3f}" for a in PRESETS) + " |"
            for r in rows)
        seeds = ", ".join(map(str, args.seeds))
        body = (
            f"## CIFAR-10: {name} references (`profile: cifar10`) trained from scratch\n\n"
            f"Options: {json.dumps(PROFILES['cifar10'][name])}. The shared JPEG copy of "
            f"CIFAR-10; a stratified training subset of {args.train_subset:,} images (data seed 0), "
            f"{args.epochs} epochs of the `cifar10-cpu` recipe (AdamW, batch {recipe.batch_size}, peak lr "
            f"{recipe.lr:g}, cosine, pad-4 crop + flip), {len(args.seeds)} seed(s) ({seeds}; accuracies are "
            f"the median), {args.threads} torch thread(s). Test: the official 10,000-image test split; "
            "val: the 5,000 held-out training images. **A few epochs on a fifth of the training split: "
            "these accuracies are far below published CIFAR-10 figures (90%+ for MobileNet-class "
            "networks trained for hundreds of epochs) and only compare the references with each "
            "other.** Training time is process CPU time (what one otherwise idle core would take; the "
            "machine was shared, so wall times mostly measured the neighbours) and includes a validation "
            f"pass per epoch; load average at the start {load_avg:.1f} on {os.cpu_count()} cores. Latency / energy: the accelerator model's presets, every layer at 8-bit "
            "weights and activations, batch 1.\n\n"
            f"| reference | input | MMACs | M params | test % | val % | train CPU min | {hw_cols} |\n"
            "|---|---|---|---|---|---|---|" + "---|" * len(PRESETS) + "\n" + table
        )
        if not args.no_write:
            cmd = "python benchmarks/cifar10_references.py " + " ".join(argv if argv is not None else sys.argv[1:])
            write_section(f"{SECTION}:{name}", body, cmd.strip())
        print(body)


if __name__ == "__main__":
    main()
