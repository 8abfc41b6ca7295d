"""AMC/HAQ agent vs uniform, sensitivity, random and TPE policies, on the same budgets and evaluations.

For a trained ``ofa-mbv3`` and a trained ``vit`` network on digits, two settings: pruning to 50% of the
MACs (``amc`` mode) and weights at 4 bits on average (``haq`` mode, float activations). Every method
evaluates at most the same number of distinct policies on the same validation subset (a policy proposed
again is not evaluated again and costs nothing), through the same budget clipping; the policy it picks (best validation accuracy) is then measured on the test split,
before any fine-tuning, both as the search saw it (masked weights) and as `apply_policy` builds it.
The agent spends ``--scan-share`` of its evaluations on a per-layer sensitivity scan whose policy it
replays as a demonstration (`CompressionAgent.scan`); ``--scan-share 0`` measures AMC's agent alone.
Three seeds per method; the table shows medians. Results are kept per run in a JSON file, so an
interrupted benchmark continues where it stopped.

    python benchmarks/agent_vs_baselines.py [--evaluations 120] [--val-samples 270] [--scan-share 0.5]
        [--seeds 3] [--jobs 2] [--report-only]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

NETWORKS = {"ofa-mbv3": "smallest", "vit": "middle"}
METHODS = ("agent", "uniform", "sensitivity", "random", "tpe")
SETTINGS = {
    "prune 50% MACs": {"mode": "amc", "budget": {"metric": "macs", "ratio": 0.5}},
    "4-bit avg weights": {"mode": "haq", "budget": {"metric": "avg_w_bits", "value": 4.0}, "fixed_a_bits": 32},
}
OUT = ROOT / "runs" / "benchmarks" / "agent_vs_baselines"


def _tag(val_samples: int, evaluations: int, sep: str) -> str:
    """What sets one run apart (validation images, evaluation budget), for its results file."""
    return f"{sep}val{val_samples}{sep}e{evaluations}"


def _results_file(network: str, val_samples: int, evaluations: int) -> Path:
    """Saved runs of one network at one validation size and evaluation budget."""
    return OUT / f"{network}{_tag(val_samples, evaluations, '-')}.json"


def _same_agent(row: dict, scan_share: float) -> bool:
    """Whether a saved row belongs to a run with this agent (baselines do not depend on it)."""
    return row["method"] != "agent" or row.get("scan_share", 0.0) == scan_share


def run_network(network: str, evaluations: int, seeds: int, val_samples: int, scan_share: float) -> list[dict]:
    """Every (setting, method, seed) run of one network; finished runs are read back, not repeated
    (the agent's only if they used the same ``scan_share``)."""
    import torch

    torch.set_num_threads(1)
    from hwsearch.io import atomic_write_json
    from hwsearch.search.amc.agent import AgentConfig, CompressionAgent
    from hwsearch.search.amc.baselines import run_baseline
    from hwsearch.search.amc.env import CompressionEnv, EnvConfig
    from hwsearch.search.amc.problem import TorchProblem
    from hwsearch.search.amc.trained_cache import trained_network

    path = _results_file(network, val_samples, evaluations)
    rows = json.loads(path.read_text()) if path.exists() else []  # agents of every scan share stay saved
    done = {(r["setting"], r["method"], r["seed"]) for r in rows if _same_agent(r, scan_share)}
    net = trained_network(network, NETWORKS[network], seed=0)
    problem = TorchProblem.from_trained(net, val_samples=val_samples, calib_samples=64)
    for setting, spec in SETTINGS.items():
        config = EnvConfig.from_dict(spec)
        probe = CompressionEnv(problem, config)
        pairs = sum(len(probe.options[k][i]) > 1 for i in probe.steps for k in probe.knobs)
        n_eval = max(evaluations, pairs + 1)  # sensitivity needs one probe per layer and knob
        reference = probe.reference_accuracy
        for seed in range(seeds):
            for method in METHODS:
                if (setting, method, seed) in done:
                    continue
                env = CompressionEnv(problem, config, reference_accuracy=reference)
                start = time.time()
                if method == "agent":
                    own = n_eval - int(round(scan_share * n_eval))  # evaluations left after the scan
                    agent = CompressionAgent(env, AgentConfig(warmup_episodes=max(2, own // 4), seed=seed,
                                                              scan_share=scan_share))
                    agent.search(n_eval)
                else:
                    run_baseline(method, env, n_eval, seed=seed)
                best = env.best
                state = best.as_state()
                rows.append({
                    "network": network, "choice": NETWORKS[network], "setting": setting, "method": method,
                    "seed": seed, "evaluations": env.evaluations, "episodes": len(env.history),
                    "budget_evaluations": n_eval,
                    "val_acc": best.accuracy, "test_acc": problem.accuracy(state, "test"),
                    "test_acc_applied": problem.accuracy(state, "test", exact=True),
                    "cost": best.cost, "limit": env.limit, "reference_val_acc": reference,
                    "reference_test_acc": net.test_acc, "search_s": time.time() - start,
                    **({"scan_share": scan_share} if method == "agent" else {}),
                })
                atomic_write_json(path, rows)
                print(f"{network} | {setting} | {method} seed {seed}: val {best.accuracy:.3f} "
                      f"test {rows[-1]['test_acc']:.3f} ({rows[-1]['search_s']:.0f}s)", flush=True)
    return [r for r in rows if _same_agent(r, scan_share)]


def table(rows: list[dict]) -> str:
    """Markdown: median test accuracy (before fine-tuning) per network, setting and method."""
    lines = ["| network | setting | evals | " + " | ".join(METHODS) + " | agent >= best baseline |",
             "|---|---|---|" + "---|" * len(METHODS) + "---|"]
    keys = sorted({(r["network"], r["setting"]) for r in rows}, key=lambda k: (k[0], list(SETTINGS).index(k[1])))
    for network, setting in keys:
        sub = [r for r in rows if r["network"] == network and r["setting"] == setting]
        med = {}
        for m in METHODS:
            vals = [r["test_acc"] for r in sub if r["method"] == m]
            med[m] = statistics.median(vals) if vals else float("nan")
        best_base = max(med[m] for m in METHODS if m != "agent")
        cells = " | ".join(f"{100 * med[m]:.1f}" for m in METHODS)
        evals = max(r["budget_evaluations"] for r in sub)
        ok = "yes" if med["agent"] >= best_base else f"no ({100 * (med['agent'] - best_base):+.1f})"
        ref = sub[0]["reference_test_acc"]
        lines.append(f"| {network} ({sub[0]['choice']}, {100 * ref:.1f}% uncompressed) | {setting} | {evals} | "
                     f"{cells} | {ok} |")
    applied = ["", "Same policies built by `apply_policy` (structural shrink, its own channel ranking), test %:", "",
               "| network | setting | " + " | ".join(METHODS) + " |", "|---|---|" + "---|" * len(METHODS)]
    for network, setting in keys:
        sub = [r for r in rows if r["network"] == network and r["setting"] == setting]
        cells = " | ".join(f"{100 * statistics.median([r['test_acc_applied'] for r in sub if r['method'] == m]):.1f}"
                           if any(r["method"] == m for r in sub) else "-" for m in METHODS)
        applied.append(f"| {network} | {setting} | {cells} |")
    return "\n".join(lines + applied)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--evaluations", type=int, default=120,
                        help="policies each method may evaluate (each budget: its own results and section)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--val-samples", type=int, default=270,
                        help="validation images behind each reward (270: the whole validation split; each size: "
                             "its own results and section)")
    parser.add_argument("--scan-share", type=float, default=0.5,
                        help="share of the agent's evaluations spent first on a sensitivity scan (0: AMC's agent)")
    parser.add_argument("--jobs", type=int, default=2, help="networks searched in parallel processes")
    parser.add_argument("--networks", nargs="*", default=list(NETWORKS))
    parser.add_argument("--report-only", action="store_true", help="rewrite the section from saved results")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if args.report_only:
        files = [_results_file(n, args.val_samples, args.evaluations) for n in args.networks]
        rows = [r for f in files if f.exists() for r in json.loads(f.read_text())
                if _same_agent(r, args.scan_share)]
    else:
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            futures = [pool.submit(run_network, n, args.evaluations, args.seeds, args.val_samples, args.scan_share)
                       for n in args.networks]
            rows = [r for f in futures for r in f.result()]
    from benchmarks.report import write_section

    macs = {r["network"]: r["limit"] / 0.5 for r in rows if r["setting"].startswith("prune")}
    nets = ", ".join(f"`{n}` `{NETWORKS[n]}` ({macs[n] / 1e6:.2f}M MACs)" for n in sorted(macs))

    body = (
        "## AMC/HAQ agent vs baselines (test accuracy before fine-tuning, %): "
        f"{args.evaluations} evaluations, {args.val_samples} validation images"
        + ("" if args.scan_share else ", the agent without a scan (AMC's)") + "\n\n"
        f"Networks: {nets}, trained once on digits. "
        f"Median over {args.seeds} seeds of the test accuracy of each method's chosen policy (best of at "
        f"most `evals` distinct evaluated policies, revisits free, on {args.val_samples} validation images, ties broken by the "
        "mean probability of the true label, BatchNorm re-estimated "
        "on 64 training images, no weight trained). Pruning: 50% of the MACs, channels in multiples of 8, "
        "sparsity <= 0.8 per layer. Bits: 4-bit average weight width, 2..8 bits per layer, float "
        "activations. Every method's policies pass through the same budget clipping. "
        "Agent: DDPG with self-imitation of its best episode"
        + (f", its first {100 * args.scan_share:.0f}% of the evaluations spent on a per-layer sensitivity scan "
           "whose thresholded policy it replays as a demonstration, then a quarter of the rest as random warm-up "
           "episodes" if args.scan_share else ", a quarter of the evaluations as random warm-up episodes")
        + ". Validation accuracies rest on "
        f"{args.val_samples} images, so differences of a few points between methods are within the noise "
        f"of picking the best of {args.evaluations} noisy scores.\n\n" + table(rows)
    )
    command = " ".join(["python benchmarks/agent_vs_baselines.py",
                        *[a for a in sys.argv[1:] if a != "--report-only"]])
    section = "agent_vs_baselines" + _tag(args.val_samples, args.evaluations, "_") + \
        ("" if args.scan_share else "_plain")
    write_section(section, body, command)
    print(table(rows))


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
