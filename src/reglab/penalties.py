"""Weight penalties: math only.

A penalty is λ·R with three operations, each written once for K models at once: the models'
tensors stacked as ``w`` [K, …], λ and the penalty's settings (:class:`Setting`, e.g. ElasticNet's
``l1_ratio``) one value per model. One model is K = 1.

* ``value``  the penalty λ·R(w), differentiable;
* ``grad``   a (sub)gradient of λ·R at ``w``;
* ``prox``   the proximal map argmin_z ½‖z − w‖² + step·λ·R(z).
  In training ``step`` is the learning rate, so the threshold is lr·λ.

:meth:`Penalty.apply_` applies a penalty in a mode (coupled, decoupled, proximal); the
:class:`reglab.Regularizer`'s optimizer hooks (K = 1) and the lab's stacked engine (K models) both
call it.

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

import copy
import math
import numbers
from dataclasses import dataclass
from typing import Any, Sequence

import torch
from torch import Tensor

from reglab.errors import UserError

__all__ = [
    "Penalty",
    "Setting",
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


@dataclass(frozen=True)
class Setting:
    """A number of a penalty besides λ (ElasticNet's ``l1_ratio``): its name, default, closed range
    [low, high] and what it means. The config takes it as ``reg.NAME``."""

    name: str
    default: float
    low: float = -math.inf
    high: float = math.inf
    doc: str = ""

    def check(self, value: Any) -> float:
        """``value`` as a float, or a UserError naming the setting if it is not a number in range."""
        if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
                or not self.low <= value <= self.high):
            raise UserError(f"{self.name} must be a number in [{self.low:g}, {self.high:g}], got {value!r}")
        return float(value)


def per_model(values: Tensor | float, like: Tensor) -> Tensor | float:
    """K per-model numbers (float64, as Python computes them) rounded once to ``like``'s dtype and
    shaped [K, 1, …] to broadcast over the stacked tensor ``like`` [K, …]. One number for every
    model (a Python float, as one model has) stays a Python float where torch rounds it to ``like``'s
    dtype itself (float32, float64: the same bits, without making a tensor)."""
    if not isinstance(values, Tensor):
        if like.dtype in (torch.float32, torch.float64):
            return values
        return torch.tensor(values, dtype=like.dtype, device=like.device)
    return values.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


def _rows(w: Tensor) -> Tensor:
    """Each model's tensor as one row: [K, …] → [K, n]."""
    return w.reshape(w.shape[0], -1)


def _soft_threshold(w: Tensor, t: Tensor) -> Tensor:
    """sign(w)·max(|w| − t_k, 0) = w − clamp(w, −t_k, t_k): exactly 0 where |w| ≤ t_k (the same
    bits as torch's ``softshrink``), with t per model ([K], float64)."""
    t = per_model(t, w)
    return w - w.clamp(-t, t)


class Penalty:
    """Base class: λ·R and its (sub)gradient and proximal map on K models at once.

    The math acts on the K models' tensors stacked as ``w`` [K, …], with λ (or t = step·λ) and each
    of :attr:`settings` one float64 value per model ([K], or one Python float for every model, as
    the Regularizer passes them); one model is K = 1. A penalty writes it
    once, as :meth:`stacked_value`, :meth:`stacked_grad` and :meth:`stacked_prox` (rounding each
    per-model number once to ``w``'s dtype with :func:`per_model`), or, simpler, as ``_value(w, lam)``,
    ``_grad(w, lam)`` and ``_prox(w, t)`` on one model's tensor with its settings read from
    ``self``, which the base class maps over the models (``torch.vmap``). Everything else, one
    tensor (:meth:`value`, :meth:`grad`, :meth:`prox`), lists of tensors and the three modes
    (:meth:`apply_`), is derived from these.
    """

    name = "penalty"
    settings: tuple[Setting, ...] = ()
    """The numbers besides λ, with their defaults (ElasticNet: ``l1_ratio``); per model in a stack."""

    def __init_subclass__(cls, **kwargs: Any):
        """A penalty writes each of its value, gradient and prox in one of the two forms: on K
        models (``stacked_value``) or on one model's tensor (``_value``); refused at its definition
        otherwise."""
        super().__init_subclass__(**kwargs)
        for stacked, single in (("stacked_value", "_value"), ("stacked_grad", "_grad"), ("stacked_prox", "_prox")):
            if getattr(cls, stacked) is getattr(Penalty, stacked) and not hasattr(cls, single):
                raise TypeError(f"{cls.__name__} defines neither {stacked} nor {single}")

    def __init__(self, lam: float, *, on: Any = None, mode: str | None = None, schedule: Any = None,
                 **settings: Any):
        self.lam = check_lam(lam)
        declared = {s.name: s for s in self.settings}
        unknown = [name for name in settings if name not in declared]
        if unknown:
            have = ", ".join(declared) or "none"
            raise UserError(f"{type(self).__name__} has no setting '{unknown[0]}' (its settings: {have})")
        for name, setting in declared.items():
            setattr(self, name, setting.check(settings.get(name, setting.default)))
        self.on, self.mode, self.schedule = on, mode, schedule

    def setting_values(self) -> dict[str, float]:
        """This penalty's settings, by name."""
        return {s.name: getattr(self, s.name) for s in self.settings}

    def _per_model_settings(self, settings: dict[str, Tensor] | None) -> dict[str, Tensor | float]:
        """Each setting's K values: the given ones, else this penalty's (one float for every model)."""
        given = settings or {}
        return {s.name: given.get(s.name, getattr(self, s.name)) for s in self.settings}

    # -- the math, on K models: w [K, …], λ (or t) and settings float64 [K] or one float for all --
    def stacked_value(self, w: Tensor, lam: Tensor | float, settings: dict[str, Tensor] | None = None) -> Tensor:
        """[λ_k·R_k(w_k)]_k, [K], differentiable."""
        return self._mapped(type(self)._value, w, lam, settings)

    def stacked_grad(self, w: Tensor, lam: Tensor | float, settings: dict[str, Tensor] | None = None) -> Tensor:
        """[∇(λ_k·R_k)(w_k)]_k."""
        return self._mapped(type(self)._grad, w, lam, settings)

    def stacked_prox(self, w: Tensor, t: Tensor | float, settings: dict[str, Tensor] | None = None) -> Tensor:
        """[argmin_z ½‖z − w_k‖² + t_k·R_k(z)]_k, t = step·λ per model."""
        return self._mapped(type(self)._prox, w, t, settings)

    def stacked_decayed(self, w: Tensor, t: Tensor | float, settings: dict[str, Tensor] | None = None) -> Tensor:
        """[w_k − ∇(t_k·R_k)(w_k)]_k, the decoupled step with t = lr·λ per model (∇(λ·R) is linear in λ)."""
        return w - self.stacked_grad(w, t, settings)

    def _mapped(self, method, w: Tensor, lam: Tensor | float, settings: dict[str, Tensor] | None) -> Tensor:
        """``method`` (one model's ``_value``, ``_grad`` or ``_prox``) with model k's λ (or t) and
        settings, mapped over k (``vmap``)."""

        def one(w, lam, settings):
            penalty = copy.copy(self)
            penalty.__dict__.update(settings)
            return method(penalty, w, lam)

        def vector(value):
            return value if isinstance(value, Tensor) else torch.full(
                (w.shape[0],), value, dtype=torch.float64, device=w.device)

        settings = {name: vector(value) for name, value in self._per_model_settings(settings).items()}
        return torch.vmap(one)(w, vector(lam), settings)


    # -- a term in its mode ------------------------------------------------------------------------
    def apply_(self, mode: str, w: Tensor, lam: Tensor | float, lr: Tensor | float | None,
               settings: dict[str, Tensor] | None = None, grad: Tensor | None = None,
               grad_scale: Tensor | None = None) -> None:
        """Apply λ·R to K models' stacked ``w`` in ``mode``, in place (λ, lr float64 [K], or one float
        for every model; lr unused when coupled):

        * ``coupled``    grad ← grad + s·∇(λ·R)(w), s = ``grad_scale`` (a GradScaler's scale, for
          gradients a fused optimizer unscales itself) or 1;
        * ``decoupled``  w ← w − lr·∇(λ·R)(w);
        * ``proximal``   w ← prox(w, lr·λ).
        """
        if mode == "coupled":
            step = self.stacked_grad(w, lam, settings)
            grad.add_(step if grad_scale is None else step.mul_(grad_scale))
        elif mode == "decoupled":
            w.copy_(self.stacked_decayed(w, lr * lam, settings))
        else:
            w.copy_(self.stacked_prox(w, lr * lam, settings))

    # -- one tensor (K = 1), λ = self.lam -----------------------------------------------------------
    def value(self, w: Tensor) -> Tensor:
        """λ·R(w), a scalar tensor (differentiable)."""
        return self.stacked_value(w.unsqueeze(0), self.lam)[0]

    def grad(self, w: Tensor) -> Tensor:
        """A (sub)gradient of λ·R at ``w``."""
        return self.stacked_grad(w.unsqueeze(0), self.lam)[0]

    def prox(self, w: Tensor, step: float) -> Tensor:
        """argmin_z ½‖z − w‖² + step·λ·R(z)."""
        return self.stacked_prox(w.unsqueeze(0), step * self.lam)[0]

    # -- lists of one model's tensors, λ given (the regularizer passes λ times its schedule) --------
    def apply_list_(self, mode: str, params: Sequence[Tensor], lam: float, lr: float,
                    grad_scale: Tensor | None = None) -> None:
        """:meth:`apply_` on each of one model's ``params`` (K = 1), the gradients being their ``.grad``."""
        for p in params:
            grad = p.grad.unsqueeze(0) if mode == "coupled" else None
            self.apply_(mode, p.unsqueeze(0), lam, lr, grad=grad, grad_scale=grad_scale)

    def add_grad_(self, grads: Sequence[Tensor], params: Sequence[Tensor], lam: float) -> None:
        """grads += ∇(λ·R)(params)."""
        for g, p in zip(grads, params):
            self.apply_("coupled", p.unsqueeze(0), lam, None, grad=g.unsqueeze(0))

    def decay_(self, params: Sequence[Tensor], lr: float, lam: float) -> None:
        """params -= lr·∇(λ·R)(params)  (decoupled decay)."""
        self.apply_list_("decoupled", params, lam, lr)

    def prox_(self, params: Sequence[Tensor], step: float, lam: float) -> None:
        """params = prox(params, step) with λ given."""
        self.apply_list_("proximal", params, lam, step)

    def total(self, params: Sequence[Tensor], lam: float | None = None) -> Tensor:
        """Σ λ·R(p) over ``params`` (differentiable)."""
        lam = self.lam if lam is None else lam
        values = [self.stacked_value(p.unsqueeze(0), lam)[0] for p in params]
        return sum(values[1:], values[0]) if values else torch.zeros(())

    # -- display -------------------------------------------------------------------------------
    def _args(self) -> str:
        return ", ".join([f"lam={self.lam:g}"] + [f"{k}={v:g}" for k, v in self.setting_values().items()])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._args()})"


PENALTIES: dict[str, type[Penalty]] = {}
"""The penalties the lab knows by name (``reg.penalty=NAME``, ``reg.NAME=λ``), filled by :func:`register`."""


def register(cls: type[Penalty]) -> type[Penalty]:
    """Make ``cls`` known by its ``name``, e.g. as ``reg.penalty=NAME``; usable as a class decorator.

    Its :attr:`Penalty.settings` become config keys ``reg.SETTING``."""
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

    def stacked_value(self, w, lam, settings=None):
        sums = _rows(w).pow(2).sum(1)
        return sums * per_model(0.5 * lam, sums)

    def stacked_grad(self, w, lam, settings=None):
        return w * per_model(lam, w)

    def stacked_prox(self, w, t, settings=None):
        return w / per_model(1 + t, w)

    def stacked_decayed(self, w, t, settings=None):
        return w * per_model(1 - t, w)  # w·(1 − lr·λ), rounded as torch.optim.AdamW rounds it


class L1(Penalty):
    """Lasso.

    value  λ·‖w‖₁
    grad   λ·sign(w), with sign(0) = 0
    prox   soft threshold: sign(w)·max(|w| − step·λ, 0)

    Only the prox (``mode="proximal"``) gives exact zeros. Subgradient descent with ``grad``
    (``mode="coupled"``, or L1 added to the loss) makes weights oscillate around zero instead.
    """

    name = "l1"

    def stacked_value(self, w, lam, settings=None):
        sums = _rows(w).abs().sum(1)
        return sums * per_model(lam, sums)

    def stacked_grad(self, w, lam, settings=None):
        return torch.sign(w) * per_model(lam, w)

    def stacked_prox(self, w, t, settings=None):
        return _soft_threshold(w, t)


class ElasticNet(Penalty):
    """Elastic net in glmnet's form, α = ``l1_ratio``.

    value  λ·(α·‖w‖₁ + (1−α)/2·‖w‖²)
    grad   λ·(α·sign(w) + (1−α)·w)
    prox   soft_threshold(w, step·λ·α) / (1 + step·λ·(1−α))

    α = 1 is ``L1(λ)``, α = 0 is ``L2(λ)``.
    """

    name = "elastic"
    settings = (Setting("l1_ratio", 0.5, 0.0, 1.0, "α of the elastic net: the share of L1"),)

    def stacked_value(self, w, lam, settings=None):
        a = self._per_model_settings(settings)["l1_ratio"]
        rows = _rows(w)
        l1, l2 = rows.abs().sum(1), rows.pow(2).sum(1)
        return l1 * per_model(lam * a, l1) + l2 * per_model(0.5 * lam * (1 - a), l2)

    def stacked_grad(self, w, lam, settings=None):
        a = self._per_model_settings(settings)["l1_ratio"]
        return torch.sign(w) * per_model(lam * a, w) + w * per_model(lam * (1 - a), w)

    def stacked_prox(self, w, t, settings=None):
        a = self._per_model_settings(settings)["l1_ratio"]
        return _soft_threshold(w, t * a) / per_model(1 + t * (1 - a), w)


def _groups(w: Tensor) -> Tensor:
    """[K, groups, p]: one group per output unit / filter (dim 1 of the stack); each model's 1-D or
    0-D tensor is one group."""
    return w.reshape(w.shape[0], w.shape[1], -1) if w.dim() >= 3 else w.reshape(w.shape[0], 1, -1)


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

    def stacked_value(self, w, lam, settings=None):
        g = _groups(w)
        sums = torch.linalg.vector_norm(g, dim=2).sum(1)
        return sums * per_model(lam * math.sqrt(g.shape[2]), sums)

    def stacked_grad(self, w, lam, settings=None):
        g = _groups(w)
        norms = torch.linalg.vector_norm(g, dim=2, keepdim=True)
        scale = torch.where(norms > 0, per_model(lam * math.sqrt(g.shape[2]), g) / norms, torch.zeros_like(norms))
        return (g * scale).reshape(w.shape)

    def stacked_prox(self, w, t, settings=None):
        g = _groups(w)
        norms = torch.linalg.vector_norm(g, dim=2, keepdim=True)
        thr = per_model(t * math.sqrt(g.shape[2]), g)
        keep = torch.where(norms > thr, 1 - thr / norms.clamp_min(thr), torch.zeros_like(norms))
        return (g * keep).reshape(w.shape)


for builtin in (L1, L2, ElasticNet, GroupLasso):
    register(builtin)


def penalty_from_name(name: str, lam: float, **settings_and_hints: Any) -> Penalty:
    """A registered penalty by name (``"l1" | "l2" | "elastic" | "group"`` and any other
    :func:`register`-ed one), with its settings (e.g. ``l1_ratio``) and hints as keywords."""
    cls = PENALTIES.get(str(name).lower())
    if cls is None:
        raise UserError(f"unknown penalty '{name}'; choose one of {', '.join(PENALTIES)}")
    return cls(lam, **settings_and_hints)
