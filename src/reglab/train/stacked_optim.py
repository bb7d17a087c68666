"""The optimizer step, gradient clipping and penalty term of the batched engine
(:mod:`reglab.train.stacked`) on stacked tensors ``[M, ...]``, with a learning rate, weight decay and
λ per model (``[M]`` vectors broadcast over the model dimension)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from reglab.penalties import Penalty, per_model
from reglab.tasks.plan import Plan


def clip_(grads: list[Tensor], clip_norm: float | None, clip_value: float | None) -> None:
    """``clip_grad_norm_`` and ``clip_grad_value_`` of torch, each model by its own global norm."""
    if clip_norm is not None:
        norms = torch.stack([torch.linalg.vector_norm(g.flatten(1), dim=1) for g in grads], 1)
        total = torch.linalg.vector_norm(norms, dim=1)
        coef = torch.clamp(clip_norm / (total + 1e-6), max=1.0)
        for g in grads:
            g.mul_(coef.view(-1, *([1] * (g.dim() - 1))))
    if clip_value is not None:
        for g in grads:
            g.clamp_(-clip_value, clip_value)


class StackedOptimizer:
    """torch's SGD (momentum), Adam and AdamW (single-tensor form) on stacked tensors, with the
    learning rate lr_m and weight decay wd_m of each model. Adam, at step t:

        g ← g + wd·w (Adam) or w ← w·(1 − lr·wd) (AdamW);   m ← m + (1 − β₁)(g − m)  (``lerp``);
        v ← β₂·v + (1 − β₂)·g²;   w ← w − lr/(1 − β₁ᵗ) · m / (√v / √(1 − β₂ᵗ) + ε).

    SGD: g ← g + wd·w;  b ← g (first step), b ← μ·b + g;  w ← w − lr·b.

    Why not torch's own functions (``torch.optim.adam.adam``, ``torch.optim.sgd.sgd``): they take
    one lr and one weight decay per call, so models with their own lr need one call per model on
    their rows, and with one shared lr on the stacked tensors they give the same bits as this class
    but take longer on CPU (``benchmarks/stacked_optimizer.py``; the figures are in docs/benchmarks.md).
    """

    def __init__(self, plan: Plan):
        self.name, self.plan = plan.optimizer, plan  # the plan's hyper-parameters every model shares
        self.steps = 0
        self.shared_lr: float | None = None  # set per epoch: the lr every model has, if they share one
        self.state: dict[str, list[Tensor]] = {}

    def select(self, keep: Tensor) -> None:
        self.state = {name: [s[keep] for s in states] for name, states in self.state.items()}

    def step(self, params: dict[str, Tensor], grads: dict[str, Tensor], lr: Tensor,
             wd: Tensor | None) -> None:
        """One step; ``wd`` is None when no model has weight decay."""
        if self.name == "sgd":
            self.sgd(params, grads, lr, wd)
        else:
            self.adam(params, grads, lr, wd)
        self.steps += 1

    def sgd(self, params, grads, lr, wd) -> None:
        momentum = self.plan.momentum
        for name, w in params.items():
            g = grads[name]
            if wd is not None:
                g = torch.addcmul(g, w, per_model(wd, w))
            if momentum:
                if name in self.state:
                    g = self.state[name][0].mul_(momentum).add_(g)
                else:
                    self.state[name] = [g.clone()]
                    g = self.state[name][0]
            w.addcmul_(g, per_model(-lr, w))

    def adam(self, params, grads, lr, wd) -> None:
        beta1, beta2 = self.plan.betas
        t = self.steps + 1
        neg_step = -(lr / (1 - beta1**t))
        shared = None if self.shared_lr is None else -(self.shared_lr / (1 - beta1**t))
        bias2_sqrt = (1 - beta2**t) ** 0.5
        for name, w in params.items():
            g = grads[name]
            if wd is not None and self.name == "adamw":
                w.mul_(per_model(1 - lr * wd, w))
            elif wd is not None:
                g = torch.addcmul(g, w, per_model(wd, w))
            if name not in self.state:
                self.state[name] = [torch.zeros_like(w), torch.zeros_like(w)]
            exp_avg, exp_avg_sq = self.state[name]
            exp_avg.lerp_(g, 1 - beta1)
            exp_avg_sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            denom = exp_avg_sq.sqrt().div_(bias2_sqrt).add_(self.plan.eps)
            if shared is not None:
                w.addcdiv_(exp_avg, denom, value=shared)
            else:
                w.add_(torch.mul(exp_avg, per_model(neg_step, w)).div_(denom))


class StackedTerm:
    """The config's penalty term on the selected stacked weights, with λ_m (and the penalty's
    settings, e.g. l1_ratio) per model, applied in its mode by the penalty's own
    :meth:`~reglab.penalties.Penalty.apply_`, as the Regularizer applies it to one model:
    coupled and decoupled before the optimizer step, proximal after it."""

    def __init__(self, penalty: Penalty, mode: str, names: list[str], settings: dict[str, Tensor],
                 schedule: Callable[[int], float]):
        self.penalty, self.mode, self.names = penalty, mode, names
        self.settings, self.schedule = settings, schedule

    def select(self, keep: Tensor) -> None:
        self.settings = {name: values[keep] for name, values in self.settings.items()}

    def before_step(self, params: dict[str, Tensor], grads: dict[str, Tensor], lr: Tensor,
                    lam: Tensor) -> None:
        if self.mode != "proximal":
            self._apply(params, grads, lr, lam)

    def after_step(self, params: dict[str, Tensor], lr: Tensor, lam: Tensor) -> None:
        if self.mode == "proximal":
            self._apply(params, {}, lr, lam)

    def _apply(self, params: dict[str, Tensor], grads: dict[str, Tensor], lr: Tensor, lam: Tensor) -> None:
        for name in self.names:
            self.penalty.apply_(self.mode, params[name], lam, lr, self.settings, grad=grads.get(name))
