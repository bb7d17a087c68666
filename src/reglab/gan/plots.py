"""A GAN run's own plots (matplotlib, no display): samples and the D/G loss curves."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from reglab.gan.metrics import HQ_SIGMAS  # noqa: E402
from reglab.plots import epoch_axis, legend_outside  # noqa: E402

CURVE_KEYS = (("modes", "modes captured"), ("hq_pct", "high-quality samples (%)"),
              ("reverse_kl", "reverse KL"), ("fid_cls", "classifier FID"),
              ("modes_cls", "classes captured"))  # fmt: skip


def scatter(samples: np.ndarray, modes: np.ndarray, sigma: float, metrics: dict, path: Path, title: str) -> None:
    """Generated points over the modes; each circle is the 3σ high-quality region."""
    fig, ax = plt.subplots(figsize=(6.6, 5.2))
    ax.scatter(samples[:, 0], samples[:, 1], s=2, alpha=0.35, color="#2255aa", label="generated")
    for i, (cx, cy) in enumerate(modes):
        circle = plt.Circle((cx, cy), HQ_SIGMAS * sigma, fill=False, color="#cc3311", lw=1,
                            label=f"{HQ_SIGMAS:g}σ of a mode" if i == 0 else None)  # fmt: skip
        ax.add_patch(circle)
    pad = 0.5 + 0.1 * float(np.abs(modes).max())
    lim = float(np.abs(modes).max()) + pad
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal")
    shown = ", ".join(f"{k} {metrics[k]:.3g}" for k in ("modes", "hq_pct", "reverse_kl") if k in metrics)
    ax.set_title(f"{title}\n{shown}", fontsize=9)
    legend_outside(ax, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def sample_grid(images: np.ndarray, metrics: dict, path: Path, title: str, side: int = 8) -> None:
    """The first side² generated images (C, H, W in [0, 1]) tiled into one picture."""
    n, (_, h, w) = min(side * side, len(images)), images.shape[1:]
    mosaic = np.ones((side * (h + 1), side * (w + 1)))
    for i in range(n):
        r, c = divmod(i, side)
        mosaic[r * (h + 1) : r * (h + 1) + h, c * (w + 1) : c * (w + 1) + w] = images[i, 0]
    fig, ax = plt.subplots(figsize=(5, 5.4))
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1)
    ax.axis("off")
    shown = ", ".join(f"{k} {metrics[k]:.3g}" for k in ("fid_cls", "modes_cls") if k in metrics)
    ax.set_title(f"{title}\n{shown}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def loss_curves(history: list[dict], path: Path, title: str) -> None:
    """:func:`loss_curves_figure` written to ``path``."""
    fig = loss_curves_figure(history, title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def loss_curves_figure(history: list[dict], title: str) -> plt.Figure:
    """D and G loss per epoch (means over the epoch's steps), and the mode metrics when measured;
    whole epochs on every x axis."""
    measured = [(k, label) for k, label in CURVE_KEYS if any(k in h for h in history)]
    fig, axes = plt.subplots(1, 1 + len(measured), figsize=(4.5 * (1 + len(measured)) + 1.2, 3.6), squeeze=False)
    ax = axes[0][0]
    epochs = [h["epoch"] for h in history]
    ax.plot(epochs, [h["d_loss"] for h in history], label="D loss")
    ax.plot(epochs, [h["g_loss"] for h in history], label="G loss")
    ax.set(xlabel="epoch", ylabel="loss (without penalties)", title="D and G losses")
    legend_outside(ax, fontsize="small")
    epoch_axis(ax)
    for ax, (key, label) in zip(axes[0][1:], measured):
        points = [(h["epoch"], h[key]) for h in history if key in h]
        ax.plot(*zip(*points), marker="o")
        ax.set(xlabel="epoch", title=label)
        epoch_axis(ax)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
