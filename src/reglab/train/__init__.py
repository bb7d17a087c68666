"""The training loop and what surrounds it: seeding, early stopping with restore-best, LR schedules,
gradient clipping, a divergence guard, per-epoch metrics, progress, and the run folder.

One step is: loss → backward → clip → ``optimizer.step()``. The regularizer is attached to the
optimizer (coupled gradients and decoupled decay before the step, proximal maps after it), so the
loop itself never mentions the penalty.

A model's course through its epochs (divergence, metrics lines, best epoch, schedule, early
stopping) is one :class:`Tracker`, the same when ``reglab.train.batched`` trains it in a batch.
``reglab.train.threads`` holds the thread policy: never more compute threads than free cores.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from reglab.config import Config
from reglab.data import Splits, load_dataset, make_splits
from reglab.errors import UserError
from reglab.progress import Progress
from reglab.plots import learning_curve, weight_histogram
from reglab.runs import RunFolder
from reglab.tasks.base import Task
from reglab.train.task_choice import make_task
from reglab.train.threads import use_free_cores


class Diverged(Exception):
    """The loss became NaN or infinite; carries the global step where it happened."""

    def __init__(self, step: int, value: float):
        super().__init__(f"loss became {value} at step {step}")
        self.step = step


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={name} asked for, but CUDA is not available here; use device=auto or cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}'; use auto, cpu or cuda") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Experiment:
    """Everything one run needs, built from its config."""

    config: Config
    device: torch.device
    splits: Splits
    task: Task
    tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @property
    def model(self) -> nn.Module:
        return self.task.model

    @property
    def steps_per_epoch(self) -> int:
        n = len(self.tensors["train"][0])
        bs = self.config.train.batch_size or n
        return math.ceil(n / bs)


def prepare(config: Config) -> Experiment:
    """Load data, build the model, optimizer, regularizer and schedule; validate that they fit."""
    device = resolve_device(config.device)
    splits = make_splits(load_dataset(config.data), config.data)
    seed_everything(config.seed)
    task = make_task(config, splits, device)
    tensors = {
        name: (torch.as_tensor(x, dtype=torch.float32, device=device), task.targets(y).to(device))
        for name, (x, y) in (("train", splits.train), ("val", splits.val), ("test", splits.test))
    }
    exp = Experiment(config, device, splits, task, tensors)
    task.attach_regularizer(exp.steps_per_epoch)
    return exp


def weight_stats(model: nn.Module) -> dict[str, float]:
    """L2 norm of all weight matrices/filters, and the percentage of exact zeros per layer and in all."""
    stats: dict[str, float] = {}
    total_sq, zeros, count = 0.0, 0, 0
    for name, p in model.named_parameters():
        if p.dim() < 2:
            continue
        w = p.detach()
        total_sq += float(w.pow(2).sum())
        n_zero = int((w == 0).sum())
        stats[f"zeros/{name}"] = 100.0 * n_zero / w.numel()
        zeros += n_zero
        count += w.numel()
    stats["weight_l2"] = math.sqrt(total_sq)
    stats["zeros_total"] = 100.0 * zeros / max(count, 1)
    return stats


def evaluate_splits(exp: Experiment, names=("train", "val")) -> dict[str, float]:
    out: dict[str, float] = {}
    for name in names:
        for key, value in exp.task.evaluate(*exp.tensors[name]).items():
            out[f"{name}_{key}"] = value
    return add_gaps(out)


def add_gaps(out: dict[str, float]) -> dict[str, float]:
    """Add the generalization gaps: gap_loss = val − train loss, gap_acc = train − val accuracy."""
    if "train_loss" in out and "val_loss" in out:
        out["gap_loss"] = out["val_loss"] - out["train_loss"]
    if "train_acc" in out and "val_acc" in out:
        out["gap_acc"] = out["train_acc"] - out["val_acc"]
    return out


def train_epoch(exp: Experiment, generator: torch.Generator) -> Tensor:
    """One pass over the shuffled training set; returns the batch losses."""
    x, y = exp.tensors["train"]
    n = len(x)
    batch = exp.config.train.batch_size or n
    order = torch.randperm(n, generator=generator).to(exp.device)
    exp.model.train()
    losses = []
    for start in range(0, n, batch):
        idx = order[start : start + batch]
        losses.append(exp.task.train_step(x[idx], y[idx]))
    return torch.stack(losses)


def epoch_record(exp: Experiment, epoch: int, step: int, batch_loss: float,
                 split_metrics: dict[str, float]) -> dict[str, Any]:
    """An epoch's line of metrics.jsonl: the split metrics, then the model's penalty values, weight
    statistics and the task's own metrics. A non-finite validation loss raises :class:`Diverged`."""
    record = {"epoch": epoch, "step": step, "lr": exp.task.optimizer.param_groups[0]["lr"],
              "batch_loss": batch_loss, **split_metrics}
    if not math.isfinite(record["val_loss"]):
        raise Diverged(step, record["val_loss"])
    record.update(exp.task.penalty_values())
    record.update(weight_stats(exp.model))
    record.update(exp.task.epoch_metrics(exp.tensors))
    return record


def step_schedule(exp: Experiment, monitored: float) -> None:
    """Advance the LR schedule by one epoch (ReduceLROnPlateau sees the monitored value)."""
    scheduler = exp.task.scheduler
    if scheduler is not None:
        if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            scheduler.step(monitored)
        else:
            scheduler.step()


def is_better(value: float, best: float | None, monitor: str) -> bool:
    if best is None:
        return True
    return value < best if monitor == "val_loss" else value > best


@dataclass
class RunResult:
    """A run's folder (None when it failed before one was created) and its summary."""

    path: Path | None
    summary: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.summary.get("status") == "ok"

    @classmethod
    def failed(cls, exc: Exception) -> "RunResult":
        """The result of a run that raised before or while training (no folder when before)."""
        reason = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        return cls(None, {"status": "failed", "reason": reason})


@dataclass
class Tracker:
    """One model's course through its epochs, the same whether it trains alone or in a batch:
    divergence, its metrics.jsonl lines, the best epoch (its weights kept for restore-best), the LR
    schedule, early stopping and the task's own stop."""

    exp: Experiment
    folder: RunFolder | None
    on_epoch: Callable[[dict], None] | None = None
    history: list[dict] = field(default_factory=list)
    best_value: float | None = None
    best_state: dict | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    status: dict[str, Any] = field(default_factory=lambda: {"status": "ok"})

    def diverged(self, losses: Tensor, step: int) -> bool:
        """True (and the status says failed) when a batch loss of the epoch that ended at global
        step ``step`` is NaN or infinite."""
        finite = torch.isfinite(losses)
        if bool(finite.all()):
            return False
        bad = int((~finite).nonzero()[0])
        self.fail(Diverged(step - len(losses) + bad + 1, float(losses[bad])))
        return True

    def fail(self, exc: Diverged) -> None:
        self.status = {"status": "failed", "reason": f"diverged: {exc}", "step": exc.step,
                       "epoch": len(self.history) + 1}

    def end_epoch(self, epoch: int, step: int, batch_loss: float, split_metrics: dict[str, float]) -> bool:
        """Record the epoch (the model holds its weights); True when its training ends here."""
        cfg = self.exp.config.train
        try:
            record = epoch_record(self.exp, epoch, step, batch_loss, split_metrics)
        except Diverged as exc:
            self.fail(exc)
            return True
        self.history.append(record)
        if self.folder is not None:
            self.folder.log(record)
        if self.on_epoch is not None:
            self.on_epoch(record)
        monitored = record[cfg.monitor]
        if is_better(monitored, self.best_value, cfg.monitor):
            self.best_value, self.best_epoch, self.bad_epochs = monitored, epoch, 0
            self.best_state = copy.deepcopy(self.exp.model.state_dict()) if cfg.restore_best else None
        else:
            self.bad_epochs += 1
        step_schedule(self.exp, monitored)
        if cfg.early_stopping is not None and self.bad_epochs >= cfg.early_stopping:
            self.status["stopped_early"] = True
            return True
        stop_reason = self.exp.task.stop_reason
        if stop_reason is not None:
            self.status.update(stopped_early=True, stop_reason=stop_reason)
            return True
        return False

    def progress_info(self) -> str:
        """The progress bar's note on the last epoch recorded: its validation loss (and accuracy)."""
        record = self.history[-1]
        return (f"val_loss {record['val_loss']:.4g}"
                + (f" val_acc {record['val_acc']:.3f}" if "val_acc" in record else ""))

    def summary(self, seconds: float) -> dict[str, Any]:
        """Restore the best weights (when the run is ok) and summarize the run."""
        if self.status["status"] == "ok" and self.exp.config.train.restore_best and self.best_state is not None:
            self.exp.model.load_state_dict(self.best_state)
        return summarize(self.exp, self.folder, self.status, self.history, self.best_epoch, seconds)


def fit(exp: Experiment, folder: RunFolder | None, progress: bool | None = None,
        on_epoch: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Train to the end (or early stop / divergence) and return the summary."""
    cfg = exp.config
    generator = torch.Generator().manual_seed(cfg.seed)
    tracker = Tracker(exp, folder, on_epoch)
    step, started = 0, time.perf_counter()
    bar = Progress(progress, cfg.train.epochs, cfg.name)
    try:
        for epoch in range(1, cfg.train.epochs + 1):
            losses = train_epoch(exp, generator)
            step += len(losses)
            if tracker.diverged(losses, step):
                break
            ended = tracker.end_epoch(epoch, step, float(losses.mean()), evaluate_splits(exp))
            if tracker.history and tracker.history[-1]["epoch"] == epoch:
                bar.update(tracker.progress_info())
            if ended:
                break
    finally:
        bar.close()
    return tracker.summary(time.perf_counter() - started)


def summarize(exp: Experiment, folder: RunFolder | None, status: dict[str, Any], history: list[dict],
              best_epoch: int, seconds: float) -> dict[str, Any]:
    """The summary of a finished fit (its model already restored to the best epoch) and its plots."""
    cfg = exp.config
    summary: dict[str, Any] = {**status, "epochs_run": len(history), "best_epoch": best_epoch,
                               "seconds": seconds, "device": str(exp.device),
                               "n_params": sum(p.numel() for p in exp.model.parameters()),
                               **exp.splits.metadata()}
    if status["status"] == "ok":
        summary.update(evaluate_splits(exp, ("train", "val", "test")))
        summary.update(weight_stats(exp.model))
        summary.update(exp.task.penalty_values())
        summary.update(exp.task.final_metrics(exp.tensors))
    if folder is not None and history and cfg.train.plots:
        try:
            write_plots(exp, folder.path / "plots", history, summary)
        except Exception as exc:
            if status["status"] == "ok":
                raise
            # a failed run keeps its own reason: the weights that made it fail may not be plottable
            summary["plots"] = f"not drawn: {type(exc).__name__}: {exc}"
    return summary


def write_plots(exp: Experiment, plots: Path, history: list[dict], summary: dict[str, Any]) -> None:
    """The learning curve, the weight histogram and the task's own plots."""
    name = exp.config.name
    learning_curve(history, plots / "learning_curve.png", name)
    weights = {n: p.detach().cpu().numpy() for n, p in exp.model.named_parameters() if p.dim() >= 2}
    weight_histogram(weights, plots / "weights.png", name)
    exp.task.write_plots(plots, history, summary)


def run(config: Config, root: str | Path | None = None, progress: bool | None = None) -> RunResult:
    """Train one config and write its run folder. User errors surface before any folder exists.

    A config the batched engine takes alone exactly (``reglab.train.batched.unsupported_alone``
    says None: supervised linear and mlp models) trains there as a batch of K = 1, the code a
    sweep's group runs; the others (GAN, adversarial, batch normalization, convolutions, …) train
    with :func:`fit`."""
    from reglab.train.batched import train_alone, unsupported_alone  # batched builds on this module

    use_free_cores()
    exp = prepare(config)
    folder = RunFolder.create(config, exp.device, root)
    if unsupported_alone(exp) is None:
        return train_alone(exp, folder, progress)
    return fit_and_close(exp, folder, progress)


def fit_and_close(exp: Experiment, folder: RunFolder, progress: bool | None = None) -> RunResult:
    """Train ``exp`` with :func:`fit` and finish its run folder (failed, when training raises)."""
    try:
        summary = fit(exp, folder, progress)
    except BaseException as exc:
        folder.finish({"status": "failed", "reason": f"{type(exc).__name__}: {exc}"})
        raise
    return close(exp, folder, summary)


def close(exp: Experiment, folder: RunFolder, summary: dict[str, Any]) -> RunResult:
    """Finish a trained run's folder: its weights (when the run is ok and keeps them), its summary."""
    if summary["status"] == "ok" and exp.config.train.save_weights:
        folder.save_weights(exp.model)
    summary["path"] = str(folder.path)
    folder.finish(summary)
    return RunResult(folder.path, summary)


def run_or_fail(config: Config, root: str | Path | None = None, progress: bool | None = None) -> RunResult:
    """:func:`run`, with an exception turned into a failed result: one run's failure is its own."""
    try:
        return run(config, root, progress)
    except Exception as exc:
        return RunResult.failed(exc)
