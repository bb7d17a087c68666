"""Robustness evaluation: robust accuracy, accuracy against ε, and checks against gradient masking.

An example counts as robust when the model classifies both x and the attack's x_adv correctly
(the attacker may always leave x unchanged, so robust accuracy never exceeds clean accuracy).
The model is evaluated in eval mode; every submodule's training flag is restored afterwards.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch

from reglab.adversarial.attacks import FGSM, PGD, check_eps, check_inputs, model_mode
from reglab.errors import UserError

AUTOATTACK_INSTALL = "pip install git+https://github.com/fra31/auto-attack"


def _device(model) -> torch.device | None:
    try:
        return next(model.parameters()).device
    except (AttributeError, StopIteration):
        return None


def _check_batch_size(batch_size: int) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise UserError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    return batch_size


def robust_accuracy(model, x: torch.Tensor, y: torch.Tensor, attack, batch_size: int = 256, restarts: int = 1,
                    seed: int | None = None) -> float:
    """Fraction of examples classified correctly clean and after each of ``restarts`` runs of
    ``attack(model, x, y)``. The first run attacks every example, in batches, as one call of the
    attack would; each later run only the examples still standing (correct clean and not fooled
    yet), so with a random start every run is a fresh restart per example.

    This is how every robust evaluation restarts (an attack's own ``restarts``, the best of its runs
    per example, is what adversarial training uses).

    ``attack`` is any callable ``(model, x, y) -> x_adv`` (e.g. :class:`~reglab.adversarial.attacks.PGD`).
    Batches go to the device of the model's parameters. With ``seed`` the random starts are drawn
    from it and the global RNG state is left as it was.
    """
    _check_batch_size(batch_size)
    check_inputs(x, y)
    n = x.shape[0]
    if n == 0:
        raise UserError("robust accuracy needs at least one example")
    dev = _device(model)
    if dev is not None:
        x, y = x.to(dev), y.to(dev)
    seeded = _seeded(model, seed) if seed is not None else contextlib.nullcontext()
    with model_mode(model, True), seeded:
        alive = _correct(model, x, y, batch_size)
        for run in range(restarts):
            idx = torch.arange(n, device=x.device) if run == 0 else alive.nonzero().squeeze(1)
            if len(idx) == 0:
                break
            for i in range(0, len(idx), batch_size):
                part = idx[i : i + batch_size]
                alive[part] &= _correct(model, attack(model, x[part], y[part]), y[part], batch_size)
    return int(alive.sum()) / n


@torch.no_grad()
def _correct(model, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Per example: is the model's argmax the label?"""
    return torch.cat([model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size]
                      for i in range(0, len(x), batch_size)])


@contextlib.contextmanager
def _seeded(model, seed: int):
    """Draw random starts from ``seed``; the global RNG state is restored afterwards."""
    dev = _device(model)
    with torch.random.fork_rng(devices=[dev] if dev is not None and dev.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def robust_curve(
    model,
    x: torch.Tensor,
    y: torch.Tensor,
    eps_list,
    norm: str = "linf",
    steps: int = 10,
    restarts: int = 1,
    batch_size: int = 256,
    seed: int = 0,
) -> list[tuple[float, float]]:
    """``[(ε, robust accuracy under PGD-steps), ...]`` for each ε; ε = 0 gives clean accuracy.

    Each point draws its random starts from ``seed``, so a point does not depend on the others.
    """
    points = []
    for eps in eps_list:
        eps = check_eps(eps, norm)
        attack = PGD(eps, steps=steps, norm=norm)
        points.append((eps, robust_accuracy(model, x, y, attack, batch_size, restarts * (eps > 0), seed=seed)))
    return points


@dataclass(frozen=True)
class SanityCheck:
    """One check against gradient masking: its name, whether it passed, and the numbers behind it."""

    name: str
    passed: bool
    detail: str

    def __str__(self) -> str:
        return f"[{'pass' if self.passed else 'FAIL'}] {self.name}: {self.detail}"


def sanity_checks(
    model,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm: str = "linf",
    steps: int = 10,
    restarts: int = 1,
    batch_size: int = 256,
    seed: int = 0,
    tol: float | None = None,
    large_eps_max_acc: float = 0.02,
) -> list[SanityCheck]:
    """Checks that a PGD evaluation at ``eps`` is not fooled by gradient masking.

    1. ``monotone in eps``: robust accuracy does not rise with ε (0, ε/4, ε/2, ε, 2ε).
    2. ``more steps do not help the model``: PGD with 4×steps does not give higher accuracy.
    3. ``large eps breaks the model``: at an ε that reaches any input (L∞ 1, L2 √d) accuracy ≤ 2%.
    4. ``single step is weaker than PGD``: FGSM (L2: one normalized gradient step of length ε)
       does not give lower accuracy than PGD.

    ``tol`` (default: one example or 0.5 point, whichever is larger) absorbs noise of random starts.
    A failure means the gradients do not point the way the loss rises (masking, obfuscation,
    a non-differentiable step, saturated softmax) and the robust accuracy is not to be trusted.
    """
    eps = check_eps(eps, norm)
    check_inputs(x, y)
    n = x.shape[0]
    if n == 0:
        raise UserError("sanity checks need at least one example")
    tol = max(1.0 / n, 0.005) if tol is None else float(tol)

    def pgd(e, k=steps, r=restarts):
        return robust_accuracy(model, x, y, PGD(e, steps=k, norm=norm), batch_size, r * (e > 0), seed=seed)

    checks = []
    top = min(2 * eps, 1.0) if norm == "linf" else 2 * eps
    grid = sorted({0.0, eps / 4, eps / 2, eps, top})
    accs = [pgd(e) for e in grid]
    acc_eps = accs[grid.index(eps)]
    rises = [(a, b, fa, fb) for a, b, fa, fb in zip(grid, grid[1:], accs, accs[1:]) if fb > fa + tol]
    checks.append(SanityCheck(
        "monotone in eps",
        not rises,
        ", ".join(f"ε={e:.4g}: {a:.3f}" for e, a in zip(grid, accs))
        + "".join(f"; rises from ε={a:.4g} to ε={b:.4g}" for a, b, _, _ in rises),
    ))

    more = pgd(eps, k=4 * steps)
    checks.append(SanityCheck(
        "more steps do not help the model",
        more <= acc_eps + tol,
        f"PGD-{steps}: {acc_eps:.3f}, PGD-{4 * steps}: {more:.3f} at ε={eps:.4g}",
    ))

    big = 1.0 if norm == "linf" else math.sqrt(x[0].numel())
    acc_big = pgd(big, k=max(steps, 10), r=1)
    checks.append(SanityCheck(
        "large eps breaks the model",
        acc_big <= large_eps_max_acc,
        f"accuracy {acc_big:.3f} at ε={big:.4g} (any input reachable; expected ≤ {large_eps_max_acc:.3f})",
    ))

    if eps > 0:
        one = FGSM(eps) if norm == "linf" else PGD(eps, alpha=eps, steps=1, norm="l2", random_start=False)
        acc_one = robust_accuracy(model, x, y, one, batch_size, seed=seed)
        name = "FGSM" if norm == "linf" else "one L2 step"
        checks.append(SanityCheck(
            "single step is weaker than PGD",
            acc_one >= acc_eps - tol,
            f"{name}: {acc_one:.3f}, PGD-{steps}: {acc_eps:.3f} at ε={eps:.4g}",
        ))
    return checks


def autoattack_accuracy(
    model,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    norm: str = "linf",
    version: str = "standard",
    batch_size: int = 256,
    seed: int = 0,
) -> float:
    """Robust accuracy under AutoAttack (Croce & Hein 2020), when the ``autoattack`` package is installed."""
    eps = check_eps(eps, norm)
    _check_batch_size(batch_size)
    check_inputs(x, y)
    try:
        from autoattack import AutoAttack
    except ImportError:
        raise UserError(f"AutoAttack is not installed: {AUTOATTACK_INSTALL}") from None
    dev = _device(model) or torch.device("cpu")
    x, y = x.detach().to(dev), y.detach().long().to(dev)
    adversary = AutoAttack(
        model, norm={"linf": "Linf", "l2": "L2"}[norm], eps=eps, version=version,
        seed=seed, verbose=False, device=str(dev),
    )
    with model_mode(model, True):
        x_adv = adversary.run_standard_evaluation(x, y, bs=batch_size)
        with torch.no_grad():
            ok = torch.cat([
                (model(x[i : i + batch_size]).argmax(1) == y[i : i + batch_size])
                & (model(x_adv[i : i + batch_size]).argmax(1) == y[i : i + batch_size])
                for i in range(0, x.shape[0], batch_size)
            ])
    return float(ok.float().mean().item())
