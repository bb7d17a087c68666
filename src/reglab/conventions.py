"""λ in other libraries' conventions: scikit-learn's ``alpha`` and Keras' ``l1``/``l2`` factors.

The converters assume the regression data term (1/n)·‖y − Xw‖² of one target, reglab's
(1/n)‖y − Xw‖² + λ·R(w) (:mod:`reglab.penalties`). With k targets and a loss that averages over all
n·k values (torch's ``mse_loss``), pass n·k as ``n_samples``.
"""

from __future__ import annotations

from reglab.errors import UserError
from reglab.penalties import L1, L2, ElasticNet, Penalty, check_lam

__all__ = ["sklearn_alpha", "sklearn_params", "from_sklearn_alpha", "keras_factors", "from_keras"]

# ---------------------------------------------------------------------------------------------
# Converters. reglab: (1/n)‖y − Xw‖² + λ·R(w).
#   Ridge       ‖y − Xw‖² + α‖w‖²                         → α = n·λ/2   (needs n_samples)
#   Lasso       (1/2n)‖y − Xw‖² + α‖w‖₁                   → α = λ/2
#   ElasticNet  (1/2n)‖y − Xw‖² + αρ‖w‖₁ + α(1−ρ)/2‖w‖²   → α = λ/2, ρ = l1_ratio
#   Keras       loss + l1·Σ|w| + l2·Σw²                   → λ₁ = l1, λ₂ = 2·l2
# ---------------------------------------------------------------------------------------------


def sklearn_params(penalty: Penalty, n_samples: int | None = None) -> dict[str, float]:
    """Keyword arguments for the scikit-learn estimator with the same minimizer.

    ``L2`` → ``Ridge(alpha=n·λ/2)`` (needs ``n_samples``), ``L1`` → ``Lasso(alpha=λ/2)``,
    ``ElasticNet`` → ``ElasticNet(alpha=λ/2, l1_ratio=α)``. For k targets with the mean over all
    n·k squared errors, ``n_samples`` is n·k: ``Ridge(alpha=n·k·λ/2)``.
    """
    if isinstance(penalty, L2):
        if n_samples is None or n_samples <= 0:
            raise UserError("Ridge's alpha depends on the number of samples: pass n_samples")
        return {"alpha": n_samples * penalty.lam / 2}
    if isinstance(penalty, L1):
        return {"alpha": penalty.lam / 2}
    if isinstance(penalty, ElasticNet):
        return {"alpha": penalty.lam / 2, "l1_ratio": penalty.l1_ratio}
    raise UserError(f"{type(penalty).__name__} has no scikit-learn counterpart")


def sklearn_alpha(penalty: Penalty, n_samples: int | None = None) -> float:
    """scikit-learn's ``alpha`` for ``penalty`` (see :func:`sklearn_params`)."""
    return sklearn_params(penalty, n_samples)["alpha"]


def from_sklearn_alpha(
    kind: str, alpha: float, n_samples: int | None = None, l1_ratio: float = 0.5
) -> Penalty:
    """The reglab penalty for ``Ridge`` / ``Lasso`` / ``ElasticNet`` (``kind``) with ``alpha``."""
    kind = str(kind).lower().replace("_", "")
    alpha = check_lam(alpha)
    if kind == "ridge":
        if n_samples is None or n_samples <= 0:
            raise UserError("Ridge's alpha depends on the number of samples: pass n_samples")
        return L2(2 * alpha / n_samples)
    if kind == "lasso":
        return L1(2 * alpha)
    if kind == "elasticnet":
        return ElasticNet(2 * alpha, l1_ratio=l1_ratio)
    raise UserError(f"unknown scikit-learn estimator '{kind}'; choose ridge, lasso or elasticnet")


def keras_factors(penalty: Penalty) -> dict[str, float]:
    """Keras' ``regularizers.l1_l2(l1=…, l2=…)`` factors for ``penalty`` (Keras adds l2·Σw²)."""
    if isinstance(penalty, L2):
        return {"l1": 0.0, "l2": penalty.lam / 2}
    if isinstance(penalty, L1):
        return {"l1": penalty.lam, "l2": 0.0}
    if isinstance(penalty, ElasticNet):
        a = penalty.l1_ratio
        return {"l1": penalty.lam * a, "l2": penalty.lam * (1 - a) / 2}
    raise UserError(f"{type(penalty).__name__} has no Keras counterpart")


def from_keras(l1: float = 0.0, l2: float = 0.0) -> Penalty:
    """The reglab penalty for Keras' ``l1(l1)``, ``l2(l2)`` or ``l1_l2(l1, l2)``.

    ``l2(f)`` → ``L2(2f)``; ``l1(f)`` → ``L1(f)``; both → ``ElasticNet(l1 + 2·l2, l1/(l1 + 2·l2))``.
    """
    l1, l2 = check_lam(l1), check_lam(l2)
    if l1 == 0:
        return L2(2 * l2)
    if l2 == 0:
        return L1(l1)
    lam = l1 + 2 * l2
    return ElasticNet(lam, l1_ratio=l1 / lam)
