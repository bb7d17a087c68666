"""Weight penalties: math only.

Each penalty is a small class with three operations on one tensor ``w``:

* ``value(w)``     the penalty λ·R(w), a scalar tensor (differentiable);
* ``grad(w)``      a (sub)gradient of λ·R at ``w``;
* ``prox(w, step)`` the proximal map argmin_z ½‖z − w‖² + step·λ·R(z).
  In training ``step`` is the learning rate, so the threshold is lr·λ.

λ conventions (stated once, here and in ``docs/regularization.md``)
-------------------------------------------------------------------
The objective reglab minimizes is ``data_loss + Σ_terms λ·R(w)`` where the data loss is a *mean*
over the batch (torch's default ``reduction="mean"``, e.g. ``MSELoss()`` = (1/n)·Σ(y − ŷ)²):

=============  ===================================  ===============================
penalty        λ·R(w)                               gradient
=============  ===================================  ===============================
``L2``         λ/2·‖w‖²                             λ·w  (torch's ``weight_decay=λ``)
``L1``         λ·‖w‖₁                               λ·sign(w), sign(0) = 0
``ElasticNet`` λ·(α‖w‖₁ + (1−α)/2·‖w‖²)  (glmnet)   λ·(α·sign(w) + (1−α)·w)
``GroupLasso`` λ·Σ_g √p_g·‖w_g‖₂                    λ·√p_g·w_g/‖w_g‖  (0 where w_g = 0)
=============  ===================================  ===============================

``α`` is ``l1_ratio``. For ``GroupLasso`` a group is one row of ``w.reshape(w.shape[0], -1)``: one
output unit of a ``Linear`` layer, one filter of a ``Conv`` layer; ``p_g`` is the group size. A 1-D
or 0-D tensor is a single group.

Converters to and from scikit-learn's ``alpha`` and Keras' ``l1``/``l2`` factors are in
:mod:`reglab.conventions`.

The penalties can carry optional hints, ``on=`` (a selection), ``mode=`` and ``schedule=``, that a
:class:`reglab.Regularizer` turns into a term. The math never reads them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import copy
import math
import numbers
from typing import Any, Sequence

import torch
from torch import Tensor

from reglab.errors import UserError

__all__ = [
    "Penalty",
    "L1",
    "L2",
    "ElasticNet",
    "GroupLasso",
    "register",
    "penalty_names",
    "penalty_from_name",
]


def check_lam(lam: Any) -> float:
    """λ as a float, or a UserError if it is not a finite number ≥ 0."""
    if isinstance(lam, bool) or not isinstance(lam, numbers.Real):
        raise UserError(f"λ (lam) must be a number, got {lam!r}")
    if not math.isfinite(lam) or lam < 0:
        raise UserError(f"λ (lam) must be a finite number ≥ 0, got {lam}")
    return float(lam)


def _check_ratio(ratio: Any) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, numbers.Real) or not 0 <= ratio <= 1:
        raise UserError(f"l1_ratio must be a number in [0, 1], got {ratio!r}")
    return float(ratio)


def _soft_threshold(w: Tensor, t: float | Tensor) -> Tensor:
    """sign(w)·max(|w| − t, 0) = w − clamp(w, −t, t), exactly 0 where |w| ≤ t (torch's
    ``softshrink`` for a number t; the clamp form for a tensor t, e.g. one per model)."""
    if isinstance(t, Tensor):
        t = t.to(w.dtype)  # rounded once, as softshrink rounds its number
        return w - w.clamp(-t, t)
    return torch.nn.functional.softshrink(w, t)


class Penalty(ABC):
    """Base class. Subclasses define ``value``, ``grad`` and ``prox`` for one tensor.

    The ``*_`` methods act in place on lists of tensors with λ given explicitly (the regularizer
    passes λ times its schedule factor). The defaults loop over tensors; subclasses override them
    with ``torch._foreach_*`` ops where that is faster.
    """

    name = "penalty"
    settings: tuple[str, ...] = ()
    """The numeric settings besides λ (ElasticNet: ``l1_ratio``); stacked operations take them per model."""

    def __init__(self, lam: float, *, on: Any = None, mode: str | None = None, schedule: Any = None):
        self.lam = check_lam(lam)
        self.on, self.mode, self.schedule = on, mode, schedule

    # -- one tensor, λ = self.lam -------------------------------------------------------------
    def value(self, w: Tensor) -> Tensor:
        return self._value(w, self.lam)

    def grad(self, w: Tensor) -> Tensor:
        return self._grad(w, self.lam)

    def prox(self, w: Tensor, step: float) -> Tensor:
        return self._prox(w, step * self.lam)

    # -- to define: λ given, ``t`` = step·λ -----------------------------------------------------
    @abstractmethod
    def _value(self, w: Tensor, lam: float) -> Tensor:
        """λ·R(w)."""

    @abstractmethod
    def _grad(self, w: Tensor, lam: float) -> Tensor:
        """A (sub)gradient of λ·R at w."""

    @abstractmethod
    def _prox(self, w: Tensor, t: float) -> Tensor:
        """argmin_z ½‖z − w‖² + t·R(z)."""

    # -- in place, lists of tensors, used by the Regularizer -----------------------------------
    def add_grad_(self, grads: Sequence[Tensor], params: Sequence[Tensor], lam: float) -> None:
        """grads += ∇(λ·R)(params)."""
        for g, p in zip(grads, params):
            g.add_(self._grad(p, lam))

    def decay_(self, params: Sequence[Tensor], lr: float, lam: float) -> None:
        """params -= lr·∇(λ·R)(params)  (decoupled decay)."""
        for p in params:
            p.sub_(self._grad(p, lam), alpha=lr)

    def prox_(self, params: Sequence[Tensor], step: float, lam: float) -> None:
        """params = prox(params, step) with λ given."""
        for p in params:
            p.copy_(self._prox(p, step * lam))

    def total(self, params: Sequence[Tensor], lam: float | None = None) -> Tensor:
        """Σ λ·R(p) over ``params`` (differentiable)."""
        lam = self.lam if lam is None else lam
        values = [self._value(p, lam) for p in params]
        return sum(values[1:], values[0]) if values else torch.zeros(())

    # -- K models at once: tensors stacked on dim 0, λ and the settings one value per model ------
    def stacked_grad(self, w: Tensor, lam: Tensor, settings: dict[str, Tensor] | None = None) -> Tensor:
        """[∇(λ_k·R_k)(w_k)]_k for K models' tensors stacked as ``w`` [K, …]; ``lam`` is [K] and
        ``settings`` maps each name of :attr:`settings` to its K values (default: this penalty's)."""
        return self._per_model(type(self)._grad)(w, lam, settings or {})

    def stacked_prox(self, w: Tensor, t: Tensor, settings: dict[str, Tensor] | None = None) -> Tensor:
        """[prox_k(w_k, t_k)]_k with t = step·λ per model ([K]); see :meth:`stacked_grad`."""
        return self._per_model(type(self)._prox)(w, t, settings or {})

    def stacked_add_grad_(self, g: Tensor, w: Tensor, lam: Tensor, settings: dict[str, Tensor] | None = None) -> None:
        """g ← g + ∇(λ_k·R_k)(w_k) for each model k (``lam`` float64 [K]), rounded as :meth:`add_grad_`."""
        g.add_(self.stacked_grad(w, lam, settings))

    def stacked_decay_(self, w: Tensor, lr: Tensor, lam: Tensor, settings: dict[str, Tensor] | None = None) -> None:
        """w ← w − lr_k·∇(λ_k·R_k)(w_k) for each model k (``lr``, ``lam`` float64 [K]), as :meth:`decay_`."""
        w.sub_(self.stacked_grad(w, lr * lam, settings))  # ∇(λ·R) is linear in λ

    def _per_model(self, method):
        """``method`` of this penalty with model k's λ (or t) and settings, mapped over k (``vmap``)."""

        def one(w, lam, settings):
            penalty = copy.copy(self)
            penalty.__dict__.update(settings)
            return method(penalty, w, lam)

        return torch.vmap(one)

    # -- display -------------------------------------------------------------------------------
    def _args(self) -> str:
        return f"lam={self.lam:g}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._args()})"


PENALTIES: dict[str, type[Penalty]] = {}
"""The penalties the lab knows by name (``reg.penalty=NAME``, ``reg.NAME=λ``), filled by :func:`register`."""


def register(cls: type[Penalty]) -> type[Penalty]:
    """Make ``cls`` known by its ``name``, e.g. as ``reg.penalty=NAME``; usable as a class decorator.

    The constructor takes λ, then each name of ``cls.settings`` as a keyword, then the hints."""
    if not (isinstance(cls, type) and issubclass(cls, Penalty)):
        raise TypeError(f"register takes a Penalty subclass, got {cls!r}")
    known = PENALTIES.get(cls.name)
    if known is not None and known is not cls:
        raise ValueError(f"a penalty named '{cls.name}' is registered already: {known.__name__}")
    PENALTIES[cls.name] = cls
    return cls


def penalty_names() -> tuple[str, ...]:
    """The registered penalties' names, in the order they were registered."""
    return tuple(PENALTIES)


class L2(Penalty):
    """Ridge / weight decay.

    value  λ/2·‖w‖²
    grad   λ·w                    (the same as torch's ``weight_decay=λ``)
    prox   w / (1 + step·λ)       (shrinks, never gives zeros)
    """

    name = "l2"

    def _value(self, w, lam):
        return 0.5 * lam * w.pow(2).sum()

    def _grad(self, w, lam):
        return lam * w

    def _prox(self, w, t):
        return w / (1 + t)

    def add_grad_(self, grads, params, lam):
        torch._foreach_add_(list(grads), list(params), alpha=lam)

    def decay_(self, params, lr, lam):
        # exactly what torch.optim.AdamW does: p ← p·(1 − lr·λ)
        torch._foreach_mul_(list(params), 1 - lr * lam)

    def prox_(self, params, step, lam):
        torch._foreach_div_(list(params), 1 + step * lam)

    def stacked_add_grad_(self, g, w, lam, settings=None):
        g.addcmul_(w, per_model(lam, w))  # rounds as add_grad_'s add(·, alpha=λ)

    def stacked_decay_(self, w, lr, lam, settings=None):
        w.mul_(per_model(1 - lr * lam, w))


class L1(Penalty):
    """Lasso.

    value  λ·‖w‖₁
    grad   λ·sign(w), with sign(0) = 0
    prox   soft threshold: sign(w)·max(|w| − step·λ, 0)

    Only the prox (``mode="proximal"``) gives exact zeros. Subgradient descent with ``grad``
    (``mode="coupled"``, or L1 added to the loss) makes weights oscillate around zero instead.
    """

    name = "l1"

    def _value(self, w, lam):
        return lam * w.abs().sum()

    def _grad(self, w, lam):
        return lam * torch.sign(w)

    def _prox(self, w, t):
        return _soft_threshold(w, t)

    def add_grad_(self, grads, params, lam):
        torch._foreach_add_(list(grads), torch._foreach_sign(list(params)), alpha=lam)

    def decay_(self, params, lr, lam):
        params = list(params)
        torch._foreach_sub_(params, torch._foreach_sign(params), alpha=lr * lam)

    def prox_(self, params, step, lam):
        _foreach_soft_threshold_(list(params), step * lam)

    def stacked_add_grad_(self, g, w, lam, settings=None):
        g.addcmul_(torch.sign(w), per_model(lam, w))

    def stacked_decay_(self, w, lr, lam, settings=None):
        w.addcmul_(torch.sign(w), per_model(-(lr * lam), w))


def per_model(values: Tensor, like: Tensor) -> Tensor:
    """K per-model numbers (float64, as Python computes them) rounded once to ``like``'s dtype and
    shaped [K, 1, …] to broadcast over the stacked tensor ``like`` [K, …]."""
    return values.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def _foreach_soft_threshold_(params: list[Tensor], t: float) -> None:
    """params ← soft_threshold(params, t), in place."""
    torch._foreach_copy_(params, [torch.nn.functional.softshrink(p, t) for p in params])


class ElasticNet(Penalty):
    """Elastic net in glmnet's form, α = ``l1_ratio``.

    value  λ·(α·‖w‖₁ + (1−α)/2·‖w‖²)
    grad   λ·(α·sign(w) + (1−α)·w)
    prox   soft_threshold(w, step·λ·α) / (1 + step·λ·(1−α))

    α = 1 is ``L1(λ)``, α = 0 is ``L2(λ)``.
    """

    name = "elastic"
    settings = ("l1_ratio",)

    def __init__(self, lam: float, l1_ratio: float = 0.5, **hints: Any):
        super().__init__(lam, **hints)
        self.l1_ratio = _check_ratio(l1_ratio)

    def _value(self, w, lam):
        a = self.l1_ratio
        return lam * (a * w.abs().sum() + 0.5 * (1 - a) * w.pow(2).sum())

    def _grad(self, w, lam):
        a = self.l1_ratio
        return lam * (a * torch.sign(w) + (1 - a) * w)

    def _prox(self, w, t):
        a = self.l1_ratio
        return _soft_threshold(w, t * a) / (1 + t * (1 - a))

    def add_grad_(self, grads, params, lam):
        grads, params, a = list(grads), list(params), self.l1_ratio
        torch._foreach_add_(grads, torch._foreach_sign(params), alpha=lam * a)
        torch._foreach_add_(grads, params, alpha=lam * (1 - a))

    def decay_(self, params, lr, lam):
        params, a = list(params), self.l1_ratio
        step = torch._foreach_sign(params)
        torch._foreach_mul_(step, a)
        torch._foreach_add_(step, params, alpha=1 - a)
        torch._foreach_sub_(params, step, alpha=lr * lam)

    def prox_(self, params, step, lam):
        params, a = list(params), self.l1_ratio
        _foreach_soft_threshold_(params, step * lam * a)
        torch._foreach_div_(params, 1 + step * lam * (1 - a))

    def _ratio(self, settings, like: Tensor) -> Tensor:
        """α per model: the given settings' l1_ratio, or this penalty's for every model."""
        if settings and "l1_ratio" in settings:
            return settings["l1_ratio"]
        return torch.full((like.shape[0],), self.l1_ratio, dtype=torch.float64, device=like.device)

    def stacked_add_grad_(self, g, w, lam, settings=None):
        a = self._ratio(settings, w)
        g.addcmul_(torch.sign(w), per_model(lam * a, w))
        g.addcmul_(w, per_model(lam * (1 - a), w))

    def stacked_decay_(self, w, lr, lam, settings=None):
        a = self._ratio(settings, w)
        step = torch.sign(w).mul_(per_model(a, w)).addcmul_(w, per_model(1 - a, w))
        w.addcmul_(step, per_model(-(lr * lam), w))

    def _args(self):
        return f"lam={self.lam:g}, l1_ratio={self.l1_ratio:g}"


def _groups(w: Tensor) -> Tensor:
    """Rows = groups: one per output unit / filter; a 0-D or 1-D tensor is one group."""
    return w.reshape(w.shape[0], -1) if w.dim() >= 2 else w.reshape(1, -1)


class GroupLasso(Penalty):
    """Group lasso with one group per output unit (Linear) or filter (Conv).

    A group ``w_g`` is a row of ``w.reshape(w.shape[0], -1)``, of size ``p_g``; a 0-D or 1-D tensor
    is a single group. The √p_g weight is included, so groups of different size are comparable.

    value  λ·Σ_g √p_g·‖w_g‖₂
    grad   λ·√p_g·w_g/‖w_g‖₂, and 0 for a group that is all zeros
    prox   w_g·max(0, 1 − step·λ·√p_g/‖w_g‖₂)   (whole groups become exactly zero)

    For ``ConvTranspose`` weights, dim 0 is the *input* channel, so groups are input channels.
    """

    name = "group"

    def _value(self, w, lam):
        g = _groups(w)
        return lam * math.sqrt(g.shape[1]) * torch.linalg.vector_norm(g, dim=1).sum()

    def _grad(self, w, lam):
        g = _groups(w)
        norms = torch.linalg.vector_norm(g, dim=1, keepdim=True)
        scale = torch.where(norms > 0, lam * math.sqrt(g.shape[1]) / norms, torch.zeros_like(norms))
        return (g * scale).reshape(w.shape)

    def _prox(self, w, t):
        g = _groups(w)
        norms = torch.linalg.vector_norm(g, dim=1, keepdim=True)
        thr = t * math.sqrt(g.shape[1])
        keep = torch.where(norms > thr, 1 - thr / norms.clamp_min(thr), torch.zeros_like(norms))
        return (g * keep).reshape(w.shape)


for builtin in (L1, L2, ElasticNet, GroupLasso):
    register(builtin)


def penalty_from_name(name: str, lam: float, *, l1_ratio: float = 0.5, **hints: Any) -> Penalty:
    """A registered penalty by name (``"l1" | "l2" | "elastic" | "group"`` and any other
    :func:`register`-ed one); ``l1_ratio`` goes to the penalties whose settings include it."""
    cls = PENALTIES.get(str(name).lower())
    if cls is None:
        raise UserError(f"unknown penalty '{name}'; choose one of {', '.join(PENALTIES)}")
    settings = {"l1_ratio": l1_ratio}
    return cls(lam, **{key: settings[key] for key in cls.settings if key in settings}, **hints)
