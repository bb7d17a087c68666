"""How well a GAN covers the data's modes.

2-D mixtures (PacGAN / VEEGAN protocol, on ``n_eval_samples`` = 2,500 samples): each sample is
assigned to its nearest mode μ_k; it is *high quality* (HQ) when ‖x − μ_k‖₂ < 3σ.

* ``modes``       the number of modes with at least one HQ sample;
* ``hq_pct``      100 × (number of HQ samples) / (number of samples);
* ``reverse_kl``  KL(q ‖ u) = Σ_k q_k·log(q_k·K), q_k the share of the HQ samples assigned to mode
                  k (as in PacGAN's code), u uniform over the K modes. 0 when the HQ samples are
                  spread evenly; log K when they sit on one mode (also its value with no HQ sample).

Images: a small CNN classifier that reglab trains on the dataset's own training split (seeded,
cached by a hash of the data; no downloaded weights) gives features and labels.

* ``fid_cls``  the Fréchet distance ‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½) between Gaussians fitted to
  the classifier's penultimate features of generated and of real training images. It is *not*
  comparable to the Inception FID of the literature: other network, other features, other data.
* ``modes_cls``, ``hq_pct_cls``, ``reverse_kl_cls``: the same three numbers as above with
  "class predicted with probability ≥ 0.9" as the HQ rule and the class as the mode.
"""

from __future__ import annotations

import hashlib
import math
import os
from typing import Protocol

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn

from reglab.config import ModelConfig
from reglab.data import cache_dir
from reglab.data.gan2d import MIXTURES
from reglab.models.build import build_model

HQ_SIGMAS = 3.0
CONFIDENT = 0.9
CLASSIFIER = ModelConfig(kind="cnn", channels=[16, 32], dense=[64])
CLASSIFIER_EPOCHS, CLASSIFIER_STEPS, CLASSIFIER_SEED = 5, 1500, 0


def reverse_kl_to_uniform(counts: np.ndarray) -> float:
    """KL(q ‖ u) = Σ_k q_k·log(q_k·K) with q = counts / Σcounts; log K when every count is 0."""
    k = len(counts)
    total = counts.sum()
    if total == 0:
        return math.log(k)
    q = counts[counts > 0] / total
    return float(np.sum(q * np.log(q * k)))


def coverage(assigned: np.ndarray, good: np.ndarray, k: int) -> dict[str, float]:
    """Modes hit by a good sample, % good samples, reverse KL of the good samples' modes."""
    counts = np.bincount(assigned[good], minlength=k)
    return {"modes": int((counts > 0).sum()), "hq_pct": 100.0 * float(good.mean()),
            "reverse_kl": reverse_kl_to_uniform(counts)}  # fmt: skip


def mode_metrics(samples: np.ndarray, modes: np.ndarray, sigma: float) -> dict[str, float]:
    """``modes``, ``hq_pct`` and ``reverse_kl`` of 2-D samples against a Gaussian mixture."""
    dist = np.linalg.norm(samples[:, None, :].astype(np.float64) - modes[None], axis=2)
    nearest = dist.argmin(axis=1)
    good = dist[np.arange(len(samples)), nearest] < HQ_SIGMAS * sigma
    return coverage(nearest, good, len(modes))


def psd_sqrt(cov: np.ndarray) -> np.ndarray:
    """The symmetric square root of a covariance (eigenvalues clipped at 0 against round-off)."""
    w, v = scipy.linalg.eigh(cov)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, cov1, mu2, cov2) -> float:
    """‖μ₁ − μ₂‖² + Tr(Σ₁ + Σ₂ − 2(Σ₁Σ₂)^½), the squared 2-Wasserstein distance of two Gaussians.

    Tr((Σ₁Σ₂)^½) = Σᵢ √λᵢ with λᵢ the eigenvalues of the symmetric PSD Σ₁^½ Σ₂ Σ₁^½, which equal
    those of Σ₁Σ₂; unlike a general matrix square root this stays exact for singular covariances.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    cov1, cov2 = np.atleast_2d(cov1).astype(np.float64), np.atleast_2d(cov2).astype(np.float64)
    root1 = psd_sqrt(cov1)
    eig = scipy.linalg.eigvalsh(root1 @ cov2 @ root1)
    trace_root = float(np.sum(np.sqrt(np.clip(eig, 0, None))))
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1) + np.trace(cov2) - 2 * trace_root)


def gaussian_fit(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    features = features.astype(np.float64)
    return features.mean(axis=0), np.cov(features, rowvar=False)


class Judge(Protocol):
    """What the GAN task asks of a scorer of its samples."""

    def __call__(self, samples: torch.Tensor) -> dict[str, float]:
        """The sample metrics of ``samples`` (modes, HQ %, reverse KL, …)."""

    def own_metrics(self) -> dict[str, float]:
        """The judge's own numbers for the run's summary (e.g. its classifier's test accuracy)."""


class MixtureJudge:
    """Scores 2-D samples against a known mixture's modes."""

    def __init__(self, modes: np.ndarray, sigma: float):
        self.modes, self.sigma = modes, sigma

    def own_metrics(self) -> dict[str, float]:
        """None: the mixture is known exactly."""
        return {}

    def __call__(self, samples: torch.Tensor) -> dict[str, float]:
        return mode_metrics(samples.detach().cpu().numpy(), self.modes, self.sigma)


class ClassifierJudge:
    """Scores images with a classifier trained on the same dataset (see the module docstring)."""

    def __init__(self, classifier: nn.Module, n_classes: int, train_x: torch.Tensor,
                 test_x: torch.Tensor, test_y: np.ndarray):
        self.classifier, self.n_classes = classifier.eval(), n_classes
        self.real_stats = gaussian_fit(self.features(train_x)[0])
        self.test_acc = float((self.features(test_x)[1].argmax(axis=1) == test_y).mean())

    def own_metrics(self) -> dict[str, float]:
        """The classifier's accuracy on the dataset's test split: how far its verdicts can be trusted."""
        return {"classifier_test_acc": self.test_acc}

    @torch.no_grad()
    def features(self, x: torch.Tensor, batch: int = 1024) -> tuple[np.ndarray, np.ndarray]:
        """Penultimate features and class probabilities of a batch of images."""
        net, feats, probs = self.classifier, [], []
        for start in range(0, len(x), batch):
            h = net.body(torch.flatten(net.features(x[start : start + batch]), 1))
            feats.append(h.cpu().numpy())
            probs.append(F.softmax(net.head(h), dim=1).cpu().numpy())
        return np.concatenate(feats), np.concatenate(probs)

    def __call__(self, samples: torch.Tensor) -> dict[str, float]:
        feats, probs = self.features(samples.detach())
        fid = frechet_distance(*gaussian_fit(feats), *self.real_stats)
        found = coverage(probs.argmax(axis=1), probs.max(axis=1) >= CONFIDENT, self.n_classes)
        return {"fid_cls": fid, **{f"{k}_cls": v for k, v in found.items()}}


def data_key(x: np.ndarray, y: np.ndarray) -> str:
    digest = hashlib.sha256(x.tobytes() + y.tobytes())
    digest.update(f"{CLASSIFIER!r} {CLASSIFIER_EPOCHS} {CLASSIFIER_STEPS} {CLASSIFIER_SEED}".encode())
    return digest.hexdigest()[:16]


def train_classifier(x: torch.Tensor, y: torch.Tensor, n_classes: int) -> nn.Module:
    """A seeded CNN trained by Adam on cross-entropy, batch 64, for ``CLASSIFIER_EPOCHS`` epochs or
    ``CLASSIFIER_STEPS`` steps, whichever is more (small datasets get more epochs)."""
    torch.manual_seed(CLASSIFIER_SEED)
    net = build_model(CLASSIFIER, tuple(x.shape[1:]), n_classes).to(x.device)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    order_rng = torch.Generator().manual_seed(CLASSIFIER_SEED)
    batches = math.ceil(len(x) / 64)
    for _ in range(max(CLASSIFIER_EPOCHS, math.ceil(CLASSIFIER_STEPS / batches))):
        for idx in torch.randperm(len(x), generator=order_rng).split(64):
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return net.eval()


def feature_classifier(name: str, x: np.ndarray, y: np.ndarray, n_classes: int,
                       device: torch.device) -> nn.Module:
    """The dataset's classifier: loaded from the cache (``weights_only=True``) or trained once.

    Training runs inside ``torch.random.fork_rng`` so that whether the classifier came from the
    cache never changes the random numbers of the GAN run around it.
    """
    path = cache_dir() / "gan-classifiers" / f"{name}-{data_key(x, y)}.pt"
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        if path.is_file():
            net = build_model(CLASSIFIER, tuple(x.shape[1:]), n_classes)
            net.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
            return net.to(device).eval()
        xt = torch.as_tensor(x, dtype=torch.float32, device=device)
        net = train_classifier(xt, torch.as_tensor(y, device=device), n_classes)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    torch.save(net.state_dict(), tmp)
    os.replace(tmp, path)
    return net


def make_judge(splits, device: torch.device) -> Judge | None:
    """The scorer for the data: a known 2-D mixture, a classifier for labelled images, else None."""
    if splits.name in MIXTURES:
        mixture = MIXTURES[splits.name]
        return MixtureJudge(mixture.modes, mixture.sigma)
    if len(splits.input_shape) == 3 and splits.kind == "classification":
        (x, y), (test_x, test_y) = splits.train, splits.test
        net = feature_classifier(splits.name, x, y, splits.n_outputs, device)
        as_tensor = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)  # noqa: E731
        return ClassifierJudge(net, splits.n_outputs, as_tensor(x), as_tensor(test_x), test_y)
    return None
