"""λ schedules: a factor in [0, 1] that multiplies a regularization term's λ, as a function of the
number of optimizer steps taken (``constant()``, ``warmup(steps)``)."""

from __future__ import annotations

from abc import ABC, abstractmethod

from reglab.errors import UserError

__all__ = ["Schedule", "constant", "warmup"]


class Schedule(ABC):
    """A factor in [0, 1] that multiplies a term's λ, as a function of optimizer steps taken."""

    @abstractmethod
    def __call__(self, step: int) -> float:
        """The factor at the step taken after ``step`` optimizer steps."""


class _Constant(Schedule):
    def __call__(self, step):
        return 1.0

    def __repr__(self):
        return "constant()"


class _Warmup(Schedule):
    def __init__(self, steps: int):
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
            raise UserError(f"warmup steps must be an integer ≥ 0, got {steps!r}")
        self.steps = steps

    def __call__(self, step):
        return 1.0 if step >= self.steps else step / self.steps

    def __repr__(self):
        return f"warmup({self.steps})"


def constant() -> Schedule:
    """Factor 1: the full λ at every step."""
    return _Constant()


def warmup(steps: int) -> Schedule:
    """Linear warm-up: factor ``min(1, t/steps)`` at the optimizer step taken after ``t`` steps.

    So the first step uses λ·0, step ``steps + 1`` and later the full λ.
    """
    return _Warmup(steps)
