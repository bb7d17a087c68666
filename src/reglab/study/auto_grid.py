"""``--grid reg.lam=auto:N``: λ values chosen from the data, as glmnet and ``LassoCV`` choose them.

Each combination of the study's other grids (each family: ``reg=l1,l2`` gives two) gets its own N
values, λ_max·RATIO^(i/(N − 1)) for i = 0 … N − 1, from λ_max down to λ_max·RATIO (1e-4 unless
``auto:N:RATIO``). λ_max is :func:`reglab.lam_max.lam_max` of the family's penalty, from the
gradient of the data loss with respect to its selected weights (``reg.on``), estimated once, at
initialization:

* on the training split of the study's first seed (and the first fold with ``--cv``), whole, with
  the model in eval mode (no dropout) and in float64;
* at the model's initial weights (its first seed's initialization), except for a linear model
  (``model.kind=linear``) under L1, elastic net or group lasso: that is taken at its null fit, as
  glmnet does, the selected weights at 0 and the intercept at its optimum with them: the mean
  target (squared loss) or the log class frequencies (cross-entropy). Its λ_max is then glmnet's,
  twice scikit-learn's ``alpha_max`` for squared loss;
* the data loss is the task's criterion on clean inputs (mean squared error or cross-entropy), for
  adversarial training too.

A family without a weight penalty (``reg=none``, ``reg=dropout``) takes no λ from it. The values
are resolved when the spec is made and stored in it (``spec["auto"]``), so a resumed study, its
workers and its report read the same numbers; the grid's text keeps ``auto:N:RATIO``.
"""

from __future__ import annotations

import copy
import json
from typing import Any, Callable

import torch
from optuna.distributions import FloatDistribution
from torch import nn

from reglab.config import Config
from reglab.errors import UserError
from reglab.lam_max import lam_max, read_at_zero
from reglab.penalties import penalty_from_name
from reglab.selection import selection_from_string
from reglab.study.grid import Grid, check_distinct, product
from reglab.train.experiment import prepare

CHUNK = 4096  # examples per forward pass of the gradient


def auto_grid(grids: list[Grid]) -> Grid | None:
    """The grids' ``auto`` grid, or None; a key in two grids is refused."""
    check_distinct(grids)
    return next((g for g in grids if g.auto is not None), None)


def resolve(grids: list[Grid], config_of: Callable[[dict[str, Any]], Config]) -> list[dict[str, Any]]:
    """Per combination of the other grids' values whose config has a weight penalty: those values,
    its penalty, λ_max and its λ values. ``config_of(values)`` is the config of the study's first
    seed (and fold) at those values."""
    auto = auto_grid(grids)
    entries = []
    for values in product([g for g in grids if g is not auto]):
        config = config_of(values)
        if config.reg.penalty == "none":
            continue
        top = float(f"{estimate(config):.12g}")
        entries.append({"values": values, "penalty": config.reg.penalty, "lam_max": top,
                        "lams": auto.auto.values(top)})
    if not entries:
        raise UserError(f"--grid '{auto.text}': no point of the study has a weight penalty (reg.penalty is "
                        "none), so there is no λ to choose; add e.g. --grid reg=l1")
    return entries


def points_values(spec: dict[str, Any], grids: list[Grid]) -> list[dict[str, Any]]:
    """The grid's points as ``{key: value}`` in grid order: the Cartesian product, where an auto
    grid's values are those resolved for the point's other values (none where it has no penalty)."""
    auto = auto_grid(grids)
    if auto is None:
        return product(grids)
    keys = [g.key for g in grids]
    points = []
    for values in product([g for g in grids if g is not auto]):
        lams = next((e["lams"] for e in spec["auto"] if e["values"] == values), [None])
        for lam in lams:
            point = {**values, auto.key: lam}
            points.append({k: point[k] for k in keys if k != auto.key or lam is not None})
    return points


def distribution(spec: dict[str, Any]) -> FloatDistribution:
    """The Optuna distribution of the auto grid's key: a log-scale float over all its λ."""
    lams = [lam for entry in spec["auto"] for lam in entry["lams"]]
    return FloatDistribution(min(lams), max(lams), log=True)


def plan_lines(spec: dict[str, Any]) -> list[str]:
    """``auto λ for l1: λ_max = 0.0412, 10 values down to 4.12e-06``, one per family."""
    lines = []
    for entry in spec.get("auto") or []:
        lams = entry["lams"]
        others = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in entry["values"].items()
                  if k not in ("reg", "reg.penalty")]
        family = " ".join([entry["penalty"], *others])
        lines.append(f"auto λ for {family}: λ_max = {entry['lam_max']:.4g}, {len(lams)} value"
                     f"{'s' * (len(lams) != 1)} down to {lams[-1]:.4g}")
    return lines


def estimate(config: Config) -> float:
    """λ_max of ``config``'s penalty at initialization (module docstring)."""
    if config.task == "gan":
        raise UserError("reg.lam=auto needs a supervised task; set a GAN's λ values as a range")
    exp = prepare(config)
    task = exp.task
    model = copy.deepcopy(task.model).double().eval()
    penalty = penalty_from_name(config.reg.penalty, 1.0, **config.reg.penalty_settings())
    params = [p for _, p in selection_from_string(config.reg.on).resolve(model)]
    x, y = exp.tensors["train"]
    x, y = x.double(), y if task.classify else y.double()
    if config.model.kind == "linear" and read_at_zero(penalty):
        null_fit(model, params, y, task.classify)
    grads = data_gradient(model, task.criterion, x, y, params)
    return lam_max(penalty, grads, [p.detach() for p in params])


@torch.no_grad()
def null_fit(model: nn.Module, selected: list[torch.Tensor], y: torch.Tensor, classify: bool) -> None:
    """A linear model at its null fit: the selected parameters 0, an unselected intercept b at its
    optimum with weights 0: b = mean(y) per output under squared loss, b = log(class frequency)
    under cross-entropy (softmax(b) is then each class's frequency)."""
    (layer,) = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if layer.bias is not None:
        if classify:
            counts = torch.bincount(y, minlength=layer.bias.numel()).double()
            layer.bias.copy_(torch.log(counts / counts.sum()))
        else:
            layer.bias.copy_(y.mean(0))
    for p in selected:
        p.zero_()


def data_gradient(model: nn.Module, criterion, x: torch.Tensor, y: torch.Tensor,
                  params: list[torch.Tensor]) -> list[torch.Tensor]:
    """∇ of the mean data loss over all of (x, y) with respect to ``params``, in chunks of
    :data:`CHUNK` examples each weighted by its share of the examples."""
    grads = [torch.zeros_like(p) for p in params]
    for start in range(0, len(x), CHUNK):
        xb, yb = x[start : start + CHUNK], y[start : start + CHUNK]
        loss = criterion(model(xb), yb) * (len(xb) / len(x))
        for total, part in zip(grads, torch.autograd.grad(loss, params, allow_unused=True)):
            if part is not None:
                total += part
    return grads
