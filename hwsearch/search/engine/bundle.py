"""Export one trial of a run as a bundle that reloads without hwsearch's search code.

The network is rebuilt by the trial's evaluator from what the trial saved (choice, and later a
policy), loaded with its trained weights (``weights_only=True``), and written as ``state_dict.pt``,
``model.torchscript.pt`` and ``model.onnx`` beside ``choice.json``, ``netspec.json``, ``report.json``
(every metric the trial reported) and whichever of ``policy.json`` / ``hardware.json`` the trial
kept. The export then checks itself: TorchScript and ONNX Runtime accuracies on the test split and
their largest logit difference are added to ``report.json`` under ``export_check``; for a language
model (labels at every position) their test perplexities too, beside the one the trial reported.
"""

from __future__ import annotations

import io
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hwsearch.compress.export import onnx_bytes
from hwsearch.errors import RunError
from hwsearch.io import atomic_write_bytes, atomic_write_json
from hwsearch.search.engine import evaluators
from hwsearch.search.engine.rundir import RunDir, best_trial, row_document
from hwsearch.spaces.base import input_resolution

OPTIONAL_DOCUMENTS = ("policy", "hardware", "training")


@dataclass(frozen=True)
class ExportResult:
    """Where the bundle went and how well its two exported forms reproduce the trial."""

    out: Path
    trial_id: str
    files: tuple[str, ...]
    reported_test_acc: float | None
    torchscript_test_acc: float
    onnx_test_acc: float
    max_logit_diff: float
    # a language model's only (None otherwise)
    reported_test_perplexity: float | None = None
    torchscript_test_perplexity: float | None = None
    onnx_test_perplexity: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {"out": str(self.out), "trial_id": self.trial_id, "files": list(self.files),
                "reported_test_acc": self.reported_test_acc, "torchscript_test_acc": self.torchscript_test_acc,
                "onnx_test_acc": self.onnx_test_acc, "max_logit_diff": self.max_logit_diff,
                "reported_test_perplexity": self.reported_test_perplexity,
                "torchscript_test_perplexity": self.torchscript_test_perplexity,
                "onnx_test_perplexity": self.onnx_test_perplexity}


def find_trial(run: RunDir, trial: str = "best") -> dict[str, Any]:
    """The table row of ``trial`` (a trial id, or ``best``: feasible and best on the primary objective)."""
    config = run.config()
    df = run.trials()
    if trial == "best":
        row = best_trial(df, config)
        if row is None:
            raise RunError(f"run {run.name} has no finished feasible trial yet; nothing to export")
        return row
    hits = df[df["trial_id"] == trial] if not df.empty else df
    if hits.empty:
        known = ", ".join(df["trial_id"].astype(str).tolist()[:8]) if not df.empty else "none"
        raise RunError(f"run {run.name} has no finished trial {trial!r}; finished: {known}")
    row = row_document(hits.iloc[0])
    if row.get("status") != "ok":
        raise RunError(f"trial {trial} failed ({row.get('error')}); it has no model to export")
    return row


def export_trial(run: RunDir, trial: str = "best", out: str | Path = "export", opset: int = 17) -> ExportResult:
    """Write the bundle of ``trial`` into ``out`` and check TorchScript and ONNX against each other."""
    row = find_trial(run, trial)
    config = run.config()
    saved = evaluators.SavedTrial(run.path / str(row["artifacts"]))
    data = evaluators.cached_data(config.data.source, config.data.seed)
    space = evaluators.build_space(config, data)
    model = evaluators.get(config.evaluation.evaluator).rebuild(saved, space)
    net = saved.netspec
    test = data.at_resolution(input_resolution(net.input_shape))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)

    atomic_write_bytes(out / "state_dict.pt", _torch_bytes(model.state_dict()))
    example = test.x_test[:2].contiguous()
    with torch.no_grad():
        traced = torch.jit.trace(model, example, check_trace=False)
    buf = io.BytesIO()
    torch.jit.save(traced, buf)
    atomic_write_bytes(out / "model.torchscript.pt", buf.getvalue())
    atomic_write_bytes(out / "model.onnx", onnx_bytes(model, example, opset))
    atomic_write_json(out / "choice.json", saved.choice)
    atomic_write_json(out / "netspec.json", net.to_dict())
    files = ["state_dict.pt", "model.torchscript.pt", "model.onnx", "choice.json", "netspec.json"]
    for name in OPTIONAL_DOCUMENTS:
        src = saved.path / f"{name}.json"
        if src.is_file():
            shutil.copyfile(src, out / f"{name}.json")
            files.append(f"{name}.json")

    ts_logits = _torchscript_logits(out / "model.torchscript.pt", test.x_test)
    ort_logits = _onnx_logits(out / "model.onnx", test.x_test)
    y = test.y_test.numpy()
    sequence = y.ndim == 2
    result = ExportResult(
        out=out, trial_id=str(row["trial_id"]), files=tuple(files + ["report.json"]),
        reported_test_acc=row.get("test_acc"),
        torchscript_test_acc=_accuracy(ts_logits, y),
        onnx_test_acc=_accuracy(ort_logits, y),
        max_logit_diff=float(np.abs(ts_logits - ort_logits).max()),
        reported_test_perplexity=row.get("test_perplexity") if sequence else None,
        torchscript_test_perplexity=_perplexity(ts_logits, y) if sequence else None,
        onnx_test_perplexity=_perplexity(ort_logits, y) if sequence else None,
    )
    report = {k: v for k, v in saved.report.items()}
    report.update(trial_id=result.trial_id, run=run.name, space=config.space.name,
                  export_check={k: v for k, v in result.to_dict().items() if k not in ("out", "files")})
    atomic_write_json(out / "report.json", report)
    return result


def _accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    """Top-1 accuracy, every position of a sequence counting once (as `hwsearch.train.evaluate`)."""
    return float((logits.reshape(-1, logits.shape[-1]).argmax(1) == y.reshape(-1)).mean())


def _perplexity(logits: np.ndarray, y: np.ndarray) -> float:
    """``exp`` of the mean next-token cross-entropy, in float64 (as `hwsearch.lm_eval.lm_score`)."""
    z = logits.reshape(-1, logits.shape[-1]).astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    nll = np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(z)), y.reshape(-1)]
    return float(np.exp(nll.mean()))


def _torch_bytes(obj: Any) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _torchscript_logits(path: Path, x: torch.Tensor) -> np.ndarray:
    module = torch.jit.load(str(path), map_location="cpu")
    with torch.no_grad():
        return torch.cat([module(x[i:i + 256]) for i in range(0, len(x), 256)]).numpy()


def _onnx_logits(path: Path, x: torch.Tensor) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(None, {"input": x[i:i + 256].numpy()})[0] for i in range(0, len(x), 256)])


__all__ = ["ExportResult", "export_trial", "find_trial"]
