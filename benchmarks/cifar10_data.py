"""Is CIFAR-10 training limited by data loading? Loader vs training throughput on one CPU thread.

Decodes the shared JPEG copy of CIFAR-10 into an empty cache (first decode + cache write), loads it
again from the cache (arrays only, then with splits and standardisation), then measures on one
thread: the loader (shuffled batches of the 45,000 training images plus crop+flip augmentation) in
images per second, and training steps (forward, backward, SGD) of a small CNN and of the ofa-mbv3
``mbv3-like`` network at 32x32 in images per second. Writes the figures into BENCHMARKS.md.

    .venv/bin/python benchmarks/cifar10_data.py [--path ../shared/datasets/cifar10/cifar10-jpeg.tar.gz]
        [--threads 1] [--batch 128] [--steps 20] [--repeats 3] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script from anywhere

from benchmarks.report import ROOT, write_section  # noqa: E402
from hwsearch import spaces  # noqa: E402
from hwsearch.data import Dataset, batches, load_data  # noqa: E402
from hwsearch.datasets import cifar10  # noqa: E402

SECTION = "cifar10_data"
SHARED_COPY = ROOT.parent / "shared" / "datasets" / "cifar10" / "cifar10-jpeg.tar.gz"


def small_cnn() -> nn.Module:
    """Three conv-BN-ReLU-pool stages (32, 64, 128 channels) and a linear head: a typical small CIFAR CNN."""
    layers: list[nn.Module] = []
    c_in = 3
    for c in (32, 64, 128):
        layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
        c_in = c
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * 4 * 4, 10))


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def loader_rate(data: Dataset, batch: int, seed: int = 0) -> float:
    """Images per second of one epoch of shuffled, augmented training batches."""
    gen = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    n = 0
    for xb, _ in batches(data.x_train, data.y_train, batch, shuffle=True, seed=seed):
        xb = data.augment(xb, gen)
        n += len(xb)
    return n / (time.perf_counter() - start)


def train_rate(model: nn.Module, data: Dataset, batch: int, steps: int) -> float:
    """Images per second of SGD training steps on pre-drawn batches (loading excluded)."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    model.train()
    xs = [data.x_train[i * batch:(i + 1) * batch] for i in range(steps + 2)]
    ys = [data.y_train[i * batch:(i + 1) * batch] for i in range(steps + 2)]
    for xb, yb in zip(xs[:2], ys[:2], strict=True):  # warm-up: allocator and kernel selection
        F.cross_entropy(model(xb), yb).backward()
    start = time.perf_counter()
    for xb, yb in zip(xs[2:], ys[2:], strict=True):
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(xb), yb).backward()
        opt.step()
    return steps * batch / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    """Measure and write the section."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--path", default=str(SHARED_COPY))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=3, help="throughputs are the best of this many runs")
    p.add_argument("--no-write", action="store_true")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load_avg = os.getloadavg()[0]  # other work on the machine changes every figure below
    with tempfile.TemporaryDirectory() as cache:
        os.environ["HWSEARCH_CACHE"] = cache  # an empty cache, so the first load really decodes
        t_decode, _ = timed(lambda: cifar10.load_cifar10(args.path))
        t_cached, _ = timed(lambda: cifar10.load_cifar10(args.path))
        t_dataset, data = timed(lambda: load_data(f"cifar10:{args.path}", seed=0))
        cache_mb = cifar10.cache_path(args.path).stat().st_size / 1e6
    print(f"decode+cache {t_decode:.1f}s, cached arrays {t_cached:.2f}s, cached dataset {t_dataset:.2f}s",
          file=sys.stderr)
    # Best of several: other work on a shared machine only ever slows a run down.
    load = max(loader_rate(data, args.batch, seed) for seed in range(args.repeats))
    print(f"loader {load:.0f} img/s", file=sys.stderr)
    space = spaces.get("ofa-mbv3", in_channels=3, num_classes=10, resolutions=[32])
    models = {"small CNN (3 conv stages, 32-64-128 channels)": small_cnn(),
              "ofa-mbv3 `mbv3-like` at 32x32": space.build(space.reference("mbv3-like"))}
    rows = []
    for name, model in models.items():
        rate = max(train_rate(model, data, args.batch, args.steps) for _ in range(args.repeats))
        print(f"{name}: {rate:.0f} img/s", file=sys.stderr)
        share = 100 * rate / (rate + load)  # loading time per image / (loading + training) per image
        rows.append(f"| {name} | {rate:,.0f} | {share:.1f} |")
    body = (
        "## CIFAR-10 data: decode, cache, loader vs training throughput\n\n"
        f"The shared JPEG copy (`cifar10-jpeg.tar.gz`, 60,000 images; its pixels differ slightly from the "
        f"official archive's). Split: 45,000 train / 5,000 val / 10,000 test. {args.threads} torch thread(s), "
        f"batch {args.batch}. Load times are single runs; throughputs the best of {args.repeats} runs. "
        f"Load average at the start: {load_avg:.1f} on {os.cpu_count()} cores.\n\n"
        "| step | seconds |\n|---|---|\n"
        f"| first load: decode all JPEGs + write the uint8 cache ({cache_mb:.0f} MB) | {t_decode:.1f} |\n"
        f"| cached load: arrays only | {t_cached:.2f} |\n"
        f"| cached load: `load_data(\"cifar10:PATH\")` (split, standardise to float32) | {t_dataset:.2f} |\n\n"
        f"Loader (shuffled batches + pad-4 random crop + flip, one epoch of 45,000 images): "
        f"**{load:,.0f} images/s**.\n\n"
        f"| network trained (forward + backward + SGD, {args.steps} steps) | training images/s | "
        "share of a step spent loading % |\n|---|---|---|\n" + "\n".join(rows)
    )
    if not args.no_write:
        cmd = "python benchmarks/cifar10_data.py " + " ".join(argv if argv is not None else sys.argv[1:])
        write_section(SECTION, body, cmd.strip())
    print(body)


if __name__ == "__main__":
    main()
