"""Once-for-All: supernet training time, sub-networks vs from-scratch, predictor, evolution vs random.

For each space (``ofa-mbv3`` and ``vit``; on digits at the `COMPACT` sizes for 8x8 images, on another
data source with the space options of ``--profile``, e.g. ``cifar10``):

1. trains the supernet by progressive shrinking (schedule ``--schedule``; a cached one is reused and its
   recorded training time reported);
2. measures the test accuracy of the largest, the smallest and ``--random`` random sub-networks inside
   the supernet (BatchNorm recalibrated) and of the same architectures trained from scratch with the
   supernet's recipe for as many epochs as the supernet's whole schedule;
3. measures ``--samples`` random sub-networks on the validation split, fits the accuracy predictor on
   all but ``--holdout`` of them and reports RMSE and Kendall tau on the held-out ones (``--measured``
   takes the sub-networks a NAAS run already measured on the same supernet instead);
4. searches, for each seed, the sub-network of best predicted accuracy under a latency limit (the
   Eyeriss model's latency; the limit is the 25th percentile of random sub-networks) with OFA's
   evolution and with random search at the same number of predictor queries, and measures the winners.

    .venv/bin/python -m benchmarks.ofa_supernet [--spaces ofa-mbv3 vit] [--schedule fast] [--random 20]
        [--samples 150] [--holdout 30] [--queries 1000] [--seeds 0 1 2] [--threads 1] [--no-write]
        [--predictor-only] [--data digits] [--profile cifar10] [--measured RUN/naas]

On CIFAR-10 (the shared copy under ``$HWSEARCH_DATA``; the data string is the one
``configs/cifar10-ofa.yaml`` uses, so that config's run reuses the supernet trained here):

    HWSEARCH_DATA=../shared/datasets/cifar10 .venv/bin/python -m benchmarks.ofa_supernet --spaces vit \
        --data 'cifar10?train_subset=5000' --profile cifar10 --schedule cifar10-cpu --samples 200 --holdout 50

``--predictor-only`` runs step 3 alone, with the measurement ceiling beside it (the Kendall tau between
validation and test accuracy of the same held-out sub-networks), into its own section.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import kendalltau

from hwsearch.estimators.accuracy_predictor import fit_and_report, holdout_split
from hwsearch.hwmodel import Accelerator, network_cost
from hwsearch.io import atomic_write_json, file_lock
from hwsearch.ir import NetSpec
from hwsearch.search.ofa.evolution import Constraints, EvolutionSettings, Feasibility, evolve, random_search
from hwsearch.spaces.supernet import (
    COMPACT,
    accuracies,
    load_or_train,
    sample_choices,
    schedule,
    subnet_accuracy,
)
from hwsearch.train import train_and_evaluate

SECTION = "ofa_supernet"
SCRATCH_CACHE = Path(__file__).resolve().parent.parent / "runs" / "benchmarks" / "ofa_supernet" / "scratch.json"


class ModelLatency:
    """Latency of a whole network on an accelerator of the built-in model (an object with ``predict``)."""

    def __init__(self, preset: str) -> None:
        self.accel = Accelerator.preset(preset)

    def predict(self, net: NetSpec) -> float:
        return float(network_cost(net, self.accel).latency_s)


def supernet_epochs(cached, plan) -> int:
    """Epochs of the phases the space really trains (a ViT has no kernel phase)."""
    return sum(e for name, e, _ in plan.phases() if name == "full" or cached.supernet.genes_of({name}))


def space_options(name: str, args: argparse.Namespace) -> dict:
    """The space settings of the run: the profile's, or `COMPACT`'s on digits."""
    return {"profile": args.profile} if args.profile else dict(COMPACT[name])


def data_label(args: argparse.Namespace) -> str:
    """Short name of the data source for titles and section names (``cifar10``, ``digits``)."""
    return args.data.split("?")[0].split(":")[0]


def scratch_accuracy(cached, plan, choice, epochs: int, threads: int, data: str = "digits") -> float:
    """Test accuracy of ``choice`` trained from scratch with the supernet's recipe and epoch count.

    Kept in a file keyed by everything the training depends on (space, choice, epochs, recipe, threads,
    torch version), so a rerun that changes only the supernet's schedule retrains nothing from scratch."""
    recipe = plan.recipe.model_copy(update={"lr": plan.lr_full, "threads": threads, "epochs": epochs})
    options = {k: v for k, v in cached.space_options.items() if k not in ("in_channels", "num_classes")}
    # Digits keys keep their old form, so the cache of earlier runs still serves.
    head = [cached.space.name, options] if data == "digits" else [cached.space.name, options, data]
    key = json.dumps([*head, dict(sorted(choice.items())), epochs,
                      recipe.model_dump(), threads, torch.__version__], sort_keys=True, default=str)
    known = _read_scratch()
    if key in known:
        return float(known[key])
    torch.manual_seed(0)
    model = cached.space.build(choice)
    res = train_and_evaluate(model, cached.data, epochs=epochs, seed=0, recipe=recipe,
                             resolution=cached.supernet.resolution(choice))
    # Read again under a lock: benchmarks running side by side (several seeds) share the file.
    with file_lock(SCRATCH_CACHE.with_suffix(".lock")):
        atomic_write_json(SCRATCH_CACHE, {**_read_scratch(), key: res.test_acc})
    return res.test_acc


def _read_scratch() -> dict:
    return json.loads(SCRATCH_CACHE.read_text()) if SCRATCH_CACHE.exists() else {}


def measured_before(folder: Path, cached) -> tuple[list[dict], np.ndarray]:
    """Sub-networks and validation accuracies a NAAS run measured on this very supernet (its ``naas/``
    folder), so the predictor's figures need no second measurement."""
    assets = json.loads((folder / "assets.json").read_text())
    if assets["supernet"]["key"] != cached.key:
        raise SystemExit(f"{folder} measured supernet {assets['supernet']['key']}, not this one ({cached.key})")
    saved = json.loads((folder / "predictor.json").read_text())
    return [cached.space.validate(c) for c in saved["choices"]], np.asarray(saved["val_acc"], dtype=float)


def compared_archs(space, random: int) -> list[tuple[str, dict]]:
    """(label, choice) of the sub-networks compared with from scratch: largest, smallest, ``random`` random."""
    rng = np.random.default_rng(100)
    archs = [("largest", space.reference("largest")), ("smallest", space.reference("smallest"))]
    return archs + [(f"random{i}", space.sample(rng)) for i in range(random)]


def run_space(name: str, args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    plan = schedule(args.schedule, name)
    t0 = time.perf_counter()
    cached = load_or_train(name, args.data, plan, 0, space_kwargs=space_options(name, args),
                           on_phase=lambda p: print(f"[{name}] {p}", flush=True))
    print(f"[{name}] supernet ready in {time.perf_counter() - t0:.0f} s (trained now: {cached.trained_now})", flush=True)
    sn, space, data = cached.supernet, cached.space, cached.data
    epochs = supernet_epochs(cached, plan)
    archs = compared_archs(space, args.random)
    rows = []
    for label, choice in ([] if args.predictor_only else archs):
        inside = subnet_accuracy(sn, data, choice, "test")
        scratch = scratch_accuracy(cached, plan, choice, epochs, args.threads, args.data)
        rows.append({"arch": label, "macs": space.to_netspec(choice).macs, "supernet": inside, "scratch": scratch})
        print(f"[{name}] {label}: supernet {inside:.4f} scratch {scratch:.4f}", flush=True)

    if args.measured:
        choices, accs = measured_before(Path(args.measured), cached)
    else:
        choices = sample_choices(sn, args.samples, seed=1)
        accs = accuracies(sn, data, choices, "val", progress=True)
    fraction = args.holdout / len(choices)
    pred, report = fit_and_report(space, choices, accs, test_fraction=fraction, seed=0)
    print(f"[{name}] predictor {report}", flush=True)
    # The ceiling any predictor of validation accuracy faces: the same held-out sub-networks measured
    # on the (independent) test split rank only this well against their validation accuracy.
    _, held = holdout_split(len(choices), fraction, seed=0)
    held_choices = [choices[i] for i in held]
    held_test = accuracies(sn, data, held_choices, "test", progress=True)
    ceiling = {"val_vs_test_tau": float(kendalltau(accs[held], held_test).statistic),
               "predictor_vs_test_tau": float(kendalltau(pred.predict(held_choices), held_test).statistic),
               "val_spread_pt": float(100 * accs.std())}
    print(f"[{name}] ceiling {ceiling}", flush=True)
    if args.predictor_only:
        return {"space": name, "predictor": report.to_dict(), "ceiling": ceiling, "schedule": args.schedule,
                "train_s": cached.log.seconds}

    latency = ModelLatency("eyeriss")
    probe = sample_choices(sn, 200, seed=7)
    limit = float(np.percentile([latency.predict(space.to_netspec(c)) for c in probe], 25))
    feasible = Feasibility(space, Constraints(max_latency_s=limit), latency)
    settings = EvolutionSettings(population=100, generations=max(1, args.queries // 100))
    search = []
    for seed in args.seeds:
        evo = evolve(space, pred.predict, settings, feasible, seed=seed, budget=args.queries)
        rnd = random_search(space, pred.predict, args.queries, feasible, seed=seed)
        search.append({
            "seed": seed, "queries": evo.queries,
            "evo_pred": evo.best_score, "evo_test": subnet_accuracy(sn, data, evo.best_choice, "test"),
            "evo_latency_ms": evo.best_costs["latency_s"] * 1e3,
            "rnd_pred": rnd.best_score, "rnd_test": subnet_accuracy(sn, data, rnd.best_choice, "test"),
            "rnd_latency_ms": rnd.best_costs["latency_s"] * 1e3,
        })
        print(f"[{name}] search seed {seed}: {search[-1]}", flush=True)
    return {"space": name, "train_s": cached.log.seconds, "phases": cached.log.to_dict()["phases"], "epochs": epochs,
            "options": space_options(name, args), "data": args.data, "rows": rows, "predictor": report.to_dict(), "limit_ms": limit * 1e3,
            "search": search, "schedule": args.schedule, "ceiling": ceiling, "threads": args.threads,
            "measured": bool(args.measured),
            "load": [load_start, os.getloadavg()[0]], "split": [len(data.y_train), len(data.y_val), len(data.y_test)]}


def predictor_markdown(res: dict) -> str:
    """One row of the predictor-only table."""
    p, c = res["predictor"], res["ceiling"]
    return (f"| {res['space']} | `{res['schedule']}` | {p['n_train']} / {p['n_test']} | {100 * p['rmse']:.2f} pt | "
            f"{p['kendall_tau']:.3f} | {c['predictor_vs_test_tau']:.3f} | {c['val_vs_test_tau']:.3f} | "
            f"{c['val_spread_pt']:.2f} pt |")


def markdown(res: dict, args: argparse.Namespace) -> str:
    rows = res["rows"]
    gap = [r["supernet"] - r["scratch"] for r in rows]
    rand = [r for r in rows if r["arch"].startswith("random")]
    phases = ", ".join(f"{p['phase']} {p['epochs']} ep {p['seconds']:.0f} s" for p in res["phases"])
    out = [
        f"### {res['space']} on {res['data']} (space options {json.dumps(res['options'])})",
        "",
        f"Supernet: schedule `{res['schedule']}` ({res['epochs']} epochs: {phases}); "
        f"training time on this machine **{res['train_s']:.0f} s**. From-scratch baselines: the same "
        f"architecture, the supernet's recipe, {res['epochs']} epochs.",
        "",
        f"Split: {res['split'][0]:,} training / {res['split'][1]:,} validation / {res['split'][2]:,} test images; "
        f"{res['threads']} torch thread(s); load average {res['load'][0]:.1f} at the start, {res['load'][1]:.1f} "
        f"at the end (2 cores; wall times grow with it). Accuracies: one measurement each on the test split "
        f"(one image = {100 / res['split'][2]:.2f} pt).",
        "",
        "| sub-network | MACs | supernet test acc | from-scratch test acc | supernet - scratch |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        out.append(f"| {r['arch']} | {r['macs']:,} | {r['supernet']:.4f} | {r['scratch']:.4f} | "
                   f"{100 * (r['supernet'] - r['scratch']):+.1f} pt |")
    if rand:
        out.append(f"| mean of {len(rand)} random | | {statistics.mean(r['supernet'] for r in rand):.4f} | "
                   f"{statistics.mean(r['scratch'] for r in rand):.4f} | "
                   f"{100 * statistics.mean(r['supernet'] - r['scratch'] for r in rand):+.1f} pt |")
    out.append(f"| mean of all {len(rows)} | | | | {100 * statistics.mean(gap):+.1f} pt |")
    p = res["predictor"]
    c = res.get("ceiling")
    ceiling = "" if c is None else (
        f" Measurement ceiling: the same held-out sub-networks' validation accuracy ranks their test accuracy "
        f"with Kendall tau {c['val_vs_test_tau']:.3f} (the predictor's: {c['predictor_vs_test_tau']:.3f}); "
        f"validation accuracies spread {c['val_spread_pt']:.2f} pt (std).")
    out += ["", f"Accuracy predictor (MLP 3x400 on one-hot, {p['n_train']} measured sub-networks, validation accuracy"
            + ("; the sub-networks a NAAS run on this supernet measured: largest, smallest and random ones"
               if res.get("measured") else "")
            + f"): held-out ({p['n_test']}) RMSE **{100 * p['rmse']:.2f} pt**, Kendall tau "
            f"**{p['kendall_tau']:.3f}**.{ceiling}",
            "", f"Search under latency <= {res['limit_ms']:.4f} ms (Eyeriss model; 25th percentile of random "
            f"sub-networks), {res['search'][0]['queries']} predictor queries each (evolution: population 100, "
            "parent ratio 0.25, mutation ratio 0.5, mutation probability 0.1):", "",
            "| seed | evolution: predicted / measured test acc / latency ms | random: predicted / measured / latency ms |",
            "| --- | --- | --- |"]
    for s in res["search"]:
        out.append(f"| {s['seed']} | {s['evo_pred']:.4f} / {s['evo_test']:.4f} / {s['evo_latency_ms']:.4f} | "
                   f"{s['rnd_pred']:.4f} / {s['rnd_test']:.4f} / {s['rnd_latency_ms']:.4f} |")
    ev = statistics.median(s["evo_pred"] for s in res["search"])
    rd = statistics.median(s["rnd_pred"] for s in res["search"])
    out.append(f"| median | {ev:.4f} / {statistics.median(s['evo_test'] for s in res['search']):.4f} | "
               f"{rd:.4f} / {statistics.median(s['rnd_test'] for s in res['search']):.4f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spaces", nargs="+", default=["ofa-mbv3", "vit"])
    ap.add_argument("--schedule", default="fast")
    ap.add_argument("--random", type=int, default=20)
    ap.add_argument("--samples", type=int, default=150)
    ap.add_argument("--holdout", type=int, default=30, help="of the samples, held out from the predictor's fit")
    ap.add_argument("--data", default="digits", help="data source (hwsearch.data.load_data)")
    ap.add_argument("--profile", default=None, help="space profile (hwsearch.spaces.profiles); digits: COMPACT")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=None, help="also write the raw results as JSON here")
    ap.add_argument("--measured", default=None,
                    help="a NAAS run's naas/ folder on the same supernet: fit and hold out the predictor on the "
                         "sub-networks it measured instead of measuring --samples new ones")
    ap.add_argument("--predictor-only", action="store_true",
                    help="only the accuracy predictor and its measurement ceiling (own section)")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args(argv)
    if not args.measured and not 0 < args.holdout < args.samples:
        ap.error(f"--holdout {args.holdout} must lie between 0 and --samples {args.samples}")
    results = [run_space(name, args) for name in args.spaces]
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1))
    if args.predictor_only:
        body = ("## Once-for-All accuracy predictor vs its measurement ceiling (issue 7)\n\n"
                f"MLP 3x400 on one-hot genes, fitted on the validation accuracy of {args.samples} random "
                "sub-networks (BatchNorm recalibrated), 20% held out. 'val vs test' is the Kendall tau between "
                "the held-out sub-networks' validation and test accuracies: two independent measurements of the "
                "same networks, so no predictor of either can rank much better.\n\n"
                "| space | schedule | train / held out | RMSE | tau (vs val) | tau (vs test) | val vs test tau | "
                "val spread (std) |\n|---|---|---|---|---|---|---|---|\n"
                + "\n".join(predictor_markdown(r) for r in results))
        print(body)
        if not args.no_write:
            from benchmarks.report import write_section

            write_section(f"{SECTION}_predictor", body, "python -m benchmarks.ofa_supernet " + " ".join(sys.argv[1:]))
        return 0
    title = ("## Once-for-All supernet (issue 7)" if data_label(args) == "digits" else
             f"## {data_label(args).upper()}: Once-for-All supernet ({', '.join(args.spaces)}), schedule `{args.schedule}`")
    body = title + "\n\n" + "\n\n".join(markdown(r, args) for r in results)
    print(body)
    if not args.no_write:
        from benchmarks.report import write_section

        section = SECTION if len(args.spaces) == 2 else f"{SECTION}_{'_'.join(args.spaces)}"
        if data_label(args) != "digits":
            section = f"{SECTION}_{data_label(args)}_{'_'.join(args.spaces)}"
        write_section(section, body, "python -m benchmarks.ofa_supernet " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
