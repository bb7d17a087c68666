"""GAN losses and the gradient penalties on the discriminator, on its raw scores f(x).

With s = softplus (s(t) = log(1 + eᵗ), so −log σ(t) = s(−t)), real x ~ data, fake x̃ = G(z):

============  ===============================================  ==========================
loss          D minimizes                                      G minimizes
============  ===============================================  ==========================
ns            E[s(−f(x))] + E[s(f(x̃))]                          E[s(−f(x̃))]  (non-saturating)
hinge         E[max(0, 1 − f(x))] + E[max(0, 1 + f(x̃))]         −E[f(x̃)]
wasserstein   E[f(x̃)] − E[f(x)]                                 −E[f(x̃)]
============  ===============================================  ==========================

``ns`` with one-sided label smoothing s₀ (Salimans et al. 2016) uses the target 1 − s₀ for real
data: E[(1 − s₀)·s(−f(x)) + s₀·s(f(x))]. That needs σ(f(x)) to be a probability, so it is defined
for ``ns`` only.

Penalties (each is *added* to D's loss with its weight; the source document's subtraction of the
D penalty is a sign error, it would reward D for growing weights):

* WGAN-GP (Gulrajani et al. 2017): GP = E[(‖∇f(x̂)‖₂ − 1)²], x̂ = εx + (1 − ε)x̃, ε ~ U(0, 1)
  per example; D's loss gets + λ·GP.
* R1 (Mescheder et al. 2018): R1 = E_x[‖∇f(x)‖₂²] on real data; D's loss gets + γ/2·R1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def discriminator_loss(loss: str, real: Tensor, fake: Tensor, smoothing: float = 0.0) -> Tensor:
    """D's adversarial loss from its scores on real and fake examples (see the module table)."""
    if loss == "ns":
        real_term = (1 - smoothing) * F.softplus(-real) + smoothing * F.softplus(real)
        return real_term.mean() + F.softplus(fake).mean()
    if loss == "hinge":
        return F.relu(1 - real).mean() + F.relu(1 + fake).mean()
    return fake.mean() - real.mean()


def generator_loss(loss: str, fake: Tensor) -> Tensor:
    """G's loss from D's scores on its samples: s(−f(x̃)) for ns, −f(x̃) for hinge and wasserstein."""
    if loss == "ns":
        return F.softplus(-fake).mean()
    return -fake.mean()


def input_gradients(scores: Tensor, inputs: Tensor) -> Tensor:
    """∇ₓf per example, kept in the graph so that a penalty on it can be differentiated."""
    (grad,) = torch.autograd.grad(scores.sum(), inputs, create_graph=True)
    return grad.flatten(1)


def gradient_penalty(d: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """E[(‖∇f(x̂)‖₂ − 1)²] at x̂ = εx + (1 − ε)x̃, ε ~ U(0, 1) per example."""
    eps = torch.rand(len(real), *([1] * (real.dim() - 1)), device=real.device)
    mixed = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    return (input_gradients(d(mixed), mixed).norm(dim=1) - 1).pow(2).mean()


def r1_penalty(scores: Tensor, real: Tensor) -> Tensor:
    """E[‖∇f(x)‖₂²] on real data; ``real`` must require grad and ``scores = f(real)``."""
    return input_gradients(scores, real).pow(2).sum(dim=1).mean()
