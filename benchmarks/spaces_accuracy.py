"""Accuracy of networks sampled from the `ofa-mbv3` and `vit` spaces, trained with the default recipe.

For every space and seed, samples a choice with ``numpy.random.default_rng(seed)`` (the choice
`hwsearch spaces sample NAME --seed SEED` prints, with the data set's channels and classes), trains it
from scratch on digits with `hwsearch.train.Recipe()` and writes test accuracy, train time, MACs and
parameters per network, and the median, into BENCHMARKS.md: one section per space
(``spaces_accuracy:SPACE``), so the spaces can be measured by separate, concurrent invocations.

    .venv/bin/python benchmarks/spaces_accuracy.py [--seeds 0 1 2] [--spaces ofa-mbv3 vit] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from benchmarks.report import write_section  # noqa: E402
from hwsearch import spaces  # noqa: E402
from hwsearch.data import load_data  # noqa: E402
from hwsearch.train import Recipe, train_and_evaluate  # noqa: E402

SECTION = "spaces_accuracy"


def run(space_names: list[str], seeds: list[int], source: str, threads: int) -> list[dict]:
    """Train one sampled network per (space, seed); one row of figures each."""
    data = load_data(source, seed=0)
    recipe = Recipe(threads=threads)
    rows = []
    for name in space_names:
        space = spaces.get(name, in_channels=data.channels, num_classes=data.num_classes)
        for seed in seeds:
            choice = space.sample(np.random.default_rng(seed))
            net = space.to_netspec(choice)
            model = space.build(choice)
            start = time.perf_counter()
            result = train_and_evaluate(model, data, seed=seed, recipe=recipe,
                                        resolution=space.input_shape(choice)[1])
            rows.append({
                "space": name, "seed": seed, "resolution": result.resolution, "macs": net.macs,
                "params": net.params, "test_acc": result.test_acc, "val_acc": result.val_acc,
                "train_time_s": result.train_time_s, "wall_s": time.perf_counter() - start,
                "epochs": result.epochs, "threads": result.threads, "choice": choice,
            })
            print(json.dumps({k: v for k, v in rows[-1].items() if k != "choice"}), flush=True)
    return rows


def markdown(rows: list[dict], source: str) -> str:
    """A BENCHMARKS.md section: one line per network, then the median per space."""
    recipe = Recipe()
    names = ", ".join(dict.fromkeys(r["space"] for r in rows))
    lines = [
        f"## Sampled networks of the {names} space, trained from scratch",
        "",
        f"Data: `{source}` (test split: 20% of 1,797 images, upscaled to the choice's resolution). Recipe: "
        f"the default `Recipe()` ({recipe.epochs} epochs, {recipe.optimizer}, lr {recipe.lr}, batch "
        f"{recipe.batch_size}, cosine, label smoothing {recipe.label_smoothing}, shift augmentation "
        f"{recipe.augment_shift}). A network is the choice `hwsearch spaces sample SPACE --seed SEED` "
        "prints (with the data's 1 channel and 10 classes). Train time is wall-clock on this machine, "
        f"{rows[0]['threads'] if rows else '?'} torch threads, shared with other work.",
        "",
        "| space | seed | resolution | MACs | params | test acc | val acc | train time (s) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(f"| {r['space']} | {r['seed']} | {r['resolution']} | {r['macs'] / 1e6:.2f}M | "
                     f"{r['params'] / 1e3:.1f}k | {r['test_acc']:.3f} | {r['val_acc']:.3f} | "
                     f"{r['train_time_s']:.1f} |")
    lines += ["", "| space | networks | median test acc | min test acc | median train time (s) |",
              "|---|---:|---:|---:|---:|"]
    for name in dict.fromkeys(r["space"] for r in rows):
        mine = [r for r in rows if r["space"] == name]
        accs = [r["test_acc"] for r in mine]
        lines.append(f"| {name} | {len(mine)} | {statistics.median(accs):.3f} | {min(accs):.3f} | "
                     f"{statistics.median(r['train_time_s'] for r in mine):.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse arguments, train, print and (unless ``--no-write``) update BENCHMARKS.md."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spaces", nargs="+", default=["ofa-mbv3", "vit"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--data", default="digits")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    for name in args.spaces:
        rows = run([name], args.seeds, args.data, args.threads)
        body = markdown(rows, args.data)
        print(body)
        if not args.no_write:
            write_section(f"{SECTION}:{name}", body,
                          "python benchmarks/spaces_accuracy.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
