"""Reference solutions for linear regression, to show that gradient training lands on them.

reglab's objective for a linear model with n examples, k targets, bias b (unpenalized) and
weights W (d×k) is the mean squared error over all n·k values plus the penalty:

    (1/(n·k))·‖Y − XW − 1bᵀ‖²_F + λ·R(W).

For R = ½‖W‖²_F (ridge), setting the gradient −(2/(n·k))·Xcᵀ(Yc − XcW) + λW to zero gives the
closed form on centred data: W* = (XcᵀXc + (n·k·λ/2)·I)⁻¹ XcᵀYc and b* = ȳ − x̄ᵀW*, i.e.
scikit-learn's ``Ridge(alpha=n·k·λ/2)``. For L1 and elastic net (one target) the reference is
scikit-learn's Lasso / ElasticNet with alpha = λ/2 (see the converters in ``reglab.penalties``).
"""

from __future__ import annotations

import numpy as np


def ridge_closed_form(x: np.ndarray, y: np.ndarray, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Minimize (1/(n·k))‖Y − XW − 1bᵀ‖²_F + λ/2·‖W‖²_F for Y with k columns (k = 1 for a
    1-D y); returns W as (k, d), like a ``Linear`` layer's weight, and b as (k,)."""
    x = x.reshape(len(x), -1).astype(np.float64)
    y = y.reshape(len(y), -1).astype(np.float64)
    (n, d), k = x.shape, y.shape[1]
    xm, ym = x.mean(0), y.mean(0)
    xc, yc = x - xm, y - ym
    w = np.linalg.solve(xc.T @ xc + (n * k * lam / 2) * np.eye(d), xc.T @ yc)
    return w.T, ym - xm @ w


def sklearn_reference(x: np.ndarray, y: np.ndarray, penalty: str, lam: float, l1_ratio: float = 1.0):
    from sklearn.linear_model import ElasticNet, Lasso

    x = x.reshape(len(x), -1).astype(np.float64)
    y = y.reshape(len(y)).astype(np.float64)
    if penalty == "l1":
        est = Lasso(alpha=lam / 2, tol=1e-10, max_iter=100_000)
    else:
        est = ElasticNet(alpha=lam / 2, l1_ratio=l1_ratio, tol=1e-10, max_iter=100_000)
    est.fit(x, y)
    return est.coef_.reshape(1, -1), np.atleast_1d(est.intercept_)


def reference_summary(cfg, splits, model) -> dict[str, float]:
    """For a linear regression with a plain weight penalty: how far training is from the optimum."""
    if cfg.model.kind != "linear" or splits.kind != "regression" or cfg.reg.on != "weights":
        return {}
    if cfg.optim.weight_decay != 0 or cfg.reg.penalty not in ("none", "l2", "l1", "elastic"):
        return {}
    x, y = splits.train
    lam = cfg.reg.lam if cfg.reg.penalty != "none" else 0.0
    if cfg.reg.penalty in ("none", "l2"):
        w_ref, b_ref = ridge_closed_form(x, y, lam)
        name = "closed-form ridge"
    else:
        if y.reshape(len(y), -1).shape[1] != 1:
            return {}
        w_ref, b_ref = sklearn_reference(x, y, cfg.reg.penalty, lam, **cfg.reg.penalty_settings())
        name = f"scikit-learn {'Lasso' if cfg.reg.penalty == 'l1' else 'ElasticNet'}"
    head = model.head
    w = head.weight.detach().cpu().double().numpy()
    b = head.bias.detach().cpu().double().numpy()
    return {
        "reference": name,
        "reference_max_abs_dw": float(np.abs(w - w_ref).max()),
        "reference_max_abs_db": float(np.abs(b - b_ref).max()),
        "reference_coef": w_ref.ravel().tolist()[:20],
        "trained_coef": w.ravel().tolist()[:20],
    }
