"""Full-batch gradient descent with a Regularizer lands on scikit-learn's (and the closed-form) solutions.

reglab's objective for a linear model is (1/n)·‖y − Xw − b‖² + λ·R(w): ``MSELoss()`` (mean) plus the
penalty on the weight only (the bias is not selected by default, as scikit-learn leaves the
intercept unpenalized with ``fit_intercept=True``).
"""

import numpy as np
import pytest
import torch
from sklearn.datasets import make_regression
from sklearn.linear_model import ElasticNet as SkElasticNet
from sklearn.linear_model import Lasso, Ridge
from torch import nn

from reglab import L1, L2, ElasticNet, Regularizer
from reglab.conventions import from_sklearn_alpha, sklearn_alpha, sklearn_params


@pytest.fixture(scope="module")
def problem():
    x, y = make_regression(n_samples=120, n_features=8, n_informative=3, noise=5.0, bias=4.0, random_state=0)
    y = y / y.std()
    return x, y


def lipschitz(x):
    """Of the gradient of (1/n)‖y − Xw − b‖² in (w, b)."""
    a = np.hstack([x, np.ones((len(x), 1))])
    return 2 * np.linalg.eigvalsh(a.T @ a / len(x)).max()


def gradient_descent(x, y, penalty, mode, steps, lr):
    torch.manual_seed(0)
    model = nn.Linear(x.shape[1], 1).double()
    reg = Regularizer(model, penalty, mode=mode)
    opt = reg.attach(torch.optim.SGD(model.parameters(), lr=lr))
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    loss_fn = nn.MSELoss()
    for _ in range(steps):
        opt.zero_grad()
        loss_fn(model(xt).squeeze(1), yt).backward()
        opt.step()
    return model.weight.detach().numpy().ravel(), model.bias.item()


def reglab_objective(x, y, w, b, penalty):
    r = y - x @ w - b
    return np.mean(r**2) + penalty.value(torch.from_numpy(w)).item()


def test_converters_give_proportional_objectives(problem):
    """scikit-learn's objective = c · reglab's, with c > 0 not depending on w: same minimizer."""
    x, y = problem
    n = len(x)
    rng = np.random.default_rng(0)
    for _ in range(3):
        w, b = rng.normal(size=x.shape[1]), rng.normal()
        r2 = np.sum((y - x @ w - b) ** 2)
        l2, l1, en = L2(0.3), L1(0.2), ElasticNet(0.4, l1_ratio=0.3)
        a = sklearn_alpha(l2, n_samples=n)  # Ridge: ‖y − Xw‖² + α‖w‖²
        assert r2 + a * w @ w == pytest.approx(n * reglab_objective(x, y, w, b, l2))
        a = sklearn_alpha(l1)  # Lasso: (1/2n)‖y − Xw‖² + α‖w‖₁
        assert r2 / (2 * n) + a * np.abs(w).sum() == pytest.approx(reglab_objective(x, y, w, b, l1) / 2)
        p = sklearn_params(en)  # ElasticNet: (1/2n)‖·‖² + αρ‖w‖₁ + α(1−ρ)/2‖w‖²
        a, rho = p["alpha"], p["l1_ratio"]
        sk = r2 / (2 * n) + a * rho * np.abs(w).sum() + a * (1 - rho) / 2 * w @ w
        assert sk == pytest.approx(reglab_objective(x, y, w, b, en) / 2)


def test_coupled_l2_gradient_descent_reaches_ridge(problem):
    x, y = problem
    n, lam = len(x), 0.5
    w_gd, b_gd = gradient_descent(x, y, L2(lam), "coupled", steps=400, lr=1 / (lipschitz(x) + lam))
    # closed form from the normal equations: (2/n)·XcᵀXc·w + λ·w = (2/n)·Xcᵀyc on centred data
    xm, ym = x.mean(0), y.mean()
    xc, yc = x - xm, y - ym
    w_cf = np.linalg.solve(2 / n * xc.T @ xc + lam * np.eye(x.shape[1]), 2 / n * xc.T @ yc)
    b_cf = ym - xm @ w_cf
    assert np.abs(w_gd - w_cf).max() < 1e-4 and abs(b_gd - b_cf) < 1e-4
    sk = Ridge(alpha=sklearn_alpha(L2(lam), n_samples=n), fit_intercept=True).fit(x, y)
    assert np.abs(sk.coef_ - w_cf).max() < 1e-8 and abs(sk.intercept_ - b_cf) < 1e-8
    assert from_sklearn_alpha("ridge", sk.alpha, n_samples=n).lam == pytest.approx(lam)
    # λ really mattered: the unpenalized least-squares solution is far away
    w_ls = np.linalg.lstsq(xc, yc, rcond=None)[0]
    assert np.abs(w_ls - w_cf).max() > 1e-2


def lasso_lambda(x, y, fraction):
    """λ at ``fraction`` of the smallest λ for which every weight is 0: λ_max = 2·max|Xcᵀyc|/n."""
    xc, yc = x - x.mean(0), y - y.mean()
    return fraction * 2 * np.abs(xc.T @ yc).max() / len(x)


@pytest.mark.parametrize("l1_ratio", [None, 0.5])
def test_proximal_gradient_descent_reaches_lasso_and_elastic_net(problem, l1_ratio):
    x, y = problem
    lam = lasso_lambda(x, y, 0.15)
    if l1_ratio is None:
        penalty, sk = L1(lam), Lasso(alpha=sklearn_alpha(L1(lam)), tol=1e-12, max_iter=100_000)
    else:
        penalty = ElasticNet(lam, l1_ratio=l1_ratio)
        sk = SkElasticNet(**sklearn_params(penalty), tol=1e-12, max_iter=100_000)
    sk.fit(x, y)
    w_gd, b_gd = gradient_descent(x, y, penalty, "proximal", steps=600, lr=1 / lipschitz(x))
    zeros = sk.coef_ == 0
    assert 2 <= zeros.sum() < len(zeros)  # the comparison is about sparsity
    assert np.array_equal(w_gd == 0, zeros)
    assert np.abs(w_gd - sk.coef_).max() < 1e-3 and abs(b_gd - sk.intercept_) < 1e-3


def test_coupled_l1_subgradient_descent_gives_no_exact_zeros(problem):
    x, y = problem
    lam = lasso_lambda(x, y, 0.15)
    lr = 1 / lipschitz(x)
    w_prox, _ = gradient_descent(x, y, L1(lam), "proximal", steps=600, lr=lr)
    w_sub, _ = gradient_descent(x, y, L1(lam), "coupled", steps=600, lr=lr)
    assert (w_prox == 0).sum() >= 2
    assert (w_sub == 0).sum() == 0
    # it hovers around zero where the lasso has zeros, at about the size of one step lr·λ
    small = np.abs(w_sub[w_prox == 0])
    assert small.max() <= 2 * lr * lam
