"""Supernet vs from-scratch gap of schedule variants, over several supernet seeds.

One supernet seed moves the mean gap of 20 random sub-networks by about 0.3 points, as much as many
schedule changes do; this compares variants over several seeds before any becomes a default. For
each variant (schedule fields over the ``--schedule`` preset) and supernet seed it trains (or loads
from the cache) the supernet and reports, for the largest, the smallest and the mean of ``--random``
random sub-networks, the test accuracy gap to the same architectures trained from scratch
(`benchmarks.ofa_supernet`'s from-scratch column and cache: the preset's recipe and epochs, whatever
the variant changes), and the random ones' accuracy on the training images (an underfitting
supernet stays well below 100% there).

    .venv/bin/python -m benchmarks.ofa_supernet_gap --space vit --schedule default \\
        --variants '{}' '{"sandwich": 2}' --supernet-seeds 0 1 2 [--threads 1] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import sys

import torch

from benchmarks.ofa_supernet import compared_archs, scratch_accuracy, supernet_epochs
from hwsearch.spaces.supernet import COMPACT, load_or_train, schedule, subnet_accuracy

SECTION = "ofa_supernet_gap"


def measure(space_name: str, preset: str, variant: dict, seed: int, random: int, threads: int) -> dict:
    """Gaps (points) and training-image accuracy of one supernet."""
    torch.set_num_threads(threads)
    plan = schedule({"preset": preset, **variant}, space_name)
    cached = load_or_train(space_name, "digits", plan, seed, space_kwargs=COMPACT[space_name])
    sn, space, data = cached.supernet, cached.space, cached.data
    # The scratch column's architectures and seed: those of benchmarks.ofa_supernet.
    base = schedule(preset, space_name)
    epochs = supernet_epochs(cached, base)
    archs = [choice for _, choice in compared_archs(space, random)]
    gaps = [100 * (subnet_accuracy(sn, data, c, "test") - scratch_accuracy(cached, base, c, epochs, threads))
            for c in archs]
    train = [subnet_accuracy(sn, data, c, "train") for c in archs[2:]]
    row = {"variant": variant, "seed": seed, "train_s": cached.log.seconds, "largest": gaps[0], "smallest": gaps[1],
           "random": statistics.mean(gaps[2:]), "random_train_acc": statistics.mean(train)}
    print(f"[{space_name}] {json.dumps(row)}", flush=True)
    return row


def markdown(space_name: str, preset: str, rows: list[dict], random: int) -> str:
    """The table of one space."""
    out = [f"### {space_name}: variants of schedule `{preset}` (gap in points, supernet test acc - from scratch)", "",
           f"| variant | supernet seed | training s | largest | smallest | mean of {random} random | "
           "random: acc on training images |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    variants: list[str] = []
    for r in rows:
        v = json.dumps(r["variant"]) if r["variant"] else "preset"
        variants += [] if v in variants else [v]
        out.append(f"| {v} | {r['seed']} | {r['train_s']:.0f} | {r['largest']:+.2f} | {r['smallest']:+.2f} | "
                   f"{r['random']:+.2f} | {r['random_train_acc']:.4f} |")
    for v in variants:
        own = [r for r in rows if (json.dumps(r["variant"]) if r["variant"] else "preset") == v]
        out.append(f"| **{v}: mean of {len(own)} seeds** | | | {statistics.mean(r['largest'] for r in own):+.2f} | "
                   f"{statistics.mean(r['smallest'] for r in own):+.2f} | "
                   f"**{statistics.mean(r['random'] for r in own):+.2f}** | "
                   f"{statistics.mean(r['random_train_acc'] for r in own):.4f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="vit", choices=sorted(COMPACT))
    ap.add_argument("--schedule", default="default")
    ap.add_argument("--variants", nargs="+", default=["{}"], help="JSON objects of schedule fields")
    ap.add_argument("--supernet-seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--random", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    try:
        variants = [json.loads(v) for v in args.variants]
    except json.JSONDecodeError as e:
        ap.error(f"--variants: each must be a JSON object of schedule fields ({e})")
    rows = [measure(args.space, args.schedule, v, s, args.random, args.threads)
            for v in variants for s in args.supernet_seeds]
    body = ("## Once-for-All supernet: schedule variants over supernet seeds (issue 7)\n\n"
            + markdown(args.space, args.schedule, rows, args.random))
    print(body)
    if not args.no_write:
        from benchmarks.report import write_section

        write_section(f"{SECTION}_{args.space}", body, "python -m benchmarks.ofa_supernet_gap " + shlex.join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
