"""Adversarial examples: FGSM, PGD (L∞ and L2) and TRADES' KL maximization, in the style of torchattacks.

Threat model: inputs lie in [0, 1] and ε is measured on that scale. Any normalization
(mean/std) belongs inside the model, so that the ε-ball is the one a person means.

Every attack is a small frozen object with one uniform call::

    x_adv = attack(model, x, y)              # worst case over restarts, per example
    x_adv, fooled = attack.success(model, x, y)

The model must return logits of shape (N, C); the loss is cross-entropy on them. During the
attack the model is in eval mode (unless ``eval_mode=False``) and every submodule's training
flag is restored exactly afterwards. Gradients are taken with respect to the input only
(``torch.autograd.grad``), so no ``.grad`` ever appears on the model's parameters, and the attack
works under an outer ``torch.no_grad()``.

One implementation attacks M models at once: ``attack.stacked(forward, x, y, noise)`` takes a
stacked forward pass ``forward(x, train)`` mapping inputs [M, B, ...] to logits [M, B, C] and each
model's batch x [M, B, ...], y [M, B]. The models are independent, so one gradient of
Σ_m loss_m with respect to the stacked x gives each model its own ∇ₓ loss_m; every step,
projection, norm and restart choice acts per (model, example). The module form above is the
stacked form with M = 1 (:class:`ModuleForward` puts the batch in a stack of one).

Random starts come from a ``noise`` source (:class:`Noise`): :class:`TorchNoise` (torch's global
generator, as torchattacks draws; the module form's default, used by robust evaluation) or
counter-based draws keyed by (model seed, training step, draw),
``reglab.counter_random.CounterStream``: adversarial training uses those, so that a model's random
starts are the same whether it trains alone or in a batch, on any device.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import contextlib
import dataclasses
import math
from dataclasses import dataclass
from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

from reglab.errors import UserError

NORMS = ("linf", "l2")
_TINY = 1e-12


# --------------------------------------------------------------------------- validation


def check_eps(eps: float, norm: str, key: str = "attack eps") -> float:
    """The one rule for a budget ε: a finite number ≥ 0 and, for L∞, at most 1 (the whole [0, 1]
    input range); ``key`` names it in the error (``adv.eval_eps`` for a config's)."""
    if norm not in NORMS:
        raise UserError(f"unknown attack norm {norm!r}; choose one of: {', '.join(NORMS)}")
    try:
        eps = float(eps)
    except (TypeError, ValueError):
        raise UserError(f"{key} must be a number, got {eps!r}") from None
    if not eps >= 0 or math.isinf(eps):  # also rejects NaN
        raise UserError(f"{key} must be a finite number >= 0, got {eps}")
    if norm == "linf" and eps > 1:
        raise UserError(
            f"{key}={eps} is an L∞ budget above 1: larger than 1 reaches the whole [0, 1] input range; "
            "ε is on the [0, 1] pixel scale (8/255 ≈ 0.031 is common for images, 0.1-0.3 for MNIST)"
        )
    return eps


def check_inputs(x: torch.Tensor, y: torch.Tensor) -> int:
    """Check a batch for an attack; return the largest label (or -1 for an empty batch).

    Inputs must be a float tensor (N, ...) with values in [0, 1]; labels integer class
    indices of shape (N,), >= 0. One device synchronization in all.
    """
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise UserError("attacks need torch tensors: inputs x of shape (N, ...) and labels y of shape (N,)")
    if not x.is_floating_point():
        raise UserError(f"attack inputs must be floating point in [0, 1], got dtype {x.dtype}")
    if x.ndim < 2:
        raise UserError(f"attack inputs must have a batch dimension, shape (N, ...); got shape {tuple(x.shape)}")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise UserError(
            f"labels must have shape (N,) = ({x.shape[0]},) to match the inputs; got shape {tuple(y.shape)}"
        )
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise UserError(f"labels must be integer class indices, got dtype {y.dtype}")
    if x.shape[0] == 0:
        return -1
    lo, hi, ymin, ymax = torch.stack(
        [x.detach().min().double(), x.detach().max().double(), y.min().double(), y.max().double()]
    ).tolist()
    if not (lo >= 0 and hi <= 1):
        raise UserError(
            f"attack inputs must lie in [0, 1] (saw min {lo:.4g}, max {hi:.4g}); "
            "eps is measured on that scale, so put normalization (mean/std) inside the model"
        )
    if ymin < 0:
        raise UserError(f"labels must be class indices >= 0, saw {int(ymin)}")
    return int(ymax)


def check_logits(out: object, n: int, y_max: int) -> None:
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if not (isinstance(out, torch.Tensor) and out.ndim == 2 and out.shape[0] == n and out.shape[1] >= 2):
        hint = ""
        if isinstance(out, torch.Tensor) and out.shape[:1] == (n,) and (out.ndim == 1 or out.shape[1:] == (1,)):
            hint = " (a regression output or a single logit is not a classifier; return one logit per class)"
        raise UserError(
            f"attacks need a classifier returning logits of shape (N, C) with C >= 2; "
            f"for a batch of N={n} the model returned {shape}{hint}"
        )
    if y_max >= out.shape[1]:
        raise UserError(f"labels must be in [0, {out.shape[1] - 1}] for a model with {out.shape[1]} classes; saw {y_max}")


@contextlib.contextmanager
def model_mode(model, eval_mode: bool):
    """Eval mode for the duration, then every submodule's own training flag back."""
    if not eval_mode or not isinstance(model, torch.nn.Module):
        yield
        return
    flags = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, training in flags:
            m.training = training


# --------------------------------------------------------------------------- stacked forward passes and noise


Forward = Callable[[Tensor, bool], Tensor]
"""``forward(x, train)``: the logits [M, B, C] of M models on their inputs [M, B, ...]; ``train``
runs the models in training mode (dropout), else in eval mode. The forward a training step hands
to ``AdversarialTask.stacked_loss`` also carries ``random``, the models' :class:`Noise` of the step."""


class Noise(Protocol):
    """Where an attack's random starts come from; shapes are [M, B, ...], row m model m's.
    :class:`TorchNoise`, or the counter-based ``reglab.counter_random.CounterStream``."""

    def uniform(self, shape: tuple[int, ...], low: float, high: float, like: Tensor) -> Tensor:
        """Uniform on [low, high), in ``like``'s dtype and on its device."""

    def normal(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """Standard normal, in ``like``'s dtype and on its device."""


class ModuleForward:
    """A model as a stack of one: ``forward(x, train)`` runs ``model(x[0])`` for x [1, B, ...] and
    returns the logits [1, B, C], checked to be a classifier's (and to cover labels up to
    ``y_max``). ``train=False`` runs it in eval mode (its flags restored after); ``train=True`` in
    the mode it is in. ``random``: the model's random numbers of this training step (adversarial
    training's random starts, ``AdversarialTask.loss``)."""

    def __init__(self, model, y_max: int = -1, random: Noise | None = None):
        self.model, self.y_max, self.random = model, y_max, random

    def __call__(self, x: Tensor, train: bool) -> Tensor:
        with model_mode(self.model, eval_mode=not train):
            logits = self.model(x[0])
        check_logits(logits, x.shape[1], self.y_max)
        return logits.unsqueeze(0)


class TorchNoise:
    """Draws from torch's global generator (``torch.manual_seed`` makes them repeatable)."""

    def uniform(self, shape, low, high, like):
        return torch.empty(shape, dtype=like.dtype, device=like.device).uniform_(low, high)

    def normal(self, shape, like):
        return torch.randn(shape, dtype=like.dtype, device=like.device)


def cross_entropy_sum(logits: Tensor, y: Tensor) -> Tensor:
    """Σ over models and examples of CE(logits[m, b], y[m, b]), for logits [M, B, C] and y [M, B]."""
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="sum")


def _input_grad(forward: Forward, x: Tensor, y: Tensor, train: bool) -> Tensor:
    """∇ₓ of the summed cross-entropy of every model (parameters get no .grad)."""
    x.requires_grad_(True)
    (g,) = torch.autograd.grad(cross_entropy_sum(forward(x, train), y), x)
    return g


def _bshape(x: Tensor) -> tuple[int, ...]:
    """The shape that broadcasts a [M, B] per-example value over x [M, B, ...]."""
    return tuple(x.shape[:2]) + (1,) * (x.ndim - 2)


def _norms(x: Tensor) -> Tensor:
    """The L2 norm of each example of x [M, B, ...]: [M, B]."""
    return torch.linalg.vector_norm(x.flatten(2), dim=2)


# --------------------------------------------------------------------------- attacks


class Attack(ABC):
    """The base of every attack: the module form (validation, a stack of one), restarts. A new
    attack subclasses it and defines ``_perturb`` on stacked inputs."""

    restarts: int = 1
    eval_mode: bool = True

    @abstractmethod
    def _perturb(self, forward: Forward, x0: Tensor, y: Tensor, noise: Noise) -> Tensor:
        """One attack run from the stacked clean inputs ``x0`` [M, B, ...]: the perturbed inputs."""

    def __call__(self, model, x: Tensor, y: Tensor, noise: Noise | None = None) -> Tensor:
        """Adversarial inputs for (x, y): same shape, in [0, 1], within the ε-ball of x; random
        starts from ``noise`` (default: torch's global generator)."""
        return self._run_module(model, x, y, noise, want_success=False)[0]

    def success(self, model, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """``(x_adv, fooled)``: fooled[i] is True when the model's argmax on x_adv[i] is not y[i]."""
        return self._run_module(model, x, y, None, want_success=True)

    def stacked(self, forward: Forward, x: Tensor, y: Tensor, noise: Noise) -> Tensor:
        """The adversarial inputs [M, B, ...] of M stacked models, each attacked on its own batch
        x [M, B, ...], y [M, B] (module docstring); x is trusted to lie in [0, 1]."""
        return self._run(forward, x.detach(), y.detach(), noise, want_success=False)[0]

    def _run_module(self, model, x, y, noise, want_success):
        y_max = check_inputs(x, y)
        x0 = x.detach()
        if x0.shape[0] == 0:
            return x0.clone(), torch.zeros(0, dtype=torch.bool, device=x0.device)
        forward = ModuleForward(model, y_max)
        x_adv, fooled = self._run(forward, x0.unsqueeze(0), y.detach().long().unsqueeze(0),
                                  noise or TorchNoise(), want_success)
        return x_adv[0], None if fooled is None else fooled[0]

    def _run(self, forward, x0, y, noise, want_success):
        """The attack from x0 [M, B, ...]: with restarts, per (model, example) a restart that
        fools the model, otherwise the one with the highest loss; ``fooled`` [M, B] on request."""
        with torch.enable_grad():
            best = best_loss = best_fooled = None
            for _ in range(self.restarts):
                x_adv = self._perturb(forward, x0, y, noise)
                if self.restarts == 1 and not want_success:
                    return x_adv, None
                with torch.no_grad():
                    logits = forward(x_adv, not self.eval_mode)
                    loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(y.shape)
                    fooled = logits.argmax(-1) != y
                if best is None:
                    best, best_loss, best_fooled = x_adv, loss, fooled
                    continue
                # Keep a restart that fools the model; among those that do not, the highest loss.
                take = (fooled & ~best_fooled) | (~fooled & ~best_fooled & (loss > best_loss))
                best = torch.where(take.view(_bshape(x_adv)), x_adv, best)
                best_loss = torch.where(take, loss, best_loss)
                best_fooled = best_fooled | fooled
            return best, best_fooled


@dataclass(frozen=True)
class FGSM(Attack):
    """Fast gradient sign method (Goodfellow et al. 2015), L∞:

        x_adv = clip_[0,1]( x + ε · sign(∇ₓ CE(f(x), y)) )

    ``eval_mode=False`` leaves the model's mode alone (some adversarial training attacks in train mode).
    """

    eps: float
    eval_mode: bool = True

    def __post_init__(self):
        object.__setattr__(self, "eps", check_eps(self.eps, "linf"))

    norm = "linf"

    def _perturb(self, forward, x0, y, noise):
        x = x0.clone()
        g = _input_grad(forward, x, y, not self.eval_mode)
        return x.detach().add_(g.sign(), alpha=self.eps).clamp_(0, 1)


@dataclass(frozen=True)
class PGD(Attack):
    """Projected gradient descent (Madry et al. 2018) on the cross-entropy, L∞ or L2.

    Start at x₀ (or a uniform random point of the ε-ball when ``random_start``), then ``steps`` times

        L∞:  x ← Π( x + α · sign(∇ₓ L) )
        L2:  x ← Π( x + α · ∇ₓ L / ‖∇ₓ L‖₂ )

    where Π clips to the ε-ball around x₀ and then to [0, 1] (for L∞ this is the exact projection
    onto the intersection; for L2 it is the usual ball-then-box projection, which stays feasible).
    The default step is α = 2.5·ε/steps, the heuristic of the ``robustness`` library (Engstrom et
    al. 2019); Madry et al. (2018) used α = 0.01 at ε = 0.3 with 40 steps on MNIST. With
    ``restarts`` > 1 the attack runs again from new random starts and keeps, per example, a
    restart that fools the model, otherwise the one with the highest loss; it never does worse than
    its first restart. The last iterate of each restart is used, as in torchattacks.
    """

    eps: float
    alpha: float | None = None
    steps: int = 10
    norm: str = "linf"
    random_start: bool = True
    restarts: int = 1
    eval_mode: bool = True

    def __post_init__(self):
        object.__setattr__(self, "eps", check_eps(self.eps, self.norm))
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps <= 0:
            raise UserError(f"PGD steps must be an integer >= 1, got {self.steps!r}")
        if isinstance(self.restarts, bool) or not isinstance(self.restarts, int) or self.restarts < 1:
            raise UserError(f"PGD restarts must be an integer >= 1, got {self.restarts!r}")
        if self.restarts > 1 and not self.random_start:
            raise UserError("PGD restarts > 1 need random_start=True (otherwise every restart is the same)")
        if self.alpha is not None:
            a = float(self.alpha)
            if not a > 0 or math.isinf(a):
                raise UserError(f"PGD step size alpha must be a finite number > 0, got {self.alpha!r}")
            object.__setattr__(self, "alpha", a)

    @property
    def step_size(self) -> float:
        """α: the given ``alpha``, else 2.5·ε/steps."""
        return self.alpha if self.alpha is not None else 2.5 * self.eps / self.steps

    def _gradient(self, forward, x0, y):
        """``grad(x)``: ∇ₓ of the loss the attack ascends, the cross-entropy of every model."""
        train = not self.eval_mode
        return lambda x: _input_grad(forward, x, y, train)

    def _start(self, x0, noise):
        """The first iterate: x₀, or a uniform random point of the ε-ball when ``random_start``:
        L∞ x₀ + δ, δ ~ U(−ε, ε)^d; L2 x₀ + ε·U^(1/d)·g/‖g‖₂, g ~ N(0, I_d), U ~ U(0, 1) (the
        direction uniform on the sphere, the radius that makes the point uniform in the ball);
        then clipped to [0, 1]."""
        x = x0.clone()
        if not self.random_start:
            return x
        if self.norm == "linf":
            return x.add_(noise.uniform(x0.shape, -self.eps, self.eps, x0)).clamp_(0, 1)
        d = noise.normal(x0.shape, x0)
        n = _norms(d).clamp_(min=_TINY)
        r = self.eps * noise.uniform(x0.shape[:2], 0.0, 1.0, x0).pow_(1.0 / x0[0, 0].numel())
        return x.add_(d.mul_((r / n).view(_bshape(x0)))).clamp_(0, 1)

    def _perturb(self, forward, x0, y, noise):
        gradient = self._gradient(forward, x0, y)
        x = self._start(x0, noise)
        step = self._linf_step(x0) if self.norm == "linf" else self._l2_step(x0)
        for _ in range(self.steps):
            x = step(x, gradient(x))
        return x.detach()

    def _linf_step(self, x0):
        """x ← Π(x + α·sign(g)): clip to the ε-ball around x₀ intersected with [0, 1]."""
        eps, alpha = self.eps, self.step_size
        lo, hi = (x0 - eps).clamp_(min=0), (x0 + eps).clamp_(max=1)
        return lambda x, g: torch.minimum(torch.maximum(x.detach().add_(g.sign(), alpha=alpha), lo), hi)

    def _l2_step(self, x0):
        """x ← Π(x + α·g/‖g‖₂): shrink into the ε-ball around x₀, then clip to [0, 1]."""
        eps, alpha, shape = self.eps, self.step_size, _bshape(x0)

        def step(x, g):
            gn = _norms(g).add_(_TINY)
            delta = x.detach().add_(g / gn.view(shape), alpha=alpha).sub_(x0)
            dn = _norms(delta).clamp_(min=_TINY)
            return delta.mul_((eps / dn).clamp_(max=1).view(shape)).add_(x0).clamp_(0, 1)

        return step


@dataclass(frozen=True)
class FGSMRS(Attack):
    """FGSM from a random start (Wong et al. 2020), L∞: δ₀ ~ U(−ε, ε)^d, then one step

        x_adv = Π( x + δ₀ + α · sign(∇ₓ CE(f(x + δ₀), y)) ),   α = 1.25·ε by default,

    with Π the clip to the ε-ball around x and to [0, 1]: PGD-1 from a random start."""

    eps: float
    alpha: float | None = None
    norm: str = "linf"
    eval_mode: bool = True

    def __post_init__(self):
        if self.norm != "linf":
            raise UserError(f"fgsm-rs is an L∞ method (norm {self.norm!r} given); use the linf norm, "
                            "or pgd for an L2 ball")
        object.__setattr__(self, "eps", check_eps(self.eps, "linf"))

    def _perturb(self, forward, x0, y, noise):
        alpha = self.alpha if self.alpha is not None else 1.25 * self.eps
        one_step = PGD(self.eps, alpha=alpha, steps=1, random_start=True, eval_mode=self.eval_mode)
        return one_step._perturb(forward, x0, y, noise)


@dataclass(frozen=True)
class TRADES(PGD):
    """TRADES' inner maximization (Zhang et al. 2019): x' ≈ argmax_{x'∈B(x,ε)∩[0,1]^d} KL(p(x) ‖ p(x')).

    PGD's steps and projection on the summed KL(p(xᵢ) ‖ p(x'ᵢ)) instead of the cross-entropy,
    started at x + 0.001·N(0, I) (``random_start`` and ``restarts`` do not apply); ``y`` is only
    used to check the logits.
    """

    def __post_init__(self):
        super().__post_init__()
        if self.restarts != 1:
            raise UserError(f"TRADES runs once from its small Gaussian start; restarts must be 1, got {self.restarts!r}")

    def _gradient(self, forward, x0, y):
        train = not self.eval_mode
        with torch.no_grad():
            p_clean = F.softmax(forward(x0, train), dim=-1)

        def grad(x):
            x.requires_grad_(True)
            kl = F.kl_div(F.log_softmax(forward(x, train), dim=-1), p_clean, reduction="sum")
            return torch.autograd.grad(kl, x)[0]

        return grad

    def _start(self, x0, noise):
        return (x0 + 0.001 * noise.normal(x0.shape, x0)).clamp_(0, 1)


# --------------------------------------------------------------------------- the registry


ATTACKS: dict[str, type[Attack]] = {}
"""The attacks ``adv.attack=NAME`` trains with, by name."""


def register_attack(name: str, cls: type[Attack]) -> type[Attack]:
    """Make the dataclass ``cls`` (an :class:`Attack`) the training attack ``adv.attack=NAME``.

    A run builds it from the config: each of its dataclass fields takes the ``adv.*`` key of that
    name (``eps``, ``alpha``, ``steps``, ``norm``, ``restarts``), ``eval_mode`` takes
    ``adv.attack_mode == "eval"``, and a field without a key keeps its default. Its own
    ``__post_init__`` is the check of those values; a config that breaks it is refused before any
    run starts. A name is registered once.
    """
    if not (isinstance(cls, type) and issubclass(cls, Attack) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"attack {name!r}: {cls!r} is not a dataclass subclass of Attack")
    if name in ATTACKS or name == "none":
        raise ValueError(f"attack {name!r} is already registered")
    ATTACKS[name] = cls
    return cls


def attack_names() -> tuple[str, ...]:
    """The registered training attacks' names, in the order of registration."""
    return tuple(ATTACKS)


for _name, _cls in (("pgd", PGD), ("fgsm-rs", FGSMRS), ("trades", TRADES)):
    register_attack(_name, _cls)
