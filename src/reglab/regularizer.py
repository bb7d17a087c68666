"""The Regularizer: binds penalty terms to a model and applies them around any optimizer's step.

A term is (penalty, selection, mode, schedule). Modes:

``coupled``    before the step, ``p.grad += ∇(λ·R)(p)``. Exactly the same as adding
               ``reg.penalty()`` to the loss (what ``torch.optim.Adam(weight_decay=λ)`` does for
               L2), but without building an autograd graph. L1 this way is subgradient descent:
               weights oscillate around zero and do *not* become exactly zero.
``decoupled``  before the step, ``p ← p − lr·∇(λ·R)(p)`` with ``lr`` of ``p``'s param group, so
               the penalty does not pass through the optimizer's moment estimates. For L2 that is
               ``p ← p·(1 − lr·λ)``: L2 decoupled + ``Adam`` is exactly ``AdamW(weight_decay=λ)``.
``proximal``   after the step, ``p ← prox(p, lr)`` with ``lr`` of ``p``'s param group (threshold
               lr·λ). With SGD this is proximal gradient descent (ISTA): L1 gives exact zeros. With
               adaptive optimizers it is the usual heuristic with the same threshold.

``reg.attach(optimizer)`` registers the optimizer's step pre-/post-hooks, so that nothing else in
the training loop changes. Params that got no gradient in a step are skipped, as the optimizer
skips them. Note that the coupled gradient is added inside ``optimizer.step()``, i.e. *after*
any gradient clipping done before it; add ``reg.penalty()`` to the loss instead if clipping must
see the penalty's gradient.

``optimizer.step(closure)`` (LBFGS, PyTorch Lightning) is handled by wrapping the closure: after
every evaluation of it, the coupled terms' gradient is added and their value is added to the loss it
returns (LBFGS's line search needs the true objective); the decoupled decay is applied once, after
the first evaluation, i.e. at the weights the gradient was taken at, exactly as without a closure.
Param groups added to the optimizer after ``attach`` (``add_param_group``) are seen at the next
step. ``reg.penalty()`` computed with gradients enabled between two steps of the attached optimizer
warns once: in the loss as well, the terms would be applied twice.

Under a ``torch.amp.GradScaler`` with a fused optimizer, the coupled gradient is scaled as the
gradients are, and a step the scaler skips applies no term and is not counted (:func:`_skipped`).

λ schedules (``constant()``, ``warmup(steps)``, :mod:`reglab.schedules`) scale a term's λ by a factor of the number of
optimizer steps taken, counted by the attached optimizer (``reg.steps``; restore it with
``load_state_dict``). Schedules are per step; for ``n`` epochs pass ``n * steps_per_epoch``.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

import torch
from torch import Tensor, nn

from reglab.errors import UserError, warn_user
from reglab.penalties import Penalty, penalty_from_name
from reglab.schedules import Schedule, constant, warmup
from reglab.selection import (
    WEIGHT_PARAMS,
    Selection,
    biases,
    embeddings,
    everything,
    named_parameters,
    norms,
    selection_from_string,
    weights,
)

__all__ = ["Regularizer", "Term", "Schedule", "constant", "warmup", "MODES"]

MODES = ("coupled", "decoupled", "proximal")
ONE_OF_KIND = {"norms": "norm", "embeddings": "embedding", "biases": "bias", "weights": "weight", "other": "other"}


def _check_mode(mode: Any) -> str:
    if mode not in MODES:
        raise UserError(f"unknown regularization mode {mode!r}; choose one of {', '.join(MODES)}")
    return mode


# -- terms --------------------------------------------------------------------------------------


class Term:
    """One penalty on one selection, applied in one mode, with one λ schedule.

    ``on``, ``mode`` and ``schedule`` default to the penalty's own hints (``L2(1e-4, on=…)``),
    then to ``weights()``, the regularizer's mode and ``constant()``. ``name`` is what
    :meth:`Regularizer.values`, :meth:`Regularizer.describe` and the logged keys call the term
    (default: the penalty's name, followed by ``:<selection>`` when that is not ``weights()``).
    """

    def __init__(
        self,
        penalty: Penalty,
        on: Selection | str | None = None,
        mode: str | None = None,
        schedule: Schedule | Callable[[int], float] | None = None,
        name: str | None = None,
    ):
        if not isinstance(penalty, Penalty):
            raise UserError(f"a term needs a penalty such as L2(1e-4), got {penalty!r}")
        on = penalty.on if on is None else on
        if isinstance(on, str):
            on = selection_from_string(on)
        if on is not None and not isinstance(on, Selection):
            raise UserError(f"on= must be a selection such as weights(), got {on!r}")
        mode = penalty.mode if mode is None else mode
        schedule = penalty.schedule if schedule is None else schedule
        if schedule is not None and not callable(schedule):
            raise UserError(f"schedule= must be constant(), warmup(n) or a callable, got {schedule!r}")
        if name is not None and not (isinstance(name, str) and name.strip()):
            raise UserError(f"name= must be a non-empty string, got {name!r}")
        self.penalty = penalty
        self.name = name
        self.on = on
        self.mode = None if mode is None else _check_mode(mode)
        self.schedule = schedule

    def __repr__(self):
        parts = [repr(self.penalty)]
        if self.on is not None:
            parts.append(f"on={self.on!r}")
        if self.mode is not None:
            parts.append(f"mode={self.mode!r}")
        if self.schedule is not None:
            parts.append(f"schedule={self.schedule!r}")
        if self.name is not None:
            parts.append(f"name={self.name!r}")
        return f"Term({', '.join(parts)})"


class _Bound:
    """A term resolved on a model: its parameters, and (once attached) their param groups."""

    def __init__(self, term: Term, model: nn.Module, default_mode: str):
        self.penalty = term.penalty
        self.selection = term.on if term.on is not None else weights()
        self.mode = term.mode or default_mode
        self.schedule = term.schedule if term.schedule is not None else constant()
        self.named = self.selection.resolve(model)
        self.tensors = [p for _, p in self.named]
        self.chunks: list[tuple[dict, list[Tensor]]] = []  # (param group, its params)
        label = self.selection.label
        self.name = term.name or (self.penalty.name if label == "weights" else f"{self.penalty.name}:{label}")

    def lam(self, step: int) -> float:
        return self.penalty.lam * float(self.schedule(step))


def _lr(group: dict) -> float:
    lr = group["lr"]
    return float(lr) if isinstance(lr, Tensor) else lr


def _with_grad(params: Sequence[Tensor]) -> list[Tensor]:
    return [p for p in params if p.grad is not None]


def _skipped(optimizer: torch.optim.Optimizer) -> bool:
    """Whether a GradScaler skips this step of a fused optimizer.

    A non-fused optimizer's ``step`` is not called on a step the scaler skips (inf or NaN found), so
    its hooks do not run. A fused one (``_step_supports_amp_scaling``) is called with two attributes
    set by ``GradScaler.step``: ``found_inf`` (non-zero: the kernel leaves the step out) and
    ``grad_scale`` (the scale the kernel divides the still-scaled gradients by; None after an
    explicit ``scaler.unscale_``). Reading ``found_inf`` costs a host sync in each hook, only in that case.
    """
    found_inf = getattr(optimizer, "found_inf", None)
    return found_inf is not None and bool(found_inf.item())


def _embedding_like(name: str) -> bool:
    own = name.rpartition(".")[2].lower()
    return "embed" in own or "token" in own


def _group_sizes(optimizer: torch.optim.Optimizer) -> list[tuple[int, int]]:
    return [(id(g), len(g["params"])) for g in optimizer.param_groups]


# -- the regularizer ----------------------------------------------------------------------------


class Regularizer:
    """Penalty terms bound to ``model``.

    ``terms`` is a penalty, a :class:`Term`, or a list of them; ``mode`` is the default for terms
    that do not set one. Each term's selection defaults to :func:`reglab.weights`.

    >>> reg = Regularizer(model, [L2(1e-4, on=weights() - named("head.*")),
    ...                           L1(1e-5, on=named("head.*"))])
    >>> opt = reg.attach(torch.optim.Adam(model.parameters(), lr=1e-3))
    """

    def __init__(
        self, model: nn.Module, terms: Penalty | Term | Iterable[Penalty | Term], mode: str = "coupled"
    ):
        if not isinstance(model, nn.Module):
            raise UserError(f"Regularizer needs an nn.Module, got {type(model).__name__}")
        self.model = model
        self.mode = _check_mode(mode)
        if isinstance(terms, str):
            raise UserError(f"terms must be penalties such as L2(1e-4), not the string {terms!r}")
        if isinstance(terms, (Penalty, Term)):
            terms = [terms]
        self.terms = [t if isinstance(t, Term) else Term(t) for t in terms]
        self._bound = [_Bound(t, model, self.mode) for t in self.terms]
        seen: dict[str, int] = {}
        for b in self._bound:
            if not b.tensors:
                raise UserError(
                    f"term '{b.name}' ({b.penalty!r} on {b.selection!r}) selects no parameter of the model"
                )
            seen[b.name] = seen.get(b.name, 0) + 1
            if seen[b.name] > 1:
                b.name = f"{b.name}#{seen[b.name]}"
        self._coupled = [b for b in self._bound if b.mode == "coupled"]
        self._decoupled = [b for b in self._bound if b.mode == "decoupled"]
        self._proximal = [b for b in self._bound if b.mode == "proximal"]
        self.steps = 0
        self._optimizer: torch.optim.Optimizer | None = None
        self._groups_seen: list[tuple[int, int]] = []  # (id, size) of each param group at binding
        self._handles: list[Any] = []
        self._penalty_with_grad = False  # reg.penalty() taken with grad enabled since the last step
        self._warned_double = False
        self._warned_nobodys = False

    @classmethod
    def from_spec(
        cls,
        model: nn.Module,
        penalty: str,
        lam: float,
        *,
        mode: str = "coupled",
        on: str | Selection = "weights",
        warmup_steps: int = 0,
        **settings: float,
    ) -> Regularizer:
        """From plain values, as in a config: ``penalty`` is a registered penalty's name
        (``l1|l2|elastic|group``…) or ``none``; ``settings`` are its settings (``l1_ratio=…``)."""
        if penalty == "none":
            return cls(model, [], mode=mode)
        pen = penalty_from_name(penalty, lam, **settings)
        schedule = warmup(warmup_steps) if warmup_steps else constant()
        return cls(model, Term(pen, on=on, mode=mode, schedule=schedule), mode=mode)

    # -- optimizer hooks ------------------------------------------------------------------------

    def attach(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Apply the terms at every ``optimizer.step()`` from now on; returns ``optimizer``.

        Attaching to another optimizer detaches from the previous one.
        """
        self.detach()
        self._bind(optimizer)
        held = {id(p) for g in optimizer.param_groups for p in g["params"]}
        self._warn_nobodys([(n, p) for n, p in everything().resolve(self.model) if id(p) in held])
        if self._coupled or self._decoupled:
            self._handles.append(optimizer.register_step_pre_hook(self._pre_hook))
        self._handles.append(optimizer.register_step_post_hook(self._post_hook))
        return optimizer

    def detach(self) -> None:
        """Remove the hooks of :meth:`attach`."""
        for h in self._handles:
            h.remove()
        self._handles = []
        self._optimizer = None

    def _bind(self, optimizer: torch.optim.Optimizer) -> None:
        """Split each term's parameters by the optimizer's param groups (done once)."""
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise UserError(f"attach() needs a torch.optim optimizer, got {type(optimizer).__name__}")
        group_of = {id(p): i for i, g in enumerate(optimizer.param_groups) for p in g["params"]}
        for b in self._bound:
            missing = [n for n, p in b.named if id(p) not in group_of and p.requires_grad]
            if missing:
                shown = ", ".join(missing[:5]) + (", …" if len(missing) > 5 else "")
                raise UserError(
                    f"term '{b.name}' touches {len(missing)} parameter(s) "
                    f"the optimizer does not hold: {shown}"
                )
            by_group: dict[int, list[Tensor]] = {}
            for _, p in b.named:
                if id(p) in group_of:
                    by_group.setdefault(group_of[id(p)], []).append(p)
            b.chunks = [(optimizer.param_groups[i], ps) for i, ps in sorted(by_group.items())]
        wd_ids = {id(p) for g in optimizer.param_groups if g.get("weight_decay") for p in g["params"]}
        decayed = [n for b in self._bound for n, p in b.named if id(p) in wd_ids]
        if decayed:
            warn_user(
                f"the optimizer's own weight_decay also applies to {len(decayed)} parameter(s) "
                f"the regularizer penalizes (e.g. {decayed[0]}): they are decayed twice"
            )
        self._optimizer = optimizer
        self._groups_seen = _group_sizes(optimizer)

    def _rebind_if_changed(self, optimizer: torch.optim.Optimizer) -> None:
        if optimizer is not self._optimizer or _group_sizes(optimizer) != self._groups_seen:
            self._bind(optimizer)

    def _pre_hook(self, optimizer, args, kwargs):
        # args is (optimizer, *positional arguments of step)
        closure = kwargs["closure"] if "closure" in kwargs else args[1] if len(args) > 1 else None
        if closure is None:
            self.before_step(optimizer)
            return None
        self._rebind_if_changed(optimizer)
        wrapped = self._wrap_closure(closure)
        if "closure" in kwargs:
            return args, {**kwargs, "closure": wrapped}
        return (args[0], wrapped, *args[2:]), kwargs

    def _wrap_closure(self, closure: Callable[[], Any]) -> Callable[[], Any]:
        """The closure, followed by the coupled gradients (every evaluation) and the decoupled
        decay (first evaluation only); the loss it returns includes the coupled terms' value."""
        evaluations = 0

        def closure_with_penalty():
            nonlocal evaluations
            loss = closure()
            self._add_coupled_grads()
            if evaluations == 0:
                self._decay()
            evaluations += 1
            if loss is None or not self._coupled:
                return loss
            with torch.no_grad():
                value = sum(b.penalty.total(b.tensors, b.lam(self.steps)) for b in self._coupled)
            return loss + value

        return closure_with_penalty

    def _post_hook(self, optimizer, args, kwargs):
        self.after_step(optimizer)

    def before_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Coupled gradients and decoupled decay, unless a GradScaler skips the step. Called by the
        hook of :meth:`attach` (for a step without closure)."""
        self._rebind_if_changed(optimizer)
        if _skipped(optimizer):
            return
        self._add_coupled_grads(getattr(optimizer, "grad_scale", None))
        self._decay()

    def _add_coupled_grads(self, grad_scale: Tensor | None = None) -> None:
        """grad += ∇(λ·R), or grad_scale·∇(λ·R) where the gradients are still scaled (see :func:`_skipped`)."""
        self._apply(self._coupled, grad_scale)

    def _decay(self) -> None:
        self._apply(self._decoupled)

    def _apply(self, terms: list[_Bound], grad_scale: Tensor | None = None) -> None:
        """Each of ``terms`` in its mode on its parameters that got a gradient, with the lr of their
        param group (:meth:`Penalty.apply_`)."""
        with torch.no_grad():
            for b in terms:
                lam = b.lam(self.steps)
                if lam:
                    for group, tensors in b.chunks:
                        ps = _with_grad(tensors)
                        if ps:
                            b.penalty.apply_list_(b.mode, ps, lam, _lr(group), grad_scale)

    def after_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Proximal maps, then count the step. Called by the hook of :meth:`attach`."""
        self._rebind_if_changed(optimizer)
        if _skipped(optimizer):
            return
        self._apply(self._proximal)
        if self._penalty_with_grad and not self._warned_double:
            warn_user(
                "reg.penalty() was computed with gradients enabled during a step of the optimizer the "
                "regularizer is attached to: if it is in the loss, every term is applied twice. "
                "Attach or add reg.penalty() to the loss, not both; log reg.values() instead."
            )
            self._warned_double = True
        self._penalty_with_grad = False
        self.steps += 1

    # -- values ---------------------------------------------------------------------------------

    def _params(self, b: _Bound, model: nn.Module | None) -> list[Tensor]:
        if model is None or model is self.model:
            return b.tensors
        return [p for _, p in b.selection.resolve(model)]

    def penalty(self, model: nn.Module | None = None) -> Tensor:
        """Σ over terms of λ_t·R(params), differentiable (λ_t includes the schedule factor).

        Add it to the loss *instead of* attaching, not as well.
        """
        if self._optimizer is not None and torch.is_grad_enabled():
            self._penalty_with_grad = True
        values = [b.penalty.total(self._params(b, model), b.lam(self.steps)) for b in self._bound]
        if not values:
            p = next(iter(self.model.parameters()), None)
            return torch.zeros((), device=None if p is None else p.device)
        return sum(values[1:], values[0])

    def values(self) -> dict[str, float]:
        """Each term's current value λ_t·R, by term name (e.g. ``l2``, ``l1:head.*``), for logging."""
        with torch.no_grad():
            return {b.name: float(b.penalty.total(b.tensors, b.lam(self.steps))) for b in self._bound}

    def state_dict(self) -> dict[str, int]:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.steps = int(state["steps"])

    # -- display --------------------------------------------------------------------------------

    def describe(self) -> str:
        """A table: each term's penalty, λ, mode, schedule and the parameters (with shapes) it
        touches, then what no term touches. A tensor shared by several layers is listed once, with
        all its names and its owners."""
        lines = [
            "default selection weights(): every weight matrix or kernel of a layer that computes with it "
            "(Linear, Bilinear, Conv, ConvTranspose weight; MultiheadAttention in_proj_weight, "
            "q/k/v_proj_weight; RNN/LSTM/GRU weight_ih, weight_hh); not biases, norms, embeddings"
        ]
        aliases: dict[int, list[tuple[str, nn.Module]]] = {}
        for n, p, owner in named_parameters(self.model):
            aliases.setdefault(id(p), []).append((n, owner))
        if not self._bound:
            lines.append("no penalty terms")
        for b in self._bound:
            lines.append(
                f"term {b.name}: {b.penalty!r}  mode={b.mode}  schedule={b.schedule!r}  "
                f"on={b.selection!r}"
            )
            shown = [(" = ".join(n for n, _ in aliases[id(p)]), p) for _, p in b.named]
            width = max(len(n) for n, _ in shown)
            for text, p in shown:
                line = f"    {text:<{width}}  {tuple(p.shape)}"
                if len(aliases[id(p)]) > 1:
                    owners = ", ".join(f"{type(m).__name__} {n.rpartition('.')[0]}" for n, m in aliases[id(p)])
                    line += f"  shared by {owners}"
                lines.append(line)
            count = sum(p.numel() for p in b.tensors)
            n = len(b.tensors)
            lines.append(f"    = {n} tensor{'s' * (n != 1)}, {count:,} value{'s' * (count != 1)}")
        self._warn_nobodys(everything().resolve(self.model))
        rest = self._untouched(everything().resolve(self.model))
        counts: dict[str, int] = {}
        for _, p, kind in rest:
            counts[kind] = counts.get(kind, 0) + 1
        detail = ", ".join(f"{v} {k if v != 1 else ONE_OF_KIND[k]}" for k, v in counts.items())
        values = sum(p.numel() for _, p, _ in rest)
        lines.append(f"untouched: {len(rest)} param{'s' * (len(rest) != 1)}, {values:,} value{'s' * (values != 1)}"
                     + (f" ({detail})" if detail else ""))
        return "\n".join(lines)

    def _untouched(self, named: list[tuple[str, Tensor]]) -> list[tuple[str, Tensor, str]]:
        """The parameters of ``named`` that no term touches, each with its kind: norms, embeddings,
        biases, weights (of a layer that :func:`reglab.weights` knows) or other."""
        touched = {id(p) for b in self._bound for p in b.tensors}
        kinds = {"norms": norms(), "embeddings": embeddings(), "biases": biases(), "weights": weights()}
        sets = [(k, s.ids(self.model)) for k, s in kinds.items()]
        return [(n, p, next((k for k, ids in sets if id(p) in ids), "other"))
                for n, p in named if id(p) not in touched]

    def _warn_nobodys(self, named: list[tuple[str, Tensor]]) -> None:
        """Warn once about every weight that is nobody's: a parameter of dim ≥ 2 that no term
        touches and that belongs to no layer :func:`reglab.weights` knows (a weight-normed layer's
        direction ``weight_v`` belongs to its layer), no norm, embedding or bias (``self.proj =
        nn.Parameter(...)`` used as ``x @ self.proj``), so that no default selection finds it. A
        parameter whose own name says it is an embedding or a token (``pos_embed``, ``cls_token``)
        is left out, as embeddings are."""
        if self._warned_nobodys:
            return
        layer_types = tuple(t for types, _ in WEIGHT_PARAMS for t in types)
        layers = {id(p) for m in self.model.modules() if isinstance(m, layer_types) for p in m.parameters()}
        nobodys = [(n, p) for n, p, kind in self._untouched(named)
                   if kind == "other" and p.dim() >= 2 and id(p) not in layers and not _embedding_like(n)]
        if not nobodys:
            return
        shown = ", ".join(f"{n} {tuple(p.shape)}" for n, p in nobodys)
        fix = " | ".join(f'rl.named("{n}")' for n, _ in nobodys)
        warn_user(
            f"no term touches {len(nobodys)} weight(s) that belong to no layer weights() knows: {shown}. "
            f"To penalize them, add them to the selection: on=rl.weights() | {fix}"
        )
        self._warned_nobodys = True

    def __repr__(self) -> str:
        return f"Regularizer({len(self._bound)} terms: {', '.join(b.name for b in self._bound) or 'none'})"
