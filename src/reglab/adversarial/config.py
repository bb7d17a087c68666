"""The ``adv`` config section: adversarial training and robust evaluation (docs/adversarial.md)."""

from typing import Literal

from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from reglab.sections import Section


class AdvConfig(Section):
    """Adversarial training (``method``) and robust evaluation (``eval_*``); see docs/adversarial.md.

    ε is measured on the [0, 1] input scale. ``alpha`` (the attack's step) defaults to 2.5·ε/steps,
    and to 1.25·ε for ``fgsm-rs`` (one step, so ``steps`` does not apply to it).
    """

    method: Literal["none", "pgd", "trades", "fgsm-rs", "weighted"] = "none"
    """adversarial training: none, pgd, trades, fgsm-rs or weighted (clean and adversarial loss mixed)"""
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
    """trades: weight of the robustness (KL) term"""
    weight: float = Field(0.5, ge=0, le=1)
    """weighted: share of the clean loss (the rest is the adversarial loss)"""
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
    def _eps_in_range(self) -> "AdvConfig":
        for key, eps in [("adv.eps", self.eps)] + [("adv.eval_eps", e) for e in self.eval_eps]:
            if not 0 <= eps < float("inf"):
                raise PydanticCustomError("eps", "{key}={eps} must be a finite number >= 0",
                                          {"key": key, "eps": eps})
            if self.norm == "linf" and eps > 1:
                raise PydanticCustomError(
                    "eps", "{key}={eps} is an L∞ budget above 1, the whole [0, 1] input range "
                    "(8/255 ≈ 0.031 is common for images, 0.1-0.3 for MNIST)", {"key": key, "eps": eps})
        return self


def wants_attacks(config) -> bool:
    """Adversarial training, robust evaluation or a robust monitor: standard training is attacked too."""
    adv = config.adv
    robust_monitor = config.train.monitor == "val_robust_acc"
    return adv.method != "none" or bool(adv.eval_eps) or adv.autoattack or robust_monitor
