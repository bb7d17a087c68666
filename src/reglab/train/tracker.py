"""A run's state through its epochs and its end, the same for every stack it trains in
(:class:`Tracker`): divergence, its metrics.jsonl lines, the best epoch (its weights kept for
restore-best), the LR schedule, early stopping, the task's own stop, its status, and at the end its
summary, plots, weights, run folder and result (:class:`reglab.runs.Run`). A :class:`Member` is
one row of a stack: a run's tracker and its shuffle."""

from __future__ import annotations

import copy
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from reglab.runs import Run, RunFolder
from reglab.train.experiment import Experiment, evaluate_splits, weight_stats


class Diverged(Exception):
    """The loss became NaN or infinite; carries the global step where it happened."""

    def __init__(self, step: int, value: float):
        super().__init__(f"loss became {value} at step {step}")
        self.step = step


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
class Tracker:
    """One run's state, the one object its course hands on: its experiment and run folder, its
    metrics lines, the best epoch (its weights kept for restore-best), the LR schedule, early
    stopping, the task's own stop, its status and, once it has ended, its result."""

    exp: Experiment
    folder: RunFolder | None
    on_epoch: Callable[[dict], None] | None = None
    history: list[dict] = field(default_factory=list)
    best_value: float | None = None
    best_state: dict | None = None
    best_epoch: int = 0
    bad_epochs: int = 0
    status: dict[str, Any] = field(default_factory=lambda: {"status": "ok"})
    result: Run | None = None

    def diverged(self, losses: Tensor, step: int) -> bool:
        """True (and the status says failed) when a batch loss of the epoch that ended at global
        step ``step`` is NaN or infinite."""
        finite = torch.isfinite(losses)
        if bool(finite.all()):
            return False
        bad = int((~finite).nonzero()[0])
        self.diverge(Diverged(step - len(losses) + bad + 1, float(losses[bad])))
        return True

    def diverge(self, exc: Diverged) -> None:
        self.status = {"status": "failed", "reason": f"diverged: {exc}", "step": exc.step,
                       "epoch": len(self.history) + 1}

    def end_epoch(self, epoch: int, step: int, losses: Tensor, split_metrics: dict[str, float]) -> bool:
        """Record the epoch (the model holds its weights; ``losses`` its batch losses); True when
        its training ends here."""
        if self.diverged(losses, step):
            return True
        cfg = self.exp.config.train
        try:
            record = epoch_record(self.exp, epoch, step, float(losses.mean()), split_metrics)
        except Diverged as exc:
            self.diverge(exc)
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
        with warnings.catch_warnings():  # a stacked model's schedule steps an optimizer the stack stands in for
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
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

    def fail(self, reason: str, epoch: int | None) -> None:
        """End this run as failed now, leaving the rest of its stack to train on."""
        summary: dict[str, Any] = {"status": "failed", "reason": reason}
        if epoch is not None:
            summary["epoch"] = epoch
        self.close(summary)

    def prune(self, epoch: int, reason: str, seconds: float, stack_size: int) -> None:
        """End this run as pruned after ``epoch`` (``reglab.train.halving``): its summary says
        ``"status": "pruned"``, the epoch and the reason; as for a failed run, its weights are
        neither restored, evaluated nor saved."""
        self.status = {"status": "pruned", "reason": reason, "epoch": epoch}
        self.finish(seconds, stack_size)

    def finish(self, seconds: float, stack_size: int) -> None:
        """Restore the best weights (when the run is ok), summarize the run, draw its plots, and
        save its weights and summary. ``seconds`` is the stack's time until the end of the epoch
        this model ended in; the summary's ``seconds`` is this model's share of it,
        ``seconds / stack_size``, and a stack of K > 1 adds the whole as ``group_seconds`` (with
        ``vectorized`` and ``group_size``)."""
        exp, ok = self.exp, self.status["status"] == "ok"
        held_out = exp.task.held_out  # False: a GAN's split losses measure nothing of it
        if ok and exp.config.train.restore_best and self.best_state is not None:
            exp.model.load_state_dict(self.best_state)
        summary: dict[str, Any] = {**self.status, "epochs_run": len(self.history),
                                   **({"best_epoch": self.best_epoch} if held_out else {}),
                                   "seconds": seconds / stack_size, "device": str(exp.device),
                                   "n_params": sum(p.numel() for p in exp.model.parameters()),
                                   **exp.splits.metadata()}
        if ok:
            if held_out:
                summary.update(evaluate_splits(exp, ("train", "val", "test")))
            summary.update(weight_stats(exp.model))
            summary.update(exp.task.penalty_values())
            summary.update(exp.task.final_metrics(exp.tensors))
        if self.folder is not None and self.history and exp.config.train.plots:
            try:
                write_plots(exp, self.folder.where / "plots", self.history, summary)
            except Exception as exc:
                if ok:
                    raise
                # a failed run keeps its own reason: the weights that made it fail may not be plottable
                summary["plots"] = f"not drawn: {type(exc).__name__}: {exc}"
        if stack_size > 1:
            summary.update(vectorized=True, group_size=stack_size, group_seconds=seconds)
        if ok and self.folder is not None and exp.config.train.save_weights:
            self.folder.save_weights(exp.model)
        self.close(summary)

    def close(self, summary: dict[str, Any]) -> None:
        """The run's end: its summary to its folder (which it names), and its result."""
        if self.folder is not None:
            summary["path"] = str(self.folder.path)
            self.folder.finish(summary)
        self.result = Run(None if self.folder is None else self.folder.path, summary)


def write_plots(exp: Experiment, plots: Path, history: list[dict], summary: dict[str, Any]) -> None:
    """The learning curve, the weight histogram and the task's own plots (matplotlib is imported
    here, by the first run that draws them)."""
    from reglab.plots import learning_curve, weight_histogram

    name = exp.config.name
    learning_curve(history, plots / "learning_curve.png", name)
    weights = {n: p.detach().cpu().numpy() for n, p in exp.model.named_parameters() if p.dim() >= 2}
    weight_histogram(weights, plots / "weights.png", name)
    exp.task.write_plots(plots, history, summary)


@dataclass
class Member:
    """One row of a stack: a run's :class:`Tracker` (its whole state) and the shuffle of its batches."""

    tracker: Tracker
    shuffle: torch.Generator

    @classmethod
    def of(cls, exp: Experiment, folder: RunFolder | None = None,
           on_epoch: Callable[[dict], None] | None = None) -> "Member":
        """A member whose batches come from its own shuffle ``torch.Generator().manual_seed(seed)``,
        one permutation per epoch."""
        return cls(Tracker(exp, folder, on_epoch), torch.Generator().manual_seed(exp.config.seed))

    @property
    def exp(self) -> Experiment:
        return self.tracker.exp

    @property
    def result(self) -> Run | None:
        """The run's result, once it has ended."""
        return self.tracker.result
