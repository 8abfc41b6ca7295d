"""Train a built network briefly and measure its top-1 accuracy: the default evaluation of a candidate.

`Recipe` holds every training setting (the experiment config embeds it as ``evaluation.recipe``);
`train_and_evaluate` trains a module on a `hwsearch.data.Dataset` and returns a `TrainResult`.
On CPU a run is bit-for-bit repeatable under a seed: the seed drives initialisation-independent
randomness (shuffling, augmentation: the data set's own, e.g. CIFAR-10's crops and flips, else the
recipe's random shift), deterministic algorithms are switched on for the duration,
and the thread count is fixed and recorded (float sums depend on how work is split over threads).
A NaN or infinite loss raises `TrainingDiverged`, which the search engine records as a failed trial.

A network may also predict a class at every position of its input, as a language model does: logits
(N, T, classes) against labels (N, T) (a `hwsearch.datasets.tinyshakespeare.TextDataset`). Loss,
distillation and accuracy then count every position as one prediction; that is the whole of what
next-token training needs, so it lives here rather than in a second training loop. Integer inputs
(token ids) are never shifted by the recipe's augmentation. Validation loss and perplexity of such a
model come from `hwsearch.lm_eval`.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from hwsearch.data import Dataset, batches
from hwsearch.errors import ConfigError, HwsearchError
from hwsearch.recipe import RECIPES, Recipe, named_recipe


class TrainingDiverged(HwsearchError):
    """The training loss became NaN or infinite."""


@dataclass(frozen=True)
class EpochLog:
    """What one epoch left behind."""

    epoch: int
    loss: float
    val_acc: float
    lr: float

    def to_dict(self) -> dict[str, float]:
        """JSON-able dict."""
        return {"epoch": self.epoch, "loss": self.loss, "val_acc": self.val_acc, "lr": self.lr}


@dataclass(frozen=True)
class TrainResult:
    """Accuracies (in [0, 1]) and the facts needed to repeat the run."""

    val_acc: float
    test_acc: float
    train_time_s: float
    epochs: int
    final_loss: float
    seed: int
    threads: int
    device: str
    resolution: int
    history: tuple[EpochLog, ...] = field(default=())
    best_epoch: int = 0  # the epoch whose weights the model kept (the last one unless stopped early)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (history as a list of dicts)."""
        return {
            "val_acc": self.val_acc, "test_acc": self.test_acc, "train_time_s": self.train_time_s,
            "epochs": self.epochs, "final_loss": self.final_loss, "seed": self.seed,
            "threads": self.threads, "device": self.device, "resolution": self.resolution,
            "history": [h.to_dict() for h in self.history], "best_epoch": self.best_epoch,
        }


def pick_device(name: str = "auto") -> torch.device:
    """``cuda`` when asked for or (with ``auto``) when present, else ``cpu``."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("recipe.device is 'cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


@contextlib.contextmanager
def deterministic(seed: int, threads: int | None) -> Iterator[int]:
    """Seed torch, switch on deterministic algorithms and fix the thread count; restore them after."""
    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_warn = torch.is_deterministic_algorithms_warn_only_enabled()
    if threads is not None:
        torch.set_num_threads(threads)
    # warn_only: a CUDA op without a deterministic kernel should slow nothing down nor fail a trial.
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(seed)
    try:
        yield torch.get_num_threads()
    finally:
        torch.use_deterministic_algorithms(old_det, warn_only=old_warn)
        torch.set_num_threads(old_threads)


@torch.no_grad()
def scores(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> tuple[float, float]:
    """Top-1 accuracy of ``model`` on images ``x`` with labels ``y`` and its mean softmax probability of the true label."""
    if len(y) == 0:
        return 0.0, 0.0
    was_training = model.training
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    correct, confidence = 0, 0.0
    for xb, yb in batches(x, y, batch_size):
        logits, yb = per_position(model(xb.to(device)).cpu(), yb)
        correct += int((logits.argmax(dim=1) == yb).sum())
        confidence += float(logits.softmax(dim=1).gather(1, yb.view(-1, 1)).sum())
    model.train(was_training)
    return correct / y.numel(), confidence / y.numel()


def per_position(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits (M, classes) and labels (M,): a sequence's (N, T, classes) and (N, T) become N*T predictions."""
    if logits.dim() == 3:
        return logits.reshape(-1, logits.shape[-1]), y.reshape(-1)
    return logits, y


def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512) -> float:
    """Top-1 accuracy of ``model`` on images ``x`` with labels ``y``, in [0, 1]."""
    return scores(model, x, y, batch_size)[0]


def _shift(x: torch.Tensor, max_shift: float, gen: torch.Generator) -> torch.Tensor:
    """Translate each image by up to ``max_shift`` of its size, repeating the border pixels."""
    n = x.shape[0]
    t = (torch.rand(n, 2, generator=gen) * 2 - 1) * (2 * max_shift)  # grid units span 2 per image
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = 1
    theta[:, 1, 1] = 1
    theta[:, :, 2] = t
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid.to(x.device), mode="bilinear", padding_mode="border", align_corners=False)


def augment_batch(xb: torch.Tensor, data: Dataset, recipe: Recipe, gen: torch.Generator) -> torch.Tensor:
    """A training batch augmented by the data set's own augmentation if it has one, else by the recipe's shift."""
    if not xb.is_floating_point():
        return xb  # token ids: there is nothing to translate
    if data.augment is not None:
        return data.augment(xb, gen)
    if recipe.augment_shift > 0:
        return _shift(xb, recipe.augment_shift, gen)
    return xb


def _lr_factor(recipe: Recipe, steps_per_epoch: int, epochs: int) -> Callable[[int], float]:
    total = max(1, steps_per_epoch * epochs)
    warm = int(recipe.warmup_epochs * steps_per_epoch)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if recipe.schedule == "constant":
            return 1.0
        progress = (step - warm) / max(1, total - warm)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def train_and_evaluate(
    model: torch.nn.Module,
    data: Dataset,
    epochs: int | None = None,
    seed: int = 0,
    recipe: Recipe | None = None,
    resolution: int | None = None,
    progress: bool = False,
    on_epoch: Callable[[EpochLog], None] | None = None,
    teacher: torch.nn.Module | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``data`` (at ``resolution``) and report val/test top-1 accuracy.

    With ``recipe.patience`` training stops early and the best validation epoch's weights are kept;
    with a ``teacher`` and ``recipe.kd_ratio > 0`` the loss adds distillation from its logits."""
    recipe = recipe or Recipe()
    epochs = recipe.epochs if epochs is None else int(epochs)
    if epochs < 0:
        raise ConfigError(f"epochs={epochs} must be >= 0")
    if resolution is not None:
        data = data.at_resolution(resolution)
    device = pick_device(recipe.device)
    with deterministic(seed, recipe.threads) as threads:
        model.to(device)
        params = [p for p in model.parameters() if p.requires_grad]
        if recipe.optimizer == "sgd":
            opt: torch.optim.Optimizer = torch.optim.SGD(
                params, lr=recipe.lr, momentum=recipe.momentum, weight_decay=recipe.weight_decay, nesterov=True)
        else:
            # fused: one kernel for all tensors; the per-tensor loop cost more than small layers do
            opt = torch.optim.AdamW(params, lr=recipe.lr, weight_decay=recipe.weight_decay, fused=True)
        steps = math.ceil(len(data.y_train) / recipe.batch_size)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_factor(recipe, steps, epochs))
        gen = torch.Generator().manual_seed(seed)
        history: list[EpochLog] = []
        loss_value = float("nan")
        distil = teacher is not None and recipe.kd_ratio > 0
        if distil:
            teacher.to(device).eval()
        best: tuple[float, int, dict[str, torch.Tensor]] | None = None  # (val, epoch, weights)
        bar = _progress_bar(epochs) if progress else None
        start = time.perf_counter()
        for epoch in range(epochs):
            model.train()
            total, count = 0.0, 0
            shuffle_seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
            for xb, yb in batches(data.x_train, data.y_train, recipe.batch_size, shuffle=True, seed=shuffle_seed):
                xb = augment_batch(xb, data, recipe, gen)
                xb, yb = xb.to(device), yb.to(device)
                logits, targets = per_position(model(xb), yb)
                loss = F.cross_entropy(logits, targets, label_smoothing=recipe.label_smoothing)
                if distil:
                    with torch.no_grad():
                        target = per_position(teacher(xb), yb)[0]
                    loss = loss + recipe.kd_ratio * distillation_loss(logits, target, recipe.kd_temperature)
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"training loss became {float(loss.detach())} at epoch {epoch + 1}, step {count // recipe.batch_size + 1}; "
                        f"lower recipe.lr (now {recipe.lr}) or check the data"
                    )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if recipe.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip)
                opt.step()
                sched.step()
                total += float(loss.detach()) * len(yb)
                count += len(yb)
            loss_value = total / max(1, count)
            val = evaluate(model, data.x_val, data.y_val, recipe.eval_batch_size)
            log = EpochLog(epoch + 1, loss_value, val, opt.param_groups[0]["lr"])
            history.append(log)
            if bar is not None:
                bar.set_postfix(loss=f"{loss_value:.3f}", val=f"{val:.3f}")
                bar.update(1)
            if on_epoch is not None:
                on_epoch(log)
            if recipe.patience is not None:
                if best is None or val > best[0]:
                    best = (val, epoch, copy.deepcopy(model.state_dict()))
                elif epoch - best[1] >= recipe.patience:
                    break
        train_time = time.perf_counter() - start
        if bar is not None:
            bar.close()
        if best is not None:
            model.load_state_dict(best[2])
            val_acc = best[0]
        else:
            val_acc = history[-1].val_acc if history else evaluate(model, data.x_val, data.y_val,
                                                                   recipe.eval_batch_size)
        test_acc = evaluate(model, data.x_test, data.y_test, recipe.eval_batch_size)
    return TrainResult(
        val_acc=val_acc, test_acc=test_acc, train_time_s=train_time, epochs=len(history), final_loss=loss_value,
        seed=seed, threads=threads, device=str(device), resolution=data.resolution, history=tuple(history),
        best_epoch=best[1] + 1 if best is not None else len(history),
    )


def distillation_loss(logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Hinton's distillation: KL from the teacher's softened distribution, scaled by T^2 to keep gradients."""
    t = temperature
    return F.kl_div(F.log_softmax(logits / t, dim=1), F.log_softmax(teacher_logits / t, dim=1),
                    reduction="batchmean", log_target=True) * t * t


def _progress_bar(total: int) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="train", unit="epoch", leave=False)


__all__ = ["RECIPES", "EpochLog", "Recipe", "TrainResult", "TrainingDiverged", "augment_batch", "deterministic",
           "distillation_loss", "evaluate", "named_recipe", "per_position", "pick_device", "train_and_evaluate"]
