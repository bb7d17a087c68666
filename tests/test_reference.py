"""The ridge reference of a linear regression with k targets, against scikit-learn and torch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import Ridge

from reglab.tasks.reference import ridge_closed_form


def data(k: int, n: int = 60, d: int = 4):
    rng = np.random.default_rng(k)
    x = rng.standard_normal((n, d))
    y = x @ rng.standard_normal((d, k)) + 0.3 + rng.standard_normal((n, k))
    return x, (y[:, 0] if k == 1 else y)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_ridge_closed_form_matches_sklearn(k):
    x, y = data(k)
    lam = 0.3
    w, b = ridge_closed_form(x, y, lam)
    ridge = Ridge(alpha=len(x) * k * lam / 2).fit(x, y)
    np.testing.assert_allclose(w, ridge.coef_.reshape(k, -1), atol=1e-10)
    np.testing.assert_allclose(b, np.atleast_1d(ridge.intercept_), atol=1e-10)


@pytest.mark.parametrize("k", [1, 2, 5])
def test_ridge_closed_form_is_the_minimizer_of_the_training_loss(k):
    """The gradient of torch's mse_loss (mean over n·k values) + λ/2·‖W‖² vanishes at (W*, b*)."""
    x, y = data(k)
    lam = 0.3
    w_ref, b_ref = ridge_closed_form(x, y, lam)
    w = torch.tensor(w_ref, requires_grad=True)
    b = torch.tensor(b_ref, requires_grad=True)
    target = torch.tensor(y.reshape(len(y), -1))
    loss = F.mse_loss(torch.tensor(x) @ w.T + b, target) + lam / 2 * w.pow(2).sum()
    loss.backward()
    assert w.grad.abs().max().item() < 1e-12 and b.grad.abs().max().item() < 1e-12


def test_a_two_target_ridge_run_lands_on_the_reference(tmp_path):
    """Gradient descent on a 2-target regression reaches the k-target closed form, and the
    summary records the split it used."""
    from reglab.config import load_config
    from reglab.train import run

    x, y = data(2, n=200, d=3)
    np.savez(tmp_path / "two.npz", x=x.astype(np.float32), y=y.astype(np.float32))
    config = load_config("ridge-gd", ["data.name=npz", f"data.path={tmp_path / 'two.npz'}", "data.n_samples=null",
                                      "data.noise=null", "reg.lam=0.1", "train.plots=false",
                                      "train.save_weights=false"])
    summary = run(config, root=tmp_path / "runs", progress=False).summary
    assert summary["reference"] == "closed-form ridge" and summary["reference_max_abs_dw"] < 1e-4
    assert (summary["n_train"], summary["n_val"], summary["n_test"]) == (144, 26, 30)  # val: round(0.15 × 170)
    assert summary["test_split"] == "random"
