"""Optimizer, regularizer, LR schedule and gradient clipping of a task, built from its model's
:class:`~reglab.tasks.plan.Plan`."""

from __future__ import annotations

import torch
from torch import nn

from reglab.regularizer import Regularizer
from reglab.tasks.plan import Plan


def build_optimizer(model: nn.Module, plan: Plan) -> torch.optim.Optimizer:
    """The plan's weight decay is torch's own: coupled L2 in sgd/adam, decoupled in adamw."""
    params = model.parameters()
    if plan.optimizer == "sgd":
        return torch.optim.SGD(params, lr=plan.lr, momentum=plan.momentum, weight_decay=plan.weight_decay)
    adam = torch.optim.Adam if plan.optimizer == "adam" else torch.optim.AdamW
    return adam(params, lr=plan.lr, betas=plan.betas, eps=plan.eps, weight_decay=plan.weight_decay)


def build_regularizer(model: nn.Module, plan: Plan, steps_per_epoch: int) -> Regularizer | None:
    """The plan's penalty term, or None for ``none``."""
    if plan.penalty == "none":
        return None
    return Regularizer.from_spec(model, plan.penalty, plan.lam, **plan.settings, mode=plan.mode, on=plan.on,
                                 warmup_steps=plan.warmup_epochs * steps_per_epoch)


def build_scheduler(optimizer: torch.optim.Optimizer, plan: Plan):
    """torch's scheduler of the plan's schedule on ``optimizer``, or None."""
    s = plan.schedule
    if s.kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max" if s.maximize else "min",
                                                          factor=s.factor, patience=s.patience)
    if s.kind == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=s.epochs)
    if s.kind == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=s.step_size, gamma=s.gamma)
    return None


def clip_gradients(model: nn.Module, plan: Plan) -> None:
    if plan.clip_norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), plan.clip_norm)
    if plan.clip_value is not None:
        nn.utils.clip_grad_value_(model.parameters(), plan.clip_value)
