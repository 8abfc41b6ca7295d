"""Does the default training recipe reach >= 90% test accuracy on digits at 32x32, and how fast?

Trains reference networks of the ``ofa-mbv3`` and ``vit`` spaces with `hwsearch.train.Recipe`
(defaults, or the epochs/lr given) on digits resized to 32x32, over several seeds, and writes the
median test accuracy and training time to BENCHMARKS.md.

    python -m benchmarks.train_recipe [--seeds 3] [--epochs N] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

from benchmarks.report import write_section
from hwsearch import spaces
from hwsearch.data import load_data
from hwsearch.train import Recipe, train_and_evaluate

CASES = [("ofa-mbv3", "mbv3-like", {"resolutions": [32]}), ("vit", "middle", {"resolution": 32})]


def main(argv: list[str] | None = None) -> None:
    """Run the cases and write the section."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    p.add_argument("--lr", type=float, default=None, help="default: the recipe's")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cases", default="ofa-mbv3,vit")
    args = p.parse_args(argv)
    data = load_data("digits", seed=0)
    updates = {"threads": args.threads}
    if args.lr:
        updates["lr"] = args.lr
    recipe = Recipe(**updates)
    epochs = args.epochs if args.epochs is not None else recipe.epochs
    rows = []
    for space_name, ref, options in CASES:
        if space_name not in args.cases.split(","):
            continue
        space = spaces.get(space_name, in_channels=1, num_classes=10, **options)
        choice = space.reference(ref)
        net = space.to_netspec(choice)
        accs, times = [], []
        for seed in range(args.seeds):
            torch.manual_seed(seed)
            model = space.build(choice)
            r = train_and_evaluate(model, data, epochs=epochs, seed=seed, recipe=recipe,
                                   resolution=space.input_shape(choice)[1])
            accs.append(r.test_acc)
            times.append(r.train_time_s)
            print(f"{space_name}/{ref} seed {seed}: test {r.test_acc:.4f} val {r.val_acc:.4f} "
                  f"in {r.train_time_s:.1f}s", file=sys.stderr)
        rows.append(f"| {space_name} `{ref}` | {net.macs / 1e6:.2f} | {net.params / 1e3:.0f} | "
                    f"{100 * statistics.median(accs):.1f} ({100 * min(accs):.1f}-{100 * max(accs):.1f}) | "
                    f"{statistics.median(times):.0f} |")
    body = (
        "## Training recipe on digits at 32x32\n\n"
        f"Default `Recipe` (AdamW, lr {recipe.lr:g}, cosine with {recipe.warmup_epochs:g} warm-up epoch, "
        f"label smoothing {recipe.label_smoothing:g}, random shifts of {recipe.augment_shift:g}), {epochs} epochs, "
        f"batch {recipe.batch_size}, {args.threads} CPU threads; median over {args.seeds} seeds (min-max). "
        "Split: 1,167 train / 270 val / 360 test images.\n\n"
        "| network | MMACs | kparams | test top-1 % | train time s |\n|---|---|---|---|---|\n" + "\n".join(rows)
    )
    cmd = "python -m benchmarks.train_recipe " + " ".join(argv if argv is not None else sys.argv[1:])
    write_section("train_recipe", body, cmd.strip())
    print(body)


if __name__ == "__main__":
    main()
