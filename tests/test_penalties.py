"""Penalty math against finite differences, autograd, closed forms and numerical optimization."""

import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from reglab import L1, L2, ElasticNet, GroupLasso, UserError, from_keras, keras_factors, penalty_from_name
from reglab.conventions import from_sklearn_alpha, sklearn_alpha, sklearn_params

SHAPES = [(7,), (4, 3), (3, 2, 2, 2)]
PENALTIES = [L2(0.7), L1(0.3), ElasticNet(0.5, l1_ratio=0.3), ElasticNet(0.4, l1_ratio=1.0), GroupLasso(0.2)]


def away_from_zero(shape, seed=0):
    """Entries with |w| ≥ 0.2, so L1 and group norms have no kink nearby."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    return torch.sign(w) * (w.abs() + 0.2)


def finite_difference_grad(f, w, eps=1e-6):
    g = torch.zeros_like(w)
    flat, gflat = w.view(-1), g.view(-1)
    for i in range(flat.numel()):
        old = flat[i].item()
        flat[i] = old + eps
        up = f(w).item()
        flat[i] = old - eps
        down = f(w).item()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return g


@pytest.mark.parametrize("pen", PENALTIES, ids=repr)
@pytest.mark.parametrize("shape", SHAPES)
def test_grad_matches_finite_differences_and_autograd(pen, shape):
    w = away_from_zero(shape)
    fd = finite_difference_grad(pen.value, w.clone())
    torch.testing.assert_close(pen.grad(w), fd, atol=1e-7, rtol=1e-6)
    wr = w.clone().requires_grad_(True)
    (auto,) = torch.autograd.grad(pen.value(wr), wr)
    torch.testing.assert_close(pen.grad(w), auto, atol=1e-12, rtol=1e-10)


def test_values_against_written_formulas():
    w = away_from_zero((4, 3))
    a = w.numpy()
    assert L2(0.7).value(w).item() == pytest.approx(0.35 * (a**2).sum())
    assert L1(0.3).value(w).item() == pytest.approx(0.3 * np.abs(a).sum())
    en = 0.5 * (0.3 * np.abs(a).sum() + 0.7 / 2 * (a**2).sum())
    assert ElasticNet(0.5, l1_ratio=0.3).value(w).item() == pytest.approx(en)
    gl = 0.2 * math.sqrt(3) * np.linalg.norm(a, axis=1).sum()
    assert GroupLasso(0.2).value(w).item() == pytest.approx(gl)
    v = torch.tensor([3.0, 4.0], dtype=torch.float64)  # a 1-D tensor is one group of size 2
    assert GroupLasso(1.0).value(v).item() == pytest.approx(math.sqrt(2) * 5.0)


def test_l2_gradient_is_lam_times_w_not_lam_times_sum():
    w = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64)
    assert torch.equal(L2(0.1).grad(w), 0.1 * w)


def test_subgradients_at_zero():
    w = torch.tensor([[0.0, 0.0], [1.0, -1.0]], dtype=torch.float64)
    assert L1(2.0).grad(w).tolist() == [[0.0, 0.0], [2.0, -2.0]]
    g = GroupLasso(1.0).grad(w)
    assert g[0].tolist() == [0.0, 0.0]
    assert torch.isfinite(g).all()
    wr = w.clone().requires_grad_(True)  # autograd through value() stays finite at a zero group
    (auto,) = torch.autograd.grad(GroupLasso(1.0).value(wr), wr)
    assert torch.isfinite(auto).all()


def np_soft(w, t):
    return np.sign(w) * np.maximum(np.abs(w) - t, 0)


@pytest.mark.parametrize("shape", SHAPES)
def test_prox_closed_forms(shape):
    g = torch.Generator().manual_seed(1)
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    a, step = w.numpy(), 0.5
    np.testing.assert_allclose(L1(0.8).prox(w, step).numpy(), np_soft(a, 0.4), atol=1e-15)
    np.testing.assert_allclose(L2(0.8).prox(w, step).numpy(), a / 1.4, atol=1e-15)
    en = np_soft(a, step * 0.8 * 0.25) / (1 + step * 0.8 * 0.75)
    np.testing.assert_allclose(ElasticNet(0.8, l1_ratio=0.25).prox(w, step).numpy(), en, atol=1e-15)
    rows = a.reshape(a.shape[0], -1) if a.ndim >= 2 else a.reshape(1, -1)
    thr = step * 0.8 * math.sqrt(rows.shape[1])
    expected = np.stack([r * max(0.0, 1 - thr / np.linalg.norm(r)) for r in rows]).reshape(a.shape)
    np.testing.assert_allclose(GroupLasso(0.8).prox(w, step).numpy(), expected, atol=1e-14)


def test_l1_prox_gives_exact_zeros_and_l2_prox_does_not():
    w = torch.tensor([0.05, -0.02, 0.5, -0.7], dtype=torch.float64)
    z = L1(0.1).prox(w, 1.0)
    assert z.tolist()[:2] == [0.0, 0.0] and (z[2:] != 0).all()
    assert (L2(0.1).prox(w, 1.0) != 0).all()
    zg = GroupLasso(1.0).prox(torch.tensor([[0.1, 0.1], [3.0, 4.0]], dtype=torch.float64), 0.5)
    assert zg[0].tolist() == [0.0, 0.0] and (zg[1] != 0).all()


@pytest.mark.parametrize("pen", PENALTIES, ids=repr)
def test_prox_is_the_argmin(pen):
    """prox(w, s) = argmin_z ½‖z − w‖² + s·λR(z), checked with scipy and with the optimality conditions."""
    w = torch.tensor([[0.9, -0.05, 0.3], [0.02, -0.01, 0.03]], dtype=torch.float64)
    step = 0.6
    z = pen.prox(w, step)

    def objective(v):
        t = torch.as_tensor(v, dtype=torch.float64).reshape(w.shape)
        return 0.5 * ((t - w) ** 2).sum().item() + step * pen.value(t).item()

    best = minimize(objective, w.numpy().ravel(), method="Powell", options={"xtol": 1e-10, "ftol": 1e-14})
    assert objective(z.numpy()) <= best.fun + 1e-12
    np.testing.assert_allclose(z.numpy().ravel(), best.x, atol=1e-4)
    # optimality: w − z ∈ s·∂(λR)(z). Where z is smooth that is w − z = s·grad(z).
    nz = z != 0
    if isinstance(pen, GroupLasso):
        nz = (z != 0).all(dim=1, keepdim=True).expand_as(z)
    assert nz.any()
    torch.testing.assert_close((w - z)[nz], step * pen.grad(z)[nz], atol=1e-12, rtol=0)


def test_prox_optimality_at_zeros():
    w = torch.tensor([[0.1, -0.3, 0.2], [2.0, 1.0, -1.0]], dtype=torch.float64)
    s, lam = 0.5, 0.8
    z = L1(lam).prox(w, s)
    assert ((w.abs() <= s * lam) == (z == 0)).all()
    zg = GroupLasso(lam).prox(w, s)
    small = w.norm(dim=1) <= s * lam * math.sqrt(3)
    assert small.tolist() == [True, False]
    assert (zg[0] == 0).all() and (zg[1] != 0).all()


@pytest.mark.parametrize("pen", PENALTIES, ids=repr)
def test_in_place_list_ops_match_single_tensor_ops(pen):
    params = [away_from_zero(s, seed=i) for i, s in enumerate(SHAPES)]
    grads = [torch.randn_like(p) for p in params]
    lam, lr = pen.lam * 0.5, 0.3
    g2 = [g.clone() for g in grads]
    pen.add_grad_(g2, params, lam)
    p2 = [p.clone() for p in params]
    pen.decay_(p2, lr, lam)
    p3 = [p.clone() for p in params]
    pen.prox_(p3, lr, lam)
    scaled = type(pen)(lam, **({"l1_ratio": pen.l1_ratio} if isinstance(pen, ElasticNet) else {}))
    for i, p in enumerate(params):
        torch.testing.assert_close(g2[i], grads[i] + scaled.grad(p), atol=1e-14, rtol=0)
        torch.testing.assert_close(p2[i], p - lr * scaled.grad(p), atol=1e-14, rtol=0)
        torch.testing.assert_close(p3[i], scaled.prox(p, lr), atol=1e-14, rtol=0)
    assert pen.total(params).item() == pytest.approx(sum(pen.value(p).item() for p in params))


@pytest.mark.parametrize(
    "make",
    [
        lambda: L2(-1e-4),
        lambda: L1(float("nan")),
        lambda: L1("0.1"),
        lambda: GroupLasso(-1),
        lambda: ElasticNet(0.1, l1_ratio=1.5),
        lambda: ElasticNet(0.1, l1_ratio=-0.1),
        lambda: penalty_from_name("l3", 0.1),
        lambda: sklearn_alpha(L2(0.1)),
        lambda: sklearn_alpha(GroupLasso(0.1)),
        lambda: from_sklearn_alpha("svm", 0.1),
    ],
)
def test_bad_input_is_a_user_error(make):
    with pytest.raises(UserError) as err:
        make()
    assert "\n" not in str(err.value)


def test_penalty_from_name_and_repr():
    assert repr(penalty_from_name("elastic", 0.1, l1_ratio=0.2)) == "ElasticNet(lam=0.1, l1_ratio=0.2)"
    assert isinstance(penalty_from_name("group", 0.1), GroupLasso)
    assert penalty_from_name("l2", 0.0).lam == 0.0


def keras_penalty(w, l1=0.0, l2=0.0):
    """Keras' regularizers.l1_l2: l1·Σ|w| + l2·Σw² (added to the loss as is)."""
    return l1 * w.abs().sum() + l2 * (w**2).sum()


@pytest.mark.parametrize("l1,l2", [(0.0, 0.01), (0.003, 0.0), (0.002, 0.005)])
def test_keras_conversion_gives_the_same_penalty(l1, l2):
    w = away_from_zero((5, 4))
    pen = from_keras(l1=l1, l2=l2)
    assert pen.value(w).item() == pytest.approx(keras_penalty(w, l1, l2).item(), rel=1e-12)
    back = keras_factors(pen)
    assert back["l1"] == pytest.approx(l1) and back["l2"] == pytest.approx(l2)


def test_keras_l2_factor_is_half_lambda():
    assert keras_factors(L2(1e-4))["l2"] == pytest.approx(5e-5)
    assert isinstance(from_keras(l2=5e-5), L2) and from_keras(l2=5e-5).lam == pytest.approx(1e-4)


def test_sklearn_round_trips():
    assert from_sklearn_alpha("ridge", sklearn_alpha(L2(0.3), n_samples=50), n_samples=50).lam == pytest.approx(0.3)
    assert from_sklearn_alpha("lasso", sklearn_alpha(L1(0.3))).lam == pytest.approx(0.3)
    params = sklearn_params(ElasticNet(0.3, l1_ratio=0.7))
    back = from_sklearn_alpha("ElasticNet", params["alpha"], l1_ratio=params["l1_ratio"])
    assert (back.lam, back.l1_ratio) == (pytest.approx(0.3), pytest.approx(0.7))
