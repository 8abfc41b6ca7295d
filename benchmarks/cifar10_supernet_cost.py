"""How long would the `cifar10-cpu` supernet schedule take? Per-step cost of each phase, extrapolated.

Runs progressive shrinking of the cifar10-profile supernet (``ofa-mbv3`` and ``vit``) with the
`cifar10-cpu` schedule capped at a few steps per epoch on the CIFAR-10 training subset, measures the
process CPU time of each phase (on a shared machine wall time says more about the neighbours than
about the work) and extrapolates to the uncapped schedule: steps per epoch x epochs x CPU seconds
per step. Writes one section per space into BENCHMARKS.md.

    .venv/bin/python benchmarks/cifar10_supernet_cost.py [--spaces ofa-mbv3 vit] [--train-subset 10000]
        [--steps 3] [--threads 1] [--data ../shared/datasets/cifar10/cifar10-jpeg.tar.gz] [--no-write]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from benchmarks.report import ROOT, write_section  # noqa: E402
from hwsearch import spaces  # noqa: E402
from hwsearch.data import load_data  # noqa: E402
from hwsearch.spaces.supernet import SuperNet, schedule, train_supernet  # noqa: E402

SECTION = "cifar10_supernet_cost"
SHARED_COPY = ROOT.parent / "shared" / "datasets" / "cifar10" / "cifar10-jpeg.tar.gz"


def main(argv: list[str] | None = None) -> None:
    """Measure capped phases, extrapolate, write the section."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--spaces", nargs="+", default=["ofa-mbv3", "vit"])
    p.add_argument("--data", default=str(SHARED_COPY))
    p.add_argument("--train-subset", type=int, default=10_000)
    p.add_argument("--steps", type=int, default=3, help="steps per epoch actually run")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    data = load_data(f"cifar10:{args.data}?train_subset={args.train_subset}", seed=0)
    for name in args.spaces:
        full = schedule("cifar10-cpu", name)
        capped = schedule({"preset": "cifar10-cpu", "max_steps_per_epoch": args.steps,
                           "recipe": {"threads": args.threads}}, name)
        steps_per_epoch = math.ceil(len(data.y_train) / full.recipe.batch_size)
        supernet = SuperNet(spaces.get(name, profile="cifar10"))
        cpu: dict[str, float] = {}
        last = [time.process_time()]

        def on_phase(log, cpu=cpu, last=last) -> None:
            now = time.process_time()
            cpu[log.phase] = now - last[0]
            last[0] = now

        train_supernet(supernet, data, capped, seed=0, on_phase=on_phase)
        total, parts = 0.0, []
        for phase, epochs, _ in full.phases():
            if phase not in cpu:  # a phase the space lacks (a ViT has no kernel gene)
                continue
            per_step = cpu[phase] / (epochs * args.steps)
            minutes = per_step * steps_per_epoch * epochs / 60
            total += minutes
            parts.append(f"{phase} {epochs} ep: {per_step:.2f} s/step x {steps_per_epoch * epochs} = {minutes:.0f} min")
        print(name, parts, f"total {total:.0f} min", file=sys.stderr, flush=True)
        body = (
            f"## CIFAR-10: cost of the `cifar10-cpu` supernet schedule for {name} (extrapolated from capped phases)\n\n"
            f"The cifar10 space profile, a stratified training subset of {args.train_subset:,} images, "
            f"{args.threads} torch thread(s), batch {full.recipe.batch_size}, {full.sandwich} random "
            f"sub-network(s) per elastic step. Each phase ran {args.steps} steps per epoch; its process CPU "
            "time per step, times the uncapped steps, gives the minutes below: CPU time, i.e. one otherwise "
            "idle core (the machine was shared; wall time mostly measured the neighbours). Load average "
            f"while measured: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.\n\n"
            "| phase: epochs, CPU s per step x steps = minutes | supernet CPU minutes |\n|---|---|\n"
            f"| {'; '.join(parts)} | **{total:.0f}** |"
        )
        if not args.no_write:
            cmd = "python benchmarks/cifar10_supernet_cost.py " + " ".join(argv if argv is not None else sys.argv[1:])
            write_section(f"{SECTION}:{name}", body, cmd.strip())
        print(body)

if __name__ == "__main__":
    main()
