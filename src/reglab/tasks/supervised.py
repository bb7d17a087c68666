"""Supervised tasks: classification scored by cross-entropy and accuracy, regression by MSE.

The regression data term is the mean squared error (1/n)·Σ(y − ŷ)², the convention that the
penalty converters to scikit-learn assume.

A task owns what is trained (``model``), how one step trains it (``train_step``) and how it is
scored (``evaluate``); the trainer owns the loop around it. Training methods such as adversarial
training subclass this and override ``loss`` and the metric hooks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from reglab.models.build import build_model, check_input
from reglab.tasks.optim import build_optimizer, build_regularizer, build_scheduler, clip_gradients
from reglab.tasks.plan import plan_of
from reglab.tasks.reference import reference_summary


def mean_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each model's mean cross-entropy over its batch, [M], for logits [M, B, C] and labels [M, B]."""
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape).mean(1)


class SupervisedTask:
    """Train a classifier or regressor: loss → backward → clip → ``optimizer.step()``."""

    held_out = True  # its split losses and accuracies measure the model (``Task.held_out``)

    def __init__(self, config, splits, device: torch.device):
        self.config = config
        self.splits = splits
        self.kind = splits.kind
        self.classify = splits.kind == "classification"
        self.model = build_model(config.model, splits.input_shape, splits.n_outputs)
        check_input(self.model, splits.input_shape, splits.n_outputs, config.model.factory)
        self.model.to(device)
        self.plan = plan_of(config)
        self.optimizer = build_optimizer(self.model, self.plan)
        self.regularizer = None
        self.scheduler = build_scheduler(self.optimizer, self.plan)
        self.stop_reason: str | None = None

    def attach_regularizer(self, steps_per_epoch: int) -> None:
        """Bind the config's penalty to the optimizer (it then acts inside ``optimizer.step()``)."""
        self.regularizer = build_regularizer(self.model, self.plan, steps_per_epoch)
        if self.regularizer is not None:
            self.regularizer.attach(self.optimizer)

    def targets(self, y) -> torch.Tensor:
        """Labels as int64 for classification, targets as (N, k) float32 for regression."""
        y = torch.as_tensor(y)
        if self.classify:
            return y.long()
        return y.float().reshape(len(y), -1)

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss of one batch; training methods (adversarial) override this."""
        return self.criterion(model(x), y)

    def criterion(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(out, y) if self.classify else F.mse_loss(out, y)

    def stacked_loss(self, forward: Callable[[torch.Tensor, bool], torch.Tensor], x: torch.Tensor,
                     y: torch.Tensor) -> torch.Tensor:
        """The training loss of M stacked models, [M], each on its own batch: ``forward(x, train)``
        maps inputs [M, B, ...] to outputs [M, B, ...] (``train``: with dropout). Each model's mean
        cross-entropy for classes, else (1/n)·Σ(y − ŷ)²; training methods override this as ``loss``."""
        out = forward(x, True)
        if self.classify:
            return mean_cross_entropy(out, y)
        return F.mse_loss(out, y, reduction="none").flatten(1).mean(1)

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One optimizer step on a batch; returns the detached batch loss."""
        loss = self.loss(self.model, x, y)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(self.model, self.plan)
        self.optimizer.step()
        return loss.detach()

    def penalty_values(self) -> dict[str, float]:
        if self.regularizer is None:
            return {}
        return {f"penalty/{k}": v for k, v in self.regularizer.values().items()}

    def epoch_metrics(self, tensors) -> dict[str, float]:
        """Extra per-epoch metrics; none for plain supervised training."""
        return {}

    def final_metrics(self, tensors) -> dict[str, Any]:
        """For a linear regression with a plain weight penalty, how far training is from the
        optimum (:func:`~reglab.tasks.reference.reference_summary`); nothing else."""
        return reference_summary(self.config, self.splits, self.model)

    def write_plots(self, folder: Path, history: list[dict], summary: dict[str, Any]) -> None:
        """No figures beyond the engine's learning curve and weights."""

    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 2048) -> dict[str, float]:
        """Mean loss (and accuracy for classification) over a split, in eval mode."""
        model = self.model
        was_training = model.training
        model.eval()
        total_loss, correct = 0.0, 0
        for start in range(0, len(x), batch_size):
            out = model(x[start : start + batch_size])
            target = y[start : start + batch_size]
            total_loss += float(self.criterion(out, target)) * len(target)
            if self.classify:
                correct += int((out.argmax(1) == target).sum())
        model.train(was_training)
        metrics = {"loss": total_loss / len(x)}
        if self.classify:
            metrics["acc"] = correct / len(x)
        return metrics
