"""λ_max: the strength at which a penalty outweighs the data, read off the data loss's gradient.

With ``g = ∇_w L`` the gradient of the data loss (a mean over the training examples) with respect
to the selected weights ``w``, in reglab's λ conventions (:mod:`reglab.penalties`):

* ``L1``: λ_max = max_i |g_i|. At w = 0 this is the smallest λ for which w = 0 is a minimizer of
  L + λ‖w‖₁ in w (0 ∈ g + λ·∂‖w‖₁ ⇔ |g_i| ≤ λ for all i), and equally the smallest λ whose
  proximal step keeps every weight at zero: prox(0 − lr·g, lr·λ) = 0 ⇔ |g_i| ≤ λ. For a linear
  model taken at its null fit (w = 0, intercept fitted) it is glmnet's λ_max; with squared loss it
  is 2·scikit-learn's ``alpha_max`` (``_alpha_grid``), as ``alpha = λ/2`` (:mod:`reglab.conventions`).
* ``ElasticNet`` with α = ``l1_ratio``: λ_max = max_i |g_i| / α (glmnet; the L2 part's gradient
  (1−α)·λ·w is 0 at w = 0). α = 0 has no such edge and is refused, as glmnet and scikit-learn do.
* ``GroupLasso`` (λ·Σ_g √p_g·‖w_g‖₂, a group per output unit or filter): λ_max = max_g ‖g_g‖₂/√p_g,
  the smallest λ for which w = 0 is a minimizer (0 ∈ g_g + λ·√p_g·∂‖w_g‖₂ ⇔ ‖g_g‖₂ ≤ λ·√p_g).
* ``L2`` (λ/2·‖w‖², gradient λ·w) never zeroes a weight, so it has no such edge; its λ_max is the
  λ whose penalty gradient has the data gradient's norm at the weights ``w`` (which must not all be 0):
  λ_max·‖w‖₂ = ‖g‖₂, i.e. λ_max = ‖g‖₂ / ‖w‖₂, norms over all selected tensors together.

At weights w ≠ 0 (a network at its initialization) the same numbers are what a λ must outweigh
for the penalty to win over the data everywhere: above L1's λ_max, every weight's gradient-flow
derivative d|w_i|/dt = −(g_i·sign(w_i) + λ) is negative (elastic net's likewise, its L2 part only
adds −(1−α)·λ·|w_i|), and above group lasso's, every group's
d‖w_g‖/dt = −(g_g·w_g/‖w_g‖ + λ·√p_g) is too (Cauchy–Schwarz). (The one-step rule, the smallest λ
with prox(w − lr·g, lr·λ) = 0, is max_i |w_i/lr − g_i| there: mostly the initial weights over the
learning rate, not a balance with the data, so it is not used.)

Any other penalty has no rule here and is refused.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from reglab.errors import UserError
from reglab.penalties import L1, L2, ElasticNet, GroupLasso, Penalty, _groups

__all__ = ["lam_max", "read_at_zero"]


def read_at_zero(penalty: Penalty) -> bool:
    """Whether ``penalty``'s λ_max is the edge of the all-zero solution (L1, elastic net, group
    lasso), to be read with the selected weights at 0 where a model's null fit is known."""
    return isinstance(penalty, (L1, ElasticNet, GroupLasso))


def lam_max(penalty: Penalty, grads: Sequence[Tensor], weights: Sequence[Tensor]) -> float:
    """λ_max of ``penalty`` (its λ is not read; its settings are) from the data loss's gradients
    ``grads`` at the selected ``weights``, one tensor each (module docstring)."""
    if not grads:
        raise UserError("λ_max needs at least one selected weight")
    if isinstance(penalty, L1):
        return largest_entry(grads)
    if isinstance(penalty, ElasticNet):
        if penalty.l1_ratio == 0:
            raise UserError("elastic net with l1_ratio=0 is L2 and has no L1 edge to start a grid from; "
                            "use reg=l2, or an l1_ratio above 0")
        return largest_entry(grads) / penalty.l1_ratio
    if isinstance(penalty, GroupLasso):
        return max(largest_group(g) for g in grads)
    if isinstance(penalty, L2):
        weight_norm = norm(weights)
        if weight_norm == 0:
            raise UserError("L2's λ_max is ‖∇L(w)‖/‖w‖, and the selected weights are all 0")
        return norm(grads) / weight_norm
    raise UserError(f"penalty '{penalty.name}' has no λ_max rule (l1, elastic, group and l2 have one); "
                    "give its λ values instead")


def largest_entry(tensors: Sequence[Tensor]) -> float:
    """max_i |t_i| over all entries of all tensors."""
    return max(float(t.abs().max()) for t in tensors if t.numel())


def largest_group(grad: Tensor) -> float:
    """max_g ‖g_g‖₂/√p_g over the groups of one tensor, grouped as :class:`GroupLasso` groups it."""
    groups = _groups(grad.unsqueeze(0))[0]  # [groups, p]
    return float((torch.linalg.vector_norm(groups, dim=1) / math.sqrt(groups.shape[1])).max())


def norm(tensors: Sequence[Tensor]) -> float:
    """‖(t_1, t_2, …)‖₂, all tensors as one vector."""
    return math.sqrt(sum(float(t.double().pow(2).sum()) for t in tensors))
