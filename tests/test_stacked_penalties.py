"""Penalties on K models at once (tensors stacked on dim 0, λ and settings per model) give each
model what the penalty gives it alone."""

import pytest
import torch

from reglab.penalties import L1, L2, ElasticNet, GroupLasso

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
    lam, step = torch.tensor(LAMS), 0.7
    settings = {"l1_ratio": torch.tensor(RATIOS)} if kind is ElasticNet else None
    penalty = alone(0, kind)
    grads = penalty.stacked_grad(w, lam, settings)
    proxed = penalty.stacked_prox(w, torch.tensor([step * lam for lam in LAMS]), settings)
    # elementwise penalties agree exactly; group lasso's λ·√p_g/‖w_g‖ rounds λ·√p_g once more in
    # float32 when λ is a tensor (one unit in the last place)
    rtol = 1e-6 if kind is GroupLasso else 0
    for k in range(len(LAMS)):
        torch.testing.assert_close(grads[k], alone(k, kind).grad(w[k]), rtol=rtol, atol=0)
        torch.testing.assert_close(proxed[k], alone(k, kind).prox(w[k], step), rtol=rtol, atol=0)


def test_proximal_l1_gives_exact_zeros_per_model():
    w = torch.tensor([[0.1, -0.2, 0.5], [0.1, -0.2, 0.5]])
    out = L1(1.0).stacked_prox(w, torch.tensor([0.15, 0.6]))
    assert out.tolist() == [[0.0, pytest.approx(-0.05), pytest.approx(0.35)], [0.0, 0.0, 0.0]]
