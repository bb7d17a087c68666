"""Penalties on K models at once (tensors stacked on dim 0, λ and settings per model) give each
model what the penalty gives it alone."""

import pytest
import torch

from reglab.penalties import L1, L2, ElasticNet, GroupLasso, Penalty
from reglab.regularizer import constant
from reglab.train.stacked_optim import StackedTerm

LAMS = [0.0, 0.05, 0.3]
RATIOS = [0.2, 0.5, 1.0]


def alone(k: int, kind):
    """Model k's own penalty."""
    return kind(LAMS[k], l1_ratio=RATIOS[k]) if kind is ElasticNet else kind(LAMS[k])


@pytest.mark.parametrize("kind", [L1, L2, ElasticNet, GroupLasso])
@pytest.mark.parametrize("shape", [(4, 6), (3, 2, 5), (7,)])
def test_stacked_grad_and_prox_equal_each_model_alone(kind, shape):
    w = torch.randn(len(LAMS), *shape, generator=torch.Generator().manual_seed(0))
    w[1, 0] = 0.0  # a zero entry (sign 0) and, for group lasso, a zero group
    lam, step = torch.tensor(LAMS, dtype=torch.float64), 0.7  # per-model numbers as Python holds them
    settings = {"l1_ratio": torch.tensor(RATIOS, dtype=torch.float64)} if kind is ElasticNet else None
    penalty = alone(0, kind)
    grads = penalty.stacked_grad(w, lam, settings)
    proxed = penalty.stacked_prox(w, step * lam, settings)
    # exact, except group lasso's gradient: λ·√p_g/‖w_g‖ with the norms reduced over a stack of
    # models differs from one model's in the last place
    rtol = 1e-6 if kind is GroupLasso else 0
    for k in range(len(LAMS)):
        torch.testing.assert_close(grads[k], alone(k, kind).grad(w[k]), rtol=rtol, atol=0)
        assert torch.equal(proxed[k], alone(k, kind).prox(w[k], step))


def test_proximal_l1_gives_exact_zeros_per_model():
    w = torch.tensor([[0.1, -0.2, 0.5], [0.1, -0.2, 0.5]])
    out = L1(1.0).stacked_prox(w, torch.tensor([0.15, 0.6]))
    assert out.tolist() == [[0.0, pytest.approx(-0.05), pytest.approx(0.35)], [0.0, 0.0, 0.0]]


class Quartic(Penalty):
    """A penalty the batched trainer has never heard of: λ/4·Σw⁴, gradient λ·w³."""

    name = "quartic"

    def _value(self, w, lam):
        return lam / 4 * w.pow(4).sum()

    def _grad(self, w, lam):
        return lam * w.pow(3)

    def _prox(self, w, t):
        raise NotImplementedError("no closed form")


class NotBatchable(Quartic):
    def _grad(self, w, lam):
        return float(lam) * w.pow(3)  # a host sync on λ: has no form for a stack of models


def test_the_batched_trainer_applies_a_new_penalty_with_its_own_math():
    w = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(1))
    grads = {"w": torch.zeros_like(w)}
    lam, lr = torch.tensor([0.0, 0.1, 2.0], dtype=torch.float64), torch.full((3,), 0.5, dtype=torch.float64)
    StackedTerm(Quartic(0.0), "coupled", ["w"], {}, constant()).before_step({"w": w}, grads, lr, lam)
    for k in range(3):
        torch.testing.assert_close(grads["w"][k], Quartic(float(lam[k])).grad(w[k]))
    decayed = w.clone()
    StackedTerm(Quartic(0.0), "decoupled", ["w"], {}, constant()).before_step({"w": decayed}, {}, lr, lam)
    for k in range(3):
        torch.testing.assert_close(decayed[k], w[k] - 0.5 * Quartic(float(lam[k])).grad(w[k]))


def test_a_penalty_without_a_batched_form_is_refused_loudly():
    w = torch.randn(2, 3)
    term = StackedTerm(NotBatchable(0.0), "coupled", ["w"], {}, constant())
    with pytest.raises(RuntimeError):
        term.before_step({"w": w}, {"w": torch.zeros_like(w)}, torch.ones(2), torch.ones(2))
