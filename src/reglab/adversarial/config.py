"""The ``adv`` config section: adversarial training and robust evaluation (docs/adversarial.md).

Training is an attack and an objective: ``adv.attack`` names a registered attack class
(:func:`reglab.adversarial.attacks.register_attack`), built by :func:`training_attack` from the
``adv.*`` keys its dataclass fields name; ``adv.objective`` is how the loss uses the attack's x'.
``adv.method`` is the shorthand of a pair (:data:`METHODS`).
"""

import dataclasses
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from reglab.adversarial.attacks import ATTACKS, Attack, attack_names, check_eps
from reglab.errors import UserError
from reglab.sections import OneOf, Section, stacked

METHODS = {
    "none": ("none", "adversarial"),
    "pgd": ("pgd", "adversarial"),
    "fgsm-rs": ("fgsm-rs", "adversarial"),
    "trades": ("trades", "trades"),
    "weighted": ("pgd", "weighted"),
}
"""``adv.method=NAME``, the shorthand of ``adv.attack`` and ``adv.objective`` as a pair:
Madry's PGD, Wong's FGSM-RS, TRADES (its KL attack and its loss), and the weighted mix on PGD."""

ATTACK_MODE_FIELD = "eval_mode"
"""The attack field that ``adv.attack_mode`` sets (``eval`` → True); every other field takes the
``adv.*`` key of its own name."""


def attack_choices() -> tuple[str, ...]:
    """The values of ``adv.attack``: none and the registered attacks."""
    return ("none", *attack_names())


class AdvConfig(Section):
    """Adversarial training (``attack`` and ``objective``) and robust evaluation (``eval_*``);
    see docs/adversarial.md.

    ε is measured on the [0, 1] input scale. ``alpha`` (the attack's step) defaults to 2.5·ε/steps,
    and to 1.25·ε for ``fgsm-rs`` (one step, so ``steps`` does not apply to it).
    """

    model_config = ConfigDict(json_schema_extra=stacked())

    attack: Annotated[str, OneOf(attack_choices)] = "none"
    """the training attack: none (standard training) or a registered attack: pgd, fgsm-rs, trades (KL), …"""
    objective: Literal["adversarial", "trades", "weighted"] = "adversarial"
    """how the loss uses the attack's x': adversarial CE(x'), trades CE(x) + β·KL(p(x)‖p(x')), weighted"""
    norm: Literal["linf", "l2"] = "linf"
    """the attack's norm ball: linf or l2"""
    eps: float = Field(0.1, ge=0, allow_inf_nan=False)
    """training attack budget ε on the [0, 1] input scale"""
    alpha: float | None = Field(None, gt=0, allow_inf_nan=False)
    """attack step size (null: 2.5·ε/steps, 1.25·ε for fgsm-rs)"""
    steps: int = Field(7, ge=1)
    """attack steps during training"""
    restarts: int = Field(1, ge=1)
    """random restarts of the training attack"""
    attack_mode: Literal["eval", "train"] = "eval"
    """the model's mode while it is attacked: eval or train"""
    beta: float = Field(6.0, ge=0, allow_inf_nan=False)
    """objective trades: weight of the robustness (KL) term"""
    weight: float = Field(0.5, ge=0, le=1)
    """objective weighted: share of the clean loss (the rest is the adversarial loss)"""
    guard: bool = True
    """stop a run whose robust accuracy collapses (catastrophic overfitting)"""
    guard_drop: float = Field(0.2, gt=0, le=1)
    """guard: the fall of val_robust_acc below its best that counts as collapse"""
    monitor_examples: int = Field(256, ge=1)
    """validation examples attacked each epoch to monitor robust accuracy"""
    monitor_steps: int = Field(10, ge=1)
    """PGD steps of that per-epoch monitor"""
    eval_eps: list[float] = []
    """ε values of the final robust evaluation (empty: none)"""
    eval_steps: int = Field(20, ge=1)
    """PGD steps of the final robust evaluation"""
    eval_restarts: int = Field(5, ge=1)
    """random restarts of the final robust evaluation"""
    eval_examples: int | None = Field(None, ge=1)
    """test examples attacked in the final evaluation (null: all)"""
    autoattack: bool = False
    """also evaluate with AutoAttack (needs the autoattack package)"""

    @model_validator(mode="after")
    def _budgets_and_attack(self) -> "AdvConfig":
        """Each budget passes the attacks' own ε rule, and the training attack its class's checks."""
        try:
            for key, eps in [("adv.eps", self.eps)] + [("adv.eval_eps", e) for e in self.eval_eps]:
                check_eps(eps, self.norm, key)
            training_attack(self)
        except UserError as exc:
            raise PydanticCustomError("adv", "{why}", {"why": str(exc)}) from None
        return self


def training_attack(adv: AdvConfig) -> Attack | None:
    """The attack ``adv.attack`` names, its dataclass fields set from the ``adv.*`` keys of their
    names (``eval_mode`` from ``adv.attack_mode``), or None for ``none``."""
    if adv.attack == "none":
        return None
    cls = ATTACKS[adv.attack]
    keys = AdvConfig.model_fields
    kwargs = {f.name: adv.attack_mode == "eval" if f.name == ATTACK_MODE_FIELD else getattr(adv, f.name)
              for f in dataclasses.fields(cls) if f.init and (f.name in keys or f.name == ATTACK_MODE_FIELD)}
    try:
        return cls(**kwargs)
    except UserError as exc:
        raise UserError(f"adv.attack={adv.attack}: {exc}") from None


def wants_attacks(config) -> bool:
    """Adversarial training, robust evaluation or a robust monitor: standard training is attacked too."""
    adv = config.adv
    robust_monitor = config.train.monitor == "val_robust_acc"
    return adv.attack != "none" or bool(adv.eval_eps) or adv.autoattack or robust_monitor
