"""The run's own plots: the learning curve (with zeros per layer) and the weights (matplotlib, no display).

A run that diverged still gets its plots: NaN and infinite values are left out of every plot, and
the plot's title says how many were dropped, so plotting never turns a known failure into a crash.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator  # noqa: E402


def finite(values) -> tuple[np.ndarray, int]:
    """``values`` as floats with NaN in place of every non-finite entry, and how many there were."""
    array = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(array)
    return np.where(bad, np.nan, array), int(bad.sum())


def dropped_note(count: int) -> str:
    return f" ({count} non-finite value{'s' * (count != 1)} not shown)" if count else ""


def hist_range(values: np.ndarray) -> tuple[float, float]:
    """The histogram's range: the data's, widened to at least 1e-6 of its magnitude, so that 120
    bins have a finite width even when every weight is the same huge number."""
    lo, hi = float(values.min()), float(values.max())
    mid, half = lo / 2 + hi / 2, max(hi / 2 - lo / 2, 1e-6 * max(abs(lo), abs(hi)), 1e-12)
    return min(lo, mid - half), max(hi, mid + half)


def epoch_axis(ax) -> None:
    """Whole epochs on the x axis; plain numbers (0.5, 2, not 10⁻¹ powers) on a log y axis."""
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if ax.get_yscale() == "log":
        for axis in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            axis(FuncFormatter(lambda value, _: f"{value:g}"))


def legend_outside(ax, **options):
    """The axes' legend to their right, where it covers no curve; ``tight_layout`` makes room."""
    return ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **options)


def layer_zeros(metrics: list[dict]) -> dict[str, list[float]]:
    """Per layer, its percentage of exact zeros at each epoch (``zeros/<name>``), when some layer has any."""
    layers = {k.removeprefix("zeros/"): [m.get(k, np.nan) for m in metrics]
              for k in metrics[0] if k.startswith("zeros/")}
    return layers if any(v > 0 for values in layers.values() for v in values) else {}


def learning_curve_figure(metrics: list[dict], title: str) -> plt.Figure:
    """Train/val loss (and accuracy) per epoch, with the generalization gap visible; when the
    weights have exact zeros (proximal L1), the percentage of zeros per layer over time."""
    epochs = [m["epoch"] for m in metrics]
    has_acc = "train_acc" in metrics[0]
    zeros = layer_zeros(metrics)
    panels = 1 + has_acc + bool(zeros)
    fig, axes = plt.subplots(1, panels, figsize=(6.2 * panels, 3.8), squeeze=False)
    axes = list(axes[0])
    ax = axes.pop(0)
    train, dropped_train = finite([m["train_loss"] for m in metrics])
    val, dropped_val = finite([m["val_loss"] for m in metrics])
    dropped = dropped_train + dropped_val
    ax.plot(epochs, train, label="train")
    ax.plot(epochs, val, label="validation")
    ax.set(xlabel="epoch", ylabel="loss (without penalty)", title="loss")
    if np.any(np.isfinite(train)) and np.nanmin(train) > 0:
        ax.set_yscale("log")
    legend_outside(ax)
    epoch_axis(ax)
    if has_acc:
        ax = axes.pop(0)
        train_acc, dropped_train = finite([m["train_acc"] for m in metrics])
        val_acc, dropped_val = finite([m["val_acc"] for m in metrics])
        dropped += dropped_train + dropped_val
        ax.plot(epochs, train_acc, label="train")
        ax.plot(epochs, val_acc, label="validation")
        ax.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
        legend_outside(ax)
        epoch_axis(ax)
    if zeros:
        ax = axes.pop(0)
        for layer, values in zeros.items():
            ax.plot(epochs, values, label=layer)
        ax.set(xlabel="epoch", ylabel="exact zeros (%)", title="exact zeros per layer", ylim=(-2, 102))
        legend_outside(ax, fontsize="small")
        epoch_axis(ax)
    fig.suptitle(title + dropped_note(dropped))
    fig.tight_layout()
    return fig


def learning_curve(metrics: list[dict], path: Path, title: str) -> None:
    save(learning_curve_figure(metrics, title), path)


FEW_WEIGHTS = 40  # up to this many weights, each is drawn as a bar rather than a histogram


def weight_figure(named_weights: dict[str, np.ndarray], title: str) -> plt.Figure:
    """The weights and their share of exact zeros: each weight as a bar when there are few (a
    linear model's coefficients), else a histogram of all entries (log counts)."""
    values = np.concatenate([w.ravel() for w in named_weights.values()]) if named_weights else np.zeros(0)
    zeros = float(np.mean(values == 0)) if values.size else 0.0
    shown, dropped = finite(values)
    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    if values.size <= FEW_WEIGHTS:
        names = [f"{name}[{i}]" for name, w in named_weights.items() for i in range(w.size)]
        bars = ax.bar(range(values.size), np.nan_to_num(shown), width=0.6, color="#4466aa")
        ax.bar_label(bars, labels=[f"{v:.4g}" for v in values], fontsize="small")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xticks(range(values.size), names, rotation=90 if values.size > 6 else 0, fontsize="small")
        ax.set(ylabel="weight value", title=f"{title}: weights (exact zeros {zeros:.1%}){dropped_note(dropped)}")
    else:
        kept = shown[np.isfinite(shown)]
        kept = kept if kept.size else np.zeros(1)
        ax.hist(kept, bins=120, range=hist_range(kept), color="#4466aa")
        ax.set_yscale("log")
        ax.set(xlabel="weight value", ylabel="count (log)",
               title=f"{title}: exact zeros {zeros:.1%}{dropped_note(dropped)}")
    fig.tight_layout()
    return fig


def weight_histogram(named_weights: dict[str, np.ndarray], path: Path, title: str) -> None:
    save(weight_figure(named_weights, title), path)


def save(fig: plt.Figure, path: Path) -> None:
    fig.savefig(path, dpi=110)
    plt.close(fig)
