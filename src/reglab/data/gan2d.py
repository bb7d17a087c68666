"""Two-dimensional Gaussian mixtures for GANs: the standard mode-collapse benchmarks.

``gaussian-ring``  8 modes at (cos 2πk/8, sin 2πk/8), k = 0 … 7, on the unit circle, σ = 0.01.
                   The angles are 2πk/8: ``linspace(0, 2π, 8)`` would put the last mode on the
                   first (angle 2π = 0) and give 7 distinct modes.
``gaussian-grid``  25 modes at {−4, −2, 0, 2, 4}², σ = 0.05.

A point is x = μ_c + σ·ε with c uniform over the modes and ε ~ N(0, I₂); its label y is c, so the
data also work as a classification set. ``n_samples`` (default 10,000) points are drawn with
``data.split_seed`` as the seed. ``extra`` holds ``modes`` (K × 2) and ``sigma``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from reglab.config import DataConfig
from reglab.data.dataset import Dataset

DEFAULT_SAMPLES = 10_000


@dataclass(frozen=True)
class Mixture:
    """Equal-weight isotropic Gaussians at ``modes`` (K × 2) with standard deviation ``sigma``."""

    name: str
    modes: np.ndarray
    sigma: float
    description: str


def ring_modes(k: int = 8, radius: float = 1.0) -> np.ndarray:
    angles = 2 * np.pi * np.arange(k) / k
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def grid_modes(values=(-4.0, -2.0, 0.0, 2.0, 4.0)) -> np.ndarray:
    return np.array([(a, b) for a in values for b in values], dtype=np.float64)


MIXTURES = {
    "gaussian-ring": Mixture("gaussian-ring", ring_modes(), 0.01,
                             "8 Gaussians on the unit circle, σ = 0.01 (label: the mode)"),
    "gaussian-grid": Mixture("gaussian-grid", grid_modes(), 0.05,
                             "25 Gaussians at {−4, −2, 0, 2, 4}², σ = 0.05 (label: the mode)"),
}  # fmt: skip


def sample_mixture(mixture: Mixture, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points of the mixture and the index of the mode each was drawn from."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(len(mixture.modes), size=n)
    x = mixture.modes[labels] + mixture.sigma * rng.standard_normal((n, 2))
    return x.astype(np.float32), labels.astype(np.int64)


def mixture_loader(name: str):
    mixture = MIXTURES[name]

    def load(cfg: DataConfig) -> Dataset:
        x, y = sample_mixture(mixture, cfg.n_samples or DEFAULT_SAMPLES, cfg.split_seed)
        extra = {"modes": mixture.modes.copy(), "sigma": mixture.sigma, "seed": cfg.split_seed}
        return Dataset(name, x, y, "classification", len(mixture.modes),
                       f"generated: {mixture.description}", extra)  # fmt: skip

    return load
