"""The `hwsearch` command: parses, calls one library function, prints.

Every `HwsearchError` (a mistake in the user's input) becomes one line on stderr and exit code 2;
anything else is a bug and keeps its traceback. Each room's commands sit in their own section below.
Each command imports the library it calls inside its body: the rooms pull in torch, Ray and Optuna,
and `hwsearch --help` or `hwsearch hw presets` should not wait for them.
"""

from __future__ import annotations

import json
import sys

import typer
from rich.console import Console
from rich.table import Table

from hwsearch.errors import HwsearchError

app = typer.Typer(help="Co-search compressed networks and accelerator configurations.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)
console = Console()


def main() -> None:
    """Entry point of the console script."""
    try:
        app()
    except HwsearchError as e:
        print(f"hwsearch: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def _emit_json(obj: object) -> None:
    print(json.dumps(obj, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


# ---- spaces ------------------------------------------------------------------------------------
spaces_app = typer.Typer(help="Search spaces: list them, sample and describe choices.", no_args_is_help=True)
app.add_typer(spaces_app, name="spaces")


@spaces_app.command("list")
def spaces_list() -> None:
    """List the registered search spaces."""
    from hwsearch import spaces

    for name in spaces.names():
        space = spaces.get(name)
        print(f"{name}\t{len(space.dims)} genes\treferences: {', '.join(space.references())}")


@spaces_app.command("sample")
def spaces_sample(
    name: str = typer.Argument(..., help="Space name (see `hwsearch spaces list`)."),
    seed: int = typer.Option(0, help="Seed of the random choice."),
    reference: str | None = typer.Option(None, help="A named reference choice instead of a random one "
                                         "(nb201: or a NAS-Bench-201 arch string)."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> None:
    """Print a choice (and its notation, e.g. an nb201 arch string) and its NetSpec summary."""
    import numpy as np

    from hwsearch import spaces
    from hwsearch.errors import ConfigError

    if fmt not in ("table", "json"):
        raise ConfigError(f"--format {fmt!r} is not supported; use table or json")
    space = spaces.get(name)
    choice = space.reference(reference) if reference else space.sample(np.random.default_rng(seed))
    net = space.to_netspec(choice)
    notation = space.notation(choice)
    if fmt == "json":
        named = {"notation": notation} if notation else {}
        _emit_json({"space": name, "choice": choice, **named, **net.summary(), "netspec": net.to_dict()})
        return
    console.print(f"[bold]{name}[/bold] choice: {json.dumps(choice)}")
    if notation:
        print(notation)
    table = Table("layer", "op", "shape", "MACs", "params")
    for layer in net.layers:
        shape = f"c={layer.c} k={layer.k} {layer.in_h}x{layer.in_w}->{layer.h}x{layer.w} m={layer.m} n={layer.n}"
        table.add_row(layer.name, layer.op, shape, f"{layer.macs:,}", f"{layer.params:,}")
    console.print(table)
    s = net.summary()
    console.print(
        f"layers {s['layers']}  MACs {s['macs']:,}  params {s['params']:,}  "
        f"peak activation {s['peak_activation_bytes']:,.0f} B"
    )


# ---- data --------------------------------------------------------------------------------------
data_app = typer.Typer(help="Data sources: list them, load one, download a published data set.",
                       no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("list")
def data_list() -> None:
    """List the registered data sources."""
    from hwsearch import data

    for name in data.names():
        doc = (data.SOURCES[name].__doc__ or "").strip().splitlines()
        print(f"{name}\t{doc[0] if doc else ''}")


@data_app.command("show")
def data_show(
    source: str = typer.Argument("digits", help="Source string: digits, npz:PATH, imagefolder:PATH, cifar10[:PATH]."),
    seed: int = typer.Option(0, help="Seed of the train/validation split."),
) -> None:
    """Load a source (decoding and caching it if needed) and print its splits, image shape and classes."""
    from hwsearch.data import load_data

    d = load_data(source, seed=seed)
    sizes = ", ".join(f"{k} {v:,}" for k, v in d.sizes.items())
    names = ", ".join(d.class_names) if d.class_names else "unnamed"
    augment = "the recipe's random shift" if d.augment is None else type(d.augment).__name__
    print(f"{source}: {sizes}; images {'x'.join(map(str, d.input_shape))}; {d.num_classes} classes ({names}); "
          f"training augmentation: {augment}")


@data_app.command("download")
def data_download(
    name: str = typer.Argument(..., help="Data set to download (cifar10)."),
    dest: str | None = typer.Option(None, help="Folder; default $HWSEARCH_DATA, else <cache>/datasets."),
) -> None:
    """Download a published data set's archive and check its checksum (the only command that downloads)."""
    from hwsearch.datasets.cifar10 import download_cifar10
    from hwsearch.errors import UnknownName

    if name != "cifar10":
        raise UnknownName(f"no download for data set {name!r}; known: cifar10")
    print(f"downloaded {download_cifar10(dest)}")


# ---- hwmodel -----------------------------------------------------------------------------------
hw_app = typer.Typer(help="The built-in accelerator model: presets and per-layer cost.", no_args_is_help=True)
app.add_typer(hw_app, name="hw")
lut_app = typer.Typer(help="Lookup tables: build them from the accelerator model or from profiling.",
                      no_args_is_help=True)
app.add_typer(lut_app, name="lut")


@hw_app.command("presets")
def hw_presets(fmt: str = typer.Option("table", "--format", help="table or json.")) -> None:
    """List the accelerator presets with their size, area, peak power and sources."""
    from hwsearch.errors import ConfigError
    from hwsearch.hwmodel import SOURCES, Accelerator, preset_names

    if fmt not in ("table", "json"):
        raise ConfigError(f"--format {fmt!r} is not supported; use table or json")
    accels = {name: Accelerator.preset(name) for name in preset_names()}
    if fmt == "json":
        _emit_json({n: {**a.to_dict(), "area_mm2": a.area_mm2, "peak_power_w": a.peak_power_w,
                        "source": SOURCES[n]} for n, a in accels.items()})
        return
    table = Table("preset", "PEs", "dataflow", "bits", "buffers", "DRAM B/cyc", "clock MHz", "area mm2", "peak W")
    for n, a in accels.items():
        table.add_row(n, f"{a.pe_rows}x{a.pe_cols}", a.dataflow, "/".join(map(str, a.precisions)),
                      f"{a.buffer_bytes / 1024:,.0f} KiB", f"{a.dram_bw:g}", f"{a.clock_hz / 1e6:g}",
                      f"{a.area_mm2:.2f}", f"{a.peak_power_w:.3f}")
    console.print(table)
    for n in accels:
        console.print(f"[bold]{n}[/bold]: {SOURCES[n]}")


@hw_app.command("cost")
def hw_cost(
    accel: str = typer.Option(..., help="Preset name, or an accelerator .json/.yaml, or a SCALE-Sim .cfg."),
    layers: str = typer.Option(..., help="A netspec.json, or a SCALE-Sim topology CSV (conv or GEMM)."),
    gemm: bool = typer.Option(False, "--gemm", help="Read the topology CSV as GEMM rows (name, M, N, K)."),
    objective: str = typer.Option("latency", help="Mapping objective: latency, energy or edp."),
    mapper: str = typer.Option("", help="search: search the spatial unrolling too; fast: the co-search's fixed "
                                        "unrolling (what a NAAS report.json holds). Default: fast on a SCALE-Sim "
                                        "topology (SCALE-Sim's own mapping, so its cycles), search otherwise."),
    unroll: str = typer.Option("", help="Fix the spatial unrolling instead of --mapper, e.g. "
                                        "'rows=c:3,r:3 cols=k:8' (dimensions g n k c r s h w)."),
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
) -> None:
    """Per-layer cycles, latency, energy and utilisation of a network on an accelerator."""
    import csv as _csv
    from pathlib import Path

    from hwsearch.errors import ConfigError, SpecError
    from hwsearch.hwmodel import Accelerator, Unrolling, network_cost, read_topology
    from hwsearch.ir import NetSpec

    if fmt not in ("table", "json", "csv"):
        raise ConfigError(f"--format {fmt!r} is not supported; use table, json or csv")
    acc = Accelerator.resolve(accel)
    path = Path(layers)
    if not path.is_file():
        raise SpecError(f"--layers {layers!r} does not exist")
    scalesim = path.suffix.lower() == ".csv"
    if scalesim:
        net = read_topology(path, gemm=True if gemm else None, bits=acc.native_bits)
    else:
        try:
            net = NetSpec.from_json(str(path))
        except ValueError as e:
            raise SpecError(f"--layers {path.name!r} is not a netspec.json: {e}") from None
    nc = network_cost(net, acc, objective, mapper or ("fast" if scalesim else "search"),
                      Unrolling.parse(unroll) if unroll else None)
    rows = nc.rows()
    if fmt == "json":
        _emit_json({"accelerator": acc.to_dict(), "layers": rows, "total": nc.total_row()})
    elif fmt == "csv":
        writer = _csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["name"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    else:
        table = Table("layer", "compute cyc", "stall cyc", "latency ms", "energy uJ", "util", "DRAM KiB")
        for r in rows + [nc.total_row()]:
            table.add_row(str(r["name"]), f"{r['compute_cycles']:,}", f"{r['stall_cycles']:,}",
                          f"{r['latency_s'] * 1e3:.4f}", f"{r['energy_pj'] * 1e-6:.3f}", f"{r['utilization']:.2f}",
                          f"{(r['dram_read_bytes'] + r['dram_write_bytes']) / 1024:,.1f}")
        console.print(table)


@lut_app.command("build")
def lut_build(
    space: str = typer.Option(..., help="Search space name (see `hwsearch spaces list`)."),
    accel: str = typer.Option(..., help="Preset name, or an accelerator .json/.yaml, or a SCALE-Sim .cfg."),
    out: str | None = typer.Option(None, help="Table file; default .cache/lut/<space>-<accelerator key>.json."),
    bases: int = typer.Option(4, help="Random base choices whose single-gene changes are enumerated."),
    bits: str = typer.Option("", help="Also cost every layer at these bit-widths, e.g. '8,4'."),
    seed: int = typer.Option(0, help="Seed of the random base choices."),
    patience: int = typer.Option(100, help="Stop sampling after this many random choices add no new layer."),
) -> None:
    """Cost every distinct layer a space produces on an accelerator and save the table (a corrupt or
    stale file at OUT is reported and rebuilt)."""
    from hwsearch import spaces
    from hwsearch.errors import ConfigError
    from hwsearch.estimators.latency_table import build_model_table
    from hwsearch.hwmodel import Accelerator

    try:
        widths = tuple(int(b) for b in bits.split(",") if b.strip())
    except ValueError:
        raise ConfigError(f"--bits {bits!r} must be comma-separated integers, e.g. 8,4") from None
    acc = Accelerator.resolve(accel)
    sp = spaces.get(space)
    path = out or f".cache/lut/{space}-{acc.key}.json"
    table = build_model_table(sp, acc, path, bases=bases, seed=seed, bits=widths, patience=patience)
    print(f"{path}\t{len(table)} layers\taccelerator {acc.name} ({acc.key})")


# ---- kernels: measured latency tables ------------------------------------------------------------
_STATISTIC_HELP = "median (default), or min: repeats better on a machine busy with other work."


def _measured(space: str, device: str, threads: int, cache_dir: str | None, quick: bool, progress: bool,
              statistic: str, dtype: str = "fp32"):
    from hwsearch.estimators.measured import MeasuredLatency
    from hwsearch.kernels import TimerConfig

    timers = dict(layer_timer=TimerConfig.quick(), network_timer=TimerConfig.quick()) if quick else {}
    return MeasuredLatency(space, device, threads=threads, dtype=dtype, cache_dir=cache_dir, progress=progress,
                           statistic=statistic, **timers)


@app.command("profile")
def profile(
    space: str = typer.Option(..., help="Search space name (see `hwsearch spaces list`)."),
    device: str = typer.Option("cpu", help="cpu, or cuda when a GPU is present."),
    networks: int = typer.Option(20, help="Profile every distinct layer of this many sampled networks."),
    fit: int = typer.Option(60, help="Networks measured end to end to fit the correction (0: fit nothing)."),
    seed: int = typer.Option(0, help="Seed of the sampled networks."),
    threads: int = typer.Option(1, help="Intra-op threads for every measurement (recorded in the fingerprint)."),
    cache_dir: str | None = typer.Option(None, help="Cache folder; default $HWSEARCH_CACHE or ~/.cache/hwsearch."),
    quick: bool = typer.Option(False, help="Few timing samples: a smoke test, not numbers to trust."),
    statistic: str = typer.Option("median", help=_STATISTIC_HELP),
    dtype: str = typer.Option("fp32", help="Float dtype of full-precision layers: fp32; fp16 or bf16 on cuda."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
) -> None:
    """Measure a space's layers as real kernels on this machine into a cached table, and fit the
    whole-network correction (layers already in the table are not measured again)."""
    from hwsearch.errors import ConfigError

    if fmt not in ("table", "json"):
        raise ConfigError(f"--format {fmt!r} is not supported; use table or json")
    est = _measured(space, device, threads, cache_dir, quick, fmt == "table", statistic, dtype)
    est.profile_space(networks, seed=seed)
    out: dict = {"space": space, "device": est.fingerprint.label, "table": str(est.table_path),
                 "layers": len(est.table)}
    if fit:
        pred = est.fit(fit, seed=seed)
        out["predictor"] = str(est.predictor_path)
        out["fit"] = {k: pred.report[k] for k in ("n_train", "n_test", "train", "test", "test_lut_sum")}
    if fmt == "json":
        _emit_json(out)
        return
    print(f"{out['table']}\t{out['layers']} layers\t{out['device']}")
    if fit:
        for part in ("train", "test", "test_lut_sum"):
            r = out["fit"][part]
            print(f"fit {part:12s} n={r['n']:3d}  within ±10% {100 * r['within_10pct']:.0f}%  "
                  f"RMSPE {r['rmspe']:.1f}%  Kendall tau {r['kendall_tau']:.3f}")


@lut_app.command("check")
def lut_check(
    space: str = typer.Option(..., help="Search space name (see `hwsearch spaces list`)."),
    device: str = typer.Option("cpu", help="cpu, or cuda when a GPU is present."),
    n: int = typer.Option(20, help="Networks to sample, predict and measure end to end."),
    seed: int = typer.Option(1, help="Seed of the sampled networks (networks used for fitting are skipped)."),
    threads: int = typer.Option(1, help="Intra-op threads (must match the profiled table's)."),
    noise_floor: bool = typer.Option(False, help="Measure every network twice and report the repeatability."),
    cache_dir: str | None = typer.Option(None, help="Cache folder; default $HWSEARCH_CACHE or ~/.cache/hwsearch."),
    quick: bool = typer.Option(False, help="Few timing samples: a smoke test, not numbers to trust."),
    statistic: str = typer.Option("median", help=_STATISTIC_HELP),
    dtype: str = typer.Option("fp32", help="Float dtype of full-precision layers: fp32; fp16 or bf16 on cuda."),
    fmt: str = typer.Option("table", "--format", help="table or json."),
    uncorrected: bool = typer.Option(False, help="Check the plain table sum of a space profiled without a fit."),
) -> None:
    """Predict and measure N networks on this machine: share within ±10%, RMSPE, Kendall tau."""
    from hwsearch.errors import ConfigError

    if fmt not in ("table", "json"):
        raise ConfigError(f"--format {fmt!r} is not supported; use table or json")
    est = _measured(space, device, threads, cache_dir, quick, False, statistic, dtype)
    res = est.check(n, seed=seed, noise_floor=noise_floor, uncorrected=uncorrected)
    if fmt == "json":
        _emit_json(res)
        return
    rows = [("prediction", res)] + [(label, res[k]) for k, label in
                                     (("lut_sum", "table sum alone"), ("noise_floor", "noise floor")) if k in res]
    print(f"{space} on {res['device']}; corrected: {res['corrected']}")
    for label, r in rows:
        print(f"{label:16s} n={r['n']:3d}  within ±10% {100 * r['within_10pct']:.0f}%  RMSPE {r['rmspe']:.1f}%  "
              f"Kendall tau {r['kendall_tau']:.3f}")


# ---- engine: run, inspect, export ---------------------------------------------------------------
def _run_path(run: str) -> str:
    """A run given as a path, or as a name under ./runs/."""
    from pathlib import Path

    p = Path(run)
    if not p.exists() and not p.is_absolute() and (Path("runs") / run).exists():
        return str(Path("runs") / run)
    return str(p)


@app.command("run")
def run_cmd(
    config: str | None = typer.Argument(None, help="Experiment YAML; default: configs/default.yaml."),
    name: str | None = typer.Option(None, help="Run name (folder under output.root); default: the config's."),
    address: str | None = typer.Option(None, help="Ray cluster address (HOST:PORT); default: a local Ray on "
                                       "loopback. A cluster with token authentication needs its token in "
                                       "RAY_AUTH_TOKEN (or a file named by RAY_AUTH_TOKEN_PATH); see docs/cluster.md."),
    workers: int | None = typer.Option(None, help="Trials at the same time (ray.workers)."),
    overrides: list[str] = typer.Option([], "--set", help="Override a config field: --set budget.trials=4 (repeatable)."),
    resume: str | None = typer.Option(None, help="Continue the run in this directory (or runs/NAME)."),
    quiet: bool = typer.Option(False, help="No progress lines."),
) -> None:
    """Run an experiment on Ray Tune (or --resume one) and write runs/NAME/."""
    from hwsearch.errors import ConfigError
    from hwsearch.search.engine.config import load_config

    if resume:
        if config or overrides or name or workers:
            raise ConfigError("--resume continues a run with its saved config; drop CONFIG/--set/--name/--workers")
        from hwsearch.search.engine.driver import resume_experiment

        run = resume_experiment(_run_path(resume), address=address, quiet=quiet)
    else:
        cfg = load_config(config, overrides)
        from hwsearch.search.engine.driver import run_experiment

        run = run_experiment(cfg, name=name, address=address, workers=workers, quiet=quiet)
    state = run.state
    done = len(run.trials())
    print(f"run {run.name}: {state}, {done}/{run.config().budget.trials} trials in {run.path}")
    if state != "finished":
        print(f"continue it with: hwsearch run --resume {run.path}")


@app.command("inspect")
def inspect_cmd(
    run: str = typer.Argument(..., help="Run directory (or a name under runs/)."),
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
    plot: bool = typer.Option(False, help="Write Pareto scatter PNGs into RUN/plots/."),
    limit: int = typer.Option(20, help="Rows of the trial table shown (table format)."),
) -> None:
    """Show a run's status, trials (best first), Pareto front and best trial; works while it runs."""
    from hwsearch.errors import ConfigError
    from hwsearch.search.engine.inspection import summary, trials_frame, write_plots
    from hwsearch.search.engine.rundir import RunDir

    if fmt not in ("table", "json", "csv"):
        raise ConfigError(f"--format {fmt!r} is not supported; use table, json or csv")
    rd = RunDir.open(_run_path(run))
    plots = [str(p) for p in write_plots(rd)] if plot else []
    if fmt == "csv":
        print(trials_frame(rd).to_csv(index=False), end="")
        return
    s = summary(rd)
    if fmt == "json":
        _emit_json({**s, "plots": plots})
        return
    config = rd.config()
    console.print(f"[bold]{s['run']}[/bold]  {s['state']}  {s['finished']}/{s['budget']} trials"
                  f" ({s['failed']} failed)  space {s['space']}  searcher {s['searcher']}", highlight=False)
    objectives = [o["metric"] for o in s["objectives"]]
    extra = [m for m in ("test_acc", "macs", "params", "peak_activation_bytes") if m not in objectives]
    table = Table("trial", "status", "pareto", *objectives, *extra, "feasible")
    df = trials_frame(rd)
    for _, r in df.head(limit).iterrows():
        cells = [_fmt(r.get(m)) for m in objectives + extra]
        status = r["status"] if r["status"] == "ok" else f"failed: {str(r['error'])[:40]}"
        table.add_row(str(r["trial_id"]), status, "*" if r["pareto"] else "", *cells, str(bool(r["feasible"])))
    wide = console if console.is_terminal else Console(width=200)
    wide.print(table)
    if s["best"]:
        b = s["best"]
        console.print(f"best ({config.primary.mode} {config.primary.metric}): trial {b['trial_id']}  "
                      + "  ".join(f"{m} {_fmt(b.get(m))}" for m in objectives + extra), highlight=False)
    console.print(f"Pareto front: {', '.join(s['pareto']) or 'empty'}", highlight=False)
    for p in plots:
        print(f"wrote {p}")


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3g}"
    return "" if v is None else str(v)


@app.command("export")
def export_cmd(
    run: str = typer.Argument(..., help="Run directory (or a name under runs/)."),
    trial: str = typer.Option("best", help="Trial id, or best (feasible, best on the primary objective)."),
    out: str = typer.Option(..., help="Folder of the bundle."),
) -> None:
    """Write a trial's model (TorchScript, ONNX, state dict), choice, NetSpec and report into OUT."""
    from hwsearch.search.engine.bundle import export_trial
    from hwsearch.search.engine.rundir import RunDir

    res = export_trial(RunDir.open(_run_path(run)), trial=trial, out=out)
    print(f"exported trial {res.trial_id} to {res.out}: {', '.join(res.files)}")
    reported = "n/a" if res.reported_test_acc is None else f"{res.reported_test_acc:.4f}"
    print(f"test accuracy: reported {reported}, TorchScript {res.torchscript_test_acc:.4f}, "
          f"ONNX Runtime {res.onnx_test_acc:.4f}; max |logit difference| {res.max_logit_diff:.2e}")
    if res.torchscript_test_perplexity is not None:
        reported = "n/a" if res.reported_test_perplexity is None else f"{res.reported_test_perplexity:.4f}"
        print(f"test perplexity: reported {reported}, TorchScript {res.torchscript_test_perplexity:.4f}, "
              f"ONNX Runtime {res.onnx_test_perplexity:.4f}")


# ---- supernet: Once-for-All -------------------------------------------------------------------
supernet_app = typer.Typer(help="Once-for-All supernets: train once, then measure and extract sub-networks.",
                           no_args_is_help=True)
app.add_typer(supernet_app, name="supernet")

_SPACE_OPTIONS_HELP = "Space settings: 'compact' (sized for 8x8 digits), 'default' (the space's own), or a JSON object."


def _space_options(space: str, options: str) -> dict:
    from hwsearch.errors import ConfigError
    from hwsearch.spaces.supernet import COMPACT

    if options == "default":
        return {}
    if options == "compact":
        return dict(COMPACT.get(space, {}))
    try:
        value = json.loads(options)
    except ValueError:
        raise ConfigError(f"--options {options!r} must be compact, default or a JSON object") from None
    if not isinstance(value, dict):
        raise ConfigError(f"--options must be a JSON object, got {options!r}")
    return value


def _load_supernet(space: str, data: str, schedule: str, seed: int, options: str, progress: bool = True):
    from hwsearch.spaces.supernet import load_or_train

    return load_or_train(space, data, schedule, seed, space_kwargs=_space_options(space, options), progress=progress)


def _pick_choice(cached, reference: str | None, choice: str | None) -> dict:
    from hwsearch.errors import ConfigError

    if choice:
        try:
            return cached.space.validate(json.loads(choice))
        except ValueError as e:
            raise ConfigError(f"--choice is not valid JSON or not a choice of the space: {e}") from None
    return cached.space.reference(reference or "largest")


@supernet_app.command("train")
def supernet_train(
    space: str = typer.Option("ofa-mbv3", help="Space name (ofa-mbv3 or vit)."),
    data: str = typer.Option("digits", help="Data source."),
    schedule: str = typer.Option("fast", help="Progressive-shrinking schedule: fast, default or tiny."),
    seed: int = typer.Option(0, help="Training seed (part of the cache key)."),
    options: str = typer.Option("compact", help=_SPACE_OPTIONS_HELP),
) -> None:
    """Train (or load from the cache) the supernet and print the largest and smallest sub-networks' accuracy."""
    from hwsearch.spaces.supernet import subnet_accuracy

    cached = _load_supernet(space, data, schedule, seed, options)
    how = "trained" if cached.trained_now else "loaded from cache"
    print(f"supernet {space} on {data} ({schedule}, seed {seed}) {how}: {cached.path}")
    for p in cached.log.phases:
        print(f"  phase {p.phase:<6} {p.epochs} epochs  {p.seconds:7.1f} s  loss {p.loss:.3f}")
    for ref in ("largest", "smallest"):
        acc = subnet_accuracy(cached.supernet, cached.data, cached.space.reference(ref), "val")
        print(f"  {ref:<8} val accuracy {acc:.4f}")


@supernet_app.command("eval")
def supernet_eval(
    space: str = typer.Option("ofa-mbv3", help="Space name."),
    data: str = typer.Option("digits", help="Data source."),
    schedule: str = typer.Option("fast", help="Schedule of the cached supernet."),
    seed: int = typer.Option(0, help="Training seed of the cached supernet."),
    options: str = typer.Option("compact", help=_SPACE_OPTIONS_HELP),
    reference: str | None = typer.Option(None, help="A named reference choice (default: largest)."),
    choice: str | None = typer.Option(None, help="A choice as JSON (see `hwsearch spaces sample --format json`)."),
) -> None:
    """Accuracy of one sub-network measured inside the supernet (BatchNorm recalibrated)."""
    from hwsearch.spaces.supernet import subnet_accuracy

    cached = _load_supernet(space, data, schedule, seed, options)
    c = _pick_choice(cached, reference, choice)
    net = cached.space.to_netspec(c)
    val = subnet_accuracy(cached.supernet, cached.data, c, "val")
    test = subnet_accuracy(cached.supernet, cached.data, c, "test")
    _emit_json({"choice": c, "val_acc": val, "test_acc": test, "macs": net.macs, "params": net.params})


@supernet_app.command("extract")
def supernet_extract(
    out: str = typer.Option(..., help="Folder for state_dict.pt, choice.json and netspec.json."),
    space: str = typer.Option("ofa-mbv3", help="Space name."),
    data: str = typer.Option("digits", help="Data source."),
    schedule: str = typer.Option("fast", help="Schedule of the cached supernet."),
    seed: int = typer.Option(0, help="Training seed of the cached supernet."),
    options: str = typer.Option("compact", help=_SPACE_OPTIONS_HELP),
    reference: str | None = typer.Option(None, help="A named reference choice (default: largest)."),
    choice: str | None = typer.Option(None, help="A choice as JSON."),
) -> None:
    """Write a sub-network with inherited weights: reload it with space.build(choice).load_state_dict(...)."""
    import io
    from pathlib import Path

    import torch

    from hwsearch.io import atomic_write_bytes, atomic_write_json
    from hwsearch.spaces.supernet import extract_subnet

    cached = _load_supernet(space, data, schedule, seed, options)
    c = _pick_choice(cached, reference, choice)
    model = extract_subnet(cached.supernet, cached.data, c)
    folder = Path(out)
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    atomic_write_bytes(folder / "state_dict.pt", buf.getvalue())
    atomic_write_json(folder / "choice.json", {"space": space, "options": dict(cached.space_options), "choice": c})
    cached.space.to_netspec(c).to_json(str(folder / "netspec.json"))
    print(f"wrote {folder}/state_dict.pt, choice.json, netspec.json")


if __name__ == "__main__":
    main()
