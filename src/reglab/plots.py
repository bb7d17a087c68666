"""The run's own plots: the learning curve and the weight histogram (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def learning_curve(metrics: list[dict], path: Path, title: str) -> None:
    """Train/val loss (and accuracy) per epoch, with the generalization gap visible."""
    epochs = [m["epoch"] for m in metrics]
    has_acc = "train_acc" in metrics[0]
    fig, axes = plt.subplots(1, 2 if has_acc else 1, figsize=(10 if has_acc else 5.5, 3.8), squeeze=False)
    ax = axes[0][0]
    ax.plot(epochs, [m["train_loss"] for m in metrics], label="train")
    ax.plot(epochs, [m["val_loss"] for m in metrics], label="validation")
    ax.set(xlabel="epoch", ylabel="loss (without penalty)", title="loss")
    if min(m["train_loss"] for m in metrics) > 0:
        ax.set_yscale("log")
    ax.legend()
    if has_acc:
        ax = axes[0][1]
        ax.plot(epochs, [m["train_acc"] for m in metrics], label="train")
        ax.plot(epochs, [m["val_acc"] for m in metrics], label="validation")
        ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def weight_histogram(named_weights: dict[str, np.ndarray], path: Path, title: str) -> None:
    """Histogram of every weight matrix's entries (log counts), with the share of exact zeros."""
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    values = np.concatenate([w.ravel() for w in named_weights.values()]) if named_weights else np.zeros(1)
    zeros = float(np.mean(values == 0))
    ax.hist(values, bins=120, color="#4466aa")
    ax.set_yscale("log")
    ax.set(xlabel="weight value", ylabel="count (log)", title=f"{title}: exact zeros {zeros:.1%}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def robustness(metrics: list[dict], summary: dict, path: Path, title: str) -> None:
    """PGD accuracy per epoch (train/val batches, best checkpoint marked) and test accuracy against ε."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    epochs = [m["epoch"] for m in metrics]
    left.plot(epochs, [m["train_robust_acc"] for m in metrics], label="train (robust)")
    left.plot(epochs, [m["val_robust_acc"] for m in metrics], label="validation (robust)")
    left.plot(epochs, [m["val_acc"] for m in metrics], ":", label="validation (clean)")
    if "robust_best_epoch" in summary:
        left.axvline(summary["robust_best_epoch"], color="grey", lw=0.8, ls="--", label="best (val robust)")
    left.set(xlabel="epoch", ylabel="accuracy", title=f"accuracy under PGD at ε={summary['robust_eps']:g}")
    left.legend()
    eps, acc = zip(*summary["robust_curve"])
    right.plot(eps, acc, "o-")
    right.set(xlabel="ε", ylabel="test accuracy", ylim=(0, 1.02), title=summary["robust_attack"].split(",")[0])
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
