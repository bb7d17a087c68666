"""The contract between the engine and a task: :class:`Task` declares every hook the engine calls.

A task owns what is trained and how it is scored; the engine (:mod:`reglab.train`) owns the loop
around it: it builds the task, moves the splits through ``targets``, calls ``attach_regularizer``
once, then per batch ``train_step`` and per epoch ``evaluate`` on each split, ``penalty_values``
and ``epoch_metrics``; it steps ``scheduler``, stops after an epoch that set ``stop_reason``, and at
the end adds ``final_metrics`` to the summary and lets ``write_plots`` draw the task's figures.

The engine trains a stack of K ≥ 1 models. A task whose models it stacks (K models of one
architecture as one computation, ``reglab.train.stacked``) also fulfils :class:`StackableTask`:
there the engine calls ``stacked_loss`` instead of ``train_step`` and scores each model with
``criterion``; any other task trains as a stack of one by its own ``train_step``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Protocol

import torch
from torch import nn

from reglab.regularizer import Regularizer
from reglab.tasks.plan import Plan

Tensors = dict[str, tuple[torch.Tensor, torch.Tensor]]  # split name -> (inputs, targets) on the device


class Task(Protocol):
    """What the engine needs of a task; :class:`~reglab.tasks.supervised.SupervisedTask`,
    :class:`~reglab.adversarial.task.AdversarialTask` and :class:`~reglab.gan.task.GanTask` fulfil it."""

    model: nn.Module
    """everything that is trained (its parameters are counted, its weights plotted and restored)"""
    optimizer: torch.optim.Optimizer
    """the optimizer whose first group's learning rate the metrics line reports"""
    scheduler: Any
    """an object with ``step()`` (or ``step(metric)`` for plateau), stepped once per epoch; or None"""
    stop_reason: str | None
    """set by ``epoch_metrics`` to end training after that epoch (None: go on)"""
    held_out: bool
    """whether ``evaluate`` on the train/val/test splits measures the model, so that the run's
    summary holds those losses, their gaps and the best epoch (a GAN's is False)"""

    def targets(self, y: Any) -> torch.Tensor:
        """A split's labels or targets as the tensor the loss takes."""

    def attach_regularizer(self, steps_per_epoch: int) -> None:
        """Bind the config's weight penalty to the task's optimizer(s)."""

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One training step on a batch; returns the detached batch loss."""

    def evaluate(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
        """A split's mean ``loss`` (and ``acc`` where it applies), without training."""

    def penalty_values(self) -> dict[str, float]:
        """The current λ·R(w) of each penalty term, keyed ``penalty/…``."""

    def epoch_metrics(self, tensors: Tensors) -> dict[str, float]:
        """The task's own numbers after an epoch (may set ``stop_reason``)."""

    def final_metrics(self, tensors: Tensors) -> dict[str, Any]:
        """The task's own numbers of the finished (restored) model."""

    def write_plots(self, folder: Path, history: list[dict], summary: dict[str, Any]) -> None:
        """The task's own figures into ``folder`` (the engine draws the learning curve and weights)."""


class StackableTask(Task, Protocol):
    """What the stacked backend needs of a task beyond :class:`Task`: the loss of M stacked models
    at once, and the loss and kind that score each of them.
    :class:`~reglab.tasks.supervised.SupervisedTask` fulfils it."""

    classify: bool
    """True: outputs are class logits, scored by accuracy as well; False: regression outputs"""
    regularizer: Regularizer | None
    """the config's penalty term bound to ``model`` (the stack applies it to every model with its own λ)"""
    plan: Plan
    """the model's training plan (``reglab.tasks.plan``): the stack reads each model's λ, weight decay,
    penalty settings and the shared optimizer hyper-parameters from it"""

    def criterion(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One model's mean loss of outputs ``out`` [B, ...] against targets ``y`` [B, ...]."""

    def stacked_loss(self, forward: Callable[[torch.Tensor, bool], torch.Tensor], x: torch.Tensor,
                     y: torch.Tensor) -> torch.Tensor:
        """The training loss of M stacked models, [M], each on its own batch: ``forward(x, train)``
        maps inputs [M, B, ...] to outputs [M, B, ...] (``train``: with dropout)."""
