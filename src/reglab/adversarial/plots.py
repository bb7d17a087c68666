"""The adversarial run's own plot (matplotlib, no display): robust accuracy over the epochs and against ε."""

from __future__ import annotations

from pathlib import Path

from reglab.plots import epoch_axis, legend_outside, plt, save


def robustness(metrics: list[dict], summary: dict, path: Path, title: str) -> None:
    """:func:`robustness_figure` written to ``path``."""
    save(robustness_figure(metrics, summary, title), path)


def robustness_figure(metrics: list[dict], summary: dict, title: str) -> plt.Figure:
    """PGD accuracy per epoch (train/val batches, best checkpoint marked) and test accuracy against ε."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11.5, 3.8))
    epochs = [m["epoch"] for m in metrics]
    left.plot(epochs, [m["train_robust_acc"] for m in metrics], marker=".", label="train (robust)")
    left.plot(epochs, [m["val_robust_acc"] for m in metrics], marker=".", label="validation (robust)")
    left.plot(epochs, [m["val_acc"] for m in metrics], ":", marker=".", label="validation (clean)")
    if "robust_best_epoch" in summary:
        left.axvline(summary["robust_best_epoch"], color="grey", lw=0.8, ls="--", label="best (val robust)")
    left.set(xlabel="epoch", ylabel="accuracy", title=f"accuracy under PGD at ε={summary['robust_eps']:g}")
    legend_outside(left, fontsize="small")
    epoch_axis(left)
    eps, acc = zip(*summary["robust_curve"])
    right.plot(eps, acc, "o-")
    right.set(xlabel="ε", ylabel="test accuracy", ylim=(0, 1.02), title=summary["robust_attack"].split(",")[0])
    fig.suptitle(title)
    fig.tight_layout()
    return fig
