"""Optimizer, regularizer, LR schedule and gradient clipping, built from config."""

from __future__ import annotations

import torch
from torch import nn

from reglab.config import Config
from reglab.regularizer import Regularizer


def build_optimizer(model: nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """``optim.weight_decay`` is torch's own: coupled L2 in sgd/adam, decoupled in adamw."""
    o = cfg.optim
    params = model.parameters()
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)


def build_regularizer(model: nn.Module, cfg: Config, steps_per_epoch: int) -> Regularizer | None:
    """The config's penalty term, or None for ``reg.penalty=none``."""
    r = cfg.reg
    if r.penalty == "none":
        return None
    return Regularizer.from_spec(model, r.penalty, r.lam, mode=r.mode, on=r.on,
                                 warmup_steps=r.warmup_epochs * steps_per_epoch, **r.penalty_settings())


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: Config):
    t = cfg.train
    if t.schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min" if t.monitor == "val_loss" else "max",
            factor=t.plateau_factor, patience=t.plateau_patience,
        )
    if t.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=t.epochs)
    if t.schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=t.step_size, gamma=t.step_gamma)
    return None


def clip_gradients(model: nn.Module, cfg: Config) -> None:
    if cfg.train.clip_norm is not None:
        nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_norm)
    if cfg.train.clip_value is not None:
        nn.utils.clip_grad_value_(model.parameters(), cfg.train.clip_value)
