"""A model's training plan, resolved once from its config and read by both backends of the engine.

:func:`plan_of` reads the config's ``optim``, ``reg`` and ``train`` keys that a training step and
its schedule take: the optimizer and its hyper-parameters, the weight decay, the penalty with λ and
its settings, the clipping and the learning-rate schedule. The task builds its torch optimizer,
regularizer and scheduler from the plan (:mod:`reglab.tasks.optim`), which is how the module
backend trains; the stacked backend (``reglab.train.stacked``) reads the same plan of each model as
its per-model vectors (λ_m, wd_m, the penalty's settings) and shared hyper-parameters. Neither reads
those keys of the config itself.

A model's *current* learning rate is not in the plan: it is its torch optimizer's, which its
torch scheduler sets from the plan's schedule each epoch (and which code may set, as a person may
in any torch loop). The stacked backend reads it there per epoch (``stacked.learning_rate``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from reglab.config import Config

ADAM_EPS = 1e-8
"""Adam's and AdamW's ε (torch's default), the same in both backends."""


@dataclass(frozen=True)
class Schedule:
    """The learning-rate schedule of ``train.schedule``, stepped once per epoch: plateau
    (lr ← factor·lr after ``patience`` epochs without improvement of the monitored value, which is
    maximized unless it is a loss), cosine over ``epochs``, or step (lr ← gamma·lr every ``step_size``)."""

    kind: Literal["none", "plateau", "cosine", "step"]
    epochs: int
    factor: float
    patience: int
    maximize: bool
    step_size: int
    gamma: float


@dataclass(frozen=True)
class Plan:
    """What one model's training takes from its config (module docstring)."""

    optimizer: Literal["sgd", "adam", "adamw"]
    lr: float
    """the initial learning rate"""
    momentum: float
    betas: tuple[float, float]
    eps: float
    weight_decay: float
    """the optimizer's own weight decay (coupled in sgd and adam, decoupled in adamw)"""
    penalty: str
    """``none`` or a registered penalty"""
    lam: float
    settings: dict[str, float]
    """the penalty's settings besides λ (``Penalty.settings``), e.g. elastic net's ``l1_ratio``"""
    mode: str
    on: str
    warmup_epochs: int
    clip_norm: float | None
    clip_value: float | None
    schedule: Schedule


def plan_of(config: Config) -> Plan:
    """The plan of ``config``'s model, resolved once."""
    o, r, t = config.optim, config.reg, config.train
    schedule = Schedule(t.schedule, t.epochs, t.plateau_factor, t.plateau_patience, t.monitor != "val_loss",
                        t.step_size, t.step_gamma)
    return Plan(o.name, o.lr, o.momentum, tuple(o.betas), ADAM_EPS, o.weight_decay, r.penalty, r.lam,
                r.penalty_settings(), r.mode, r.on, r.warmup_epochs, t.clip_norm,
                t.clip_value, schedule)
