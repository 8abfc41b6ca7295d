"""Compress, fine-tune, export and reload: does the exported model keep its accuracy and its NetSpec?

For a reference network of the ``ofa-mbv3`` and ``vit`` spaces trained on digits (32x32), applies an
AMC/HAQ-style mixed policy (every coupled group at half width, 2:4 sparsity on pointwise convs, 4-bit
weights and 8-bit activations; for the ViT half the heads, half the MLP width and a token schedule
keeping half the tokens after the first block), fine-tunes it, writes ``policy.json`` +
``choice.json`` + ``state_dict.pt`` + ``model.onnx``, and reloads the export in a fresh Python
process. Reports test accuracy at each step, the reloaded accuracy and whether its parameter count and
MACs equal its NetSpec, onnxruntime's accuracy, and CPU latency (median of repeated runs, 1 thread)
of the dense model, of the structurally pruned float model and of the fake-quantized model, beside
the MAC ratio (a MAC ratio is not a speed-up).

    python -m benchmarks.compress_finetune [--epochs 15] [--ft-epochs 3] [--cases ofa-mbv3,vit]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from benchmarks.report import write_section
from hwsearch import spaces
from hwsearch.compress import (
    LayerPolicy,
    Policy,
    apply_policy,
    compressed_netspec,
    export_onnx,
    fine_tune,
    prunable_layers,
    token_schedule,
)
from hwsearch.compress.finetune import FINE_TUNE_LR, fine_tune_recipe
from hwsearch.data import load_data
from hwsearch.estimators.counters import count_params, trace_netspec
from hwsearch.train import Recipe, evaluate, train_and_evaluate

CASES = {"ofa-mbv3": ("mbv3-like", {"resolutions": [32]}), "vit": ("middle", {"resolution": 32})}

RELOAD = r"""
import json, sys, torch
from hwsearch import spaces
from hwsearch.compress import Policy, compressed_netspec, nonzero_params, rebuild
from hwsearch.compress.finetune import FINE_TUNE_LR, fine_tune_recipe
from hwsearch.data import load_data
from hwsearch.estimators.counters import count_params, count_macs
from hwsearch.train import evaluate
d = sys.argv[1]
meta = json.load(open(f"{d}/choice.json"))
sp = spaces.get(meta["space"], **meta["space_kwargs"])
shape = tuple(meta["input_shape"])
model = rebuild(sp.build(meta["choice"]), Policy.from_json(f"{d}/policy.json"), shape,
                torch.load(f"{d}/state_dict.pt", weights_only=True)).eval()
data = load_data("digits", seed=0).at_resolution(shape[1])
net = compressed_netspec(model, shape)
print(json.dumps({"test_acc": evaluate(model, data.x_test, data.y_test), "params": count_params(model),
                  "net_params": net.params, "macs": count_macs(model, shape), "net_macs": net.macs,
                  "nonzero": nonzero_params(model), "net_nonzero": net.nonzero_params}))
"""


def policy_for(layers, space: str) -> Policy:
    """The benchmark's mixed policy (see the module docstring)."""
    out = {}
    first, last = layers[0].name, layers[-1].name
    blocks = sum(1 for layer in layers if layer.unit == "heads")
    for layer in layers:
        keep = 0.5 if layer.leader else 1.0
        if layer.unit == "heads" and int(layer.name.split(".")[1]) % 2 == 0:
            keep = 1.0  # half the blocks lose half their heads
        pointwise = layer.kind == "conv" and layer.spec.r == 1 and "nm" in layer.patterns
        edge = layer.name in (first, last)
        out[layer.name] = LayerPolicy(
            keep=keep if layer.group is not None else 1.0,
            pattern="nm" if pointwise and not edge else "dense", nm=(2, 4) if pointwise and not edge else None,
            w_bits=8 if edge else (4 if space == "ofa-mbv3" else 6), a_bits=8,
        )
    tokens = token_schedule(blocks, 0.5, exempt=1) if blocks > 1 else ()
    return Policy(out, tokens=tokens, w_clip="mse", a_clip="mse")


def latency_ms(model: torch.nn.Module, x: torch.Tensor, repeats: int) -> float:
    """Median wall time of one forward pass, in milliseconds."""
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(repeats):
            t = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def run_case(space_name: str, epochs: int, ft_epochs: int, repeats: int, out_dir: Path,
             ft_lr: float = FINE_TUNE_LR) -> dict:
    """Train, compress, fine-tune, export and reload one network; the measured figures."""
    ref, kw = CASES[space_name]
    data = load_data("digits", seed=0)
    space_kwargs = {"in_channels": data.channels, "num_classes": data.num_classes, **kw}
    sp = spaces.get(space_name, **space_kwargs)
    choice = sp.reference(ref)
    shape = sp.input_shape(choice)
    data = data.at_resolution(shape[1])
    torch.manual_seed(0)
    model = sp.build(choice)
    base = train_and_evaluate(model, data, epochs=epochs, seed=0, recipe=Recipe(epochs=epochs, threads=1))
    model.eval()
    layers = prunable_layers(model, shape)
    policy = policy_for(layers, space_name)
    calib = data.x_train[:256]
    small = apply_policy(model, policy, shape, calib=calib).eval()
    before_ft = evaluate(small, data.x_test, data.y_test)
    ft = fine_tune(small, data, epochs=ft_epochs, seed=0, recipe=fine_tune_recipe(ft_epochs, lr=ft_lr))
    small.eval()
    dense_net, net = trace_netspec(model, shape), compressed_netspec(small, shape)

    export = out_dir / space_name
    export.mkdir(parents=True, exist_ok=True)
    policy.to_json(str(export / "policy.json"))
    (export / "choice.json").write_text(json.dumps({"space": space_name, "space_kwargs": space_kwargs,
                                                    "choice": choice, "input_shape": list(shape)}))
    torch.save(small.state_dict(), export / "state_dict.pt")
    onnx_path = export_onnx(small, shape, export / "model.onnx")
    reload = subprocess.run([sys.executable, "-c", RELOAD, str(export)], capture_output=True, text=True)
    if reload.returncode:
        raise RuntimeError(f"reloading the export failed:\n{reload.stderr[-3000:]}")
    reloaded = json.loads(reload.stdout.strip().splitlines()[-1])

    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"input": data.x_test.numpy()})[0]
    onnx_acc = float((torch.from_numpy(logits).argmax(1) == data.y_test).float().mean())

    shapes_only = Policy({n: LayerPolicy(keep=lp.keep) for n, lp in policy.layers.items()}, tokens=policy.tokens)
    pruned_float = apply_policy(model, shapes_only, shape).eval()
    x = data.x_test[:1]
    return {
        "space": space_name, "choice": ref, "base_acc": base.test_acc, "before_ft": before_ft,
        "after_ft": ft.test_acc, "reloaded": reloaded, "onnx_acc": onnx_acc,
        "dense_macs": dense_net.macs, "macs": net.macs, "dense_params": count_params(model),
        "params": net.params, "nonzero": net.nonzero_params, "avg_w_bits": net.avg_w_bits,
        "weight_bytes": net.weight_bytes, "dense_weight_bytes": dense_net.weight_bytes,
        "lat_dense": latency_ms(model, x, repeats), "lat_pruned": latency_ms(pruned_float, x, repeats),
        "lat_fakequant": latency_ms(small, x, repeats), "ft_time_s": ft.train_time_s, "ft_lr": ft_lr,
        "ft_epochs": ft_epochs,
    }


def render(rows: list[dict], epochs: int, ft_epochs: int, ft_lr: float) -> str:
    """The BENCHMARKS.md section body."""
    lines = [
        "## Compression: fine-tune, export, reload",
        "",
        f"Digits at 32x32, base network trained {epochs} epochs, the compressed one fine-tuned with `fine_tune` "
        "(epochs and learning rate in the table). Policy: every coupled group at half width (rounded to multiples of 8), "
        "2:4 sparsity on pointwise convs, 4-bit (CNN) / 6-bit (ViT) weights, 8-bit first/last layers, 8-bit "
        "activations with MSE clipping; ViT: half the heads in every other block, tokens halved after block 1. "
        "Test accuracy in %; the reload runs in a fresh process from `policy.json` + `choice.json` + "
        "`state_dict.pt`.",
        "",
        "| network | base | compressed | fine-tune | fine-tuned | reloaded | ONNX (ort) | params == NetSpec | "
        "MACs == NetSpec |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        rl = r["reloaded"]
        lines.append(
            f"| {r['space']} {r['choice']} | {100 * r['base_acc']:.1f} | {100 * r['before_ft']:.1f} | "
            f"{r.get('ft_epochs', ft_epochs)} ep, lr {r.get('ft_lr', ft_lr):g} | {100 * r['after_ft']:.1f} | {100 * rl['test_acc']:.1f} | {100 * r['onnx_acc']:.1f} | "
            f"{rl['params'] == rl['net_params'] and rl['nonzero'] == rl['net_nonzero']} ({rl['params']:,}) | "
            f"{rl['macs'] == rl['net_macs']} ({rl['macs']:,}) |"
        )
    lines += [
        "",
        "| network | MACs dense -> compressed | params dense -> non-zero | weight bytes dense -> compressed | "
        "CPU latency dense / pruned float / fake-quant (ms, batch 1, 1 thread) | MAC ratio vs pruned-float speed-up |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['space']} | {r['dense_macs']:,} -> {r['macs']:,} | {r['dense_params']:,} -> {r['nonzero']:,} | "
            f"{r['dense_weight_bytes']:,.0f} -> {r['weight_bytes']:,.0f} | "
            f"{r['lat_dense']:.2f} / {r['lat_pruned']:.2f} / {r['lat_fakequant']:.2f} | "
            f"{r['dense_macs'] / r['macs']:.2f}x vs {r['lat_dense'] / r['lat_pruned']:.2f}x |"
        )
    lines += [
        "",
        "Fake quantization simulates the bit-widths in float, so it is slower than the float model; "
        "the hardware model and lookup tables cost the compressed NetSpec instead.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the cases and write the section."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--ft-epochs", type=int, default=3)
    p.add_argument("--ft-lr", type=float, default=FINE_TUNE_LR)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--cases", default="ofa-mbv3,vit")
    p.add_argument("--no-write", action="store_true", help="print the section instead of writing BENCHMARKS.md")
    p.add_argument("--rows", type=Path, default=None,
                   help="append each case's figures to this JSON-lines file; with --from-rows, render it only")
    p.add_argument("--from-rows", action="store_true", help="write the section from --rows without running")
    p.add_argument("--note", default="", help="a paragraph reading the figures, appended to the section")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    rows = []
    if args.from_rows:
        rows = [json.loads(line) for line in args.rows.read_text().splitlines() if line.strip()]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            for case in args.cases.split(","):
                row = run_case(case, args.epochs, args.ft_epochs, args.repeats, Path(tmp), args.ft_lr)
                print(json.dumps(row), flush=True)
                if args.rows is not None:
                    with open(args.rows, "a") as f:
                        f.write(json.dumps(row) + "\n")
                rows.append(row)
    body = render(rows, args.epochs, args.ft_epochs, args.ft_lr) + ("\n\n" + args.note if args.note else "")
    if args.no_write:
        print(body)
    else:
        command = (f"python -m benchmarks.compress_finetune --epochs {args.epochs} --ft-epochs {args.ft_epochs} "
                   f"--ft-lr {args.ft_lr:g}")
        write_section("compress_finetune", body, command)


if __name__ == "__main__":
    main()
