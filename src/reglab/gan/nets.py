"""The GAN's two nets: MLPs for 2-D points and for small images (flattened).

``Generator``      z ∈ R^latent → Linear/ReLU layers → Linear → the data's shape. For images the
                   output goes through a sigmoid, so samples lie in [0, 1] like the data.
``Discriminator``  x → flatten → Linear/LeakyReLU(0.2) layers → Linear → one score f(x) per
                   example (a logit for the non-saturating loss, a critic value for Wasserstein).

With ``spectral_norm=True`` every Linear layer of D is W / σ(W), σ the largest singular value
estimated by one power iteration per forward pass (``torch.nn.utils.parametrizations``). Each
layer is then 1-Lipschitz, and so is D (LeakyReLU is 1-Lipschitz).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm


class Generator(nn.Module):
    def __init__(self, latent_dim: int, hidden: list[int], out_shape: tuple[int, ...], image: bool):
        super().__init__()
        self.latent_dim = latent_dim
        self.out_shape = tuple(out_shape)
        layers: list[nn.Module] = []
        width = latent_dim
        for size in hidden:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, math.prod(self.out_shape)))
        if image:
            layers.append(nn.Sigmoid())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).reshape(len(z), *self.out_shape)


class Discriminator(nn.Module):
    def __init__(self, in_shape: tuple[int, ...], hidden: list[int], spectral_norm: bool = False):
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(in_shape)
        for size in hidden:
            layers += [nn.Linear(width, size), nn.LeakyReLU(0.2)]
            width = size
        layers.append(nn.Linear(width, 1))
        if spectral_norm:
            layers = [_spectral_norm(m) if isinstance(m, nn.Linear) else m for m in layers]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def build_gan(gan_cfg, data_shape: tuple[int, ...]) -> nn.ModuleDict:
    """``{"g": Generator, "d": Discriminator}`` for data of ``data_shape`` (one example).

    Data with more than one axis (images, ``(C, H, W)``) get a sigmoid output in [0, 1].
    """
    image = len(data_shape) > 1
    return nn.ModuleDict({
        "g": Generator(gan_cfg.latent_dim, gan_cfg.g_hidden, data_shape, image),
        "d": Discriminator(data_shape, gan_cfg.d_hidden, gan_cfg.spectral_norm),
    })  # fmt: skip
