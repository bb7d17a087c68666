"""The report's figures (matplotlib, Agg), one PNG each in ``<out>/plots/``.

* metric vs λ per family: mean and 95% bootstrap band of the validation and test metric, λ_min
  (solid) and λ_1se (dashed) marked, the baseline as a horizontal band;
* train and validation curves per λ (mean over seeds and folds, colour by λ);
* the generalization gap vs λ;
* weight norm ‖w‖₂ and sparsity (share of exact zeros, 0–100 %) vs λ;
* coefficient paths of linear models: trained coefficients vs λ, the reference solution dotted;
* an adversarial study's accuracy vs ε from the final robust evaluation, per config.

A λ plot has a panel per family run at two λ or more (none when no family is); panels that
compare one quantity share their y axis; every legend sits outside its axes, where it covers no
curve; bands are drawn only over ``stats.MIN_SEEDS`` seeds or more.
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter  # noqa: E402

from reglab.report.analysis import Analysis, ConfigStats, FamilyChoice  # noqa: E402
from reglab.formatting import fmt_lam, fmt_strengths  # noqa: E402
from reglab.plots import legend_outside  # noqa: E402
from reglab.report.edges import symbol  # noqa: E402
from reglab.stats import Summary, summarize  # noqa: E402

PANEL_W, PANEL_H, DPI, MAX_COLUMNS = 6.0, 3.4, 100, 3
PLOT_NAMES = ("metric_vs_lambda", "curves", "gap_vs_lambda", "weights_vs_lambda", "coefficient_paths",
              "robust_vs_eps")


@dataclass(frozen=True)
class Plot:
    path: Path
    title: str
    caption: str


def panels(n: int, columns: int = MAX_COLUMNS, sharey: bool | str = True):
    """A figure with n axes in rows of at most ``columns``, sharing their y axis (they compare one
    quantity) unless ``sharey`` says otherwise; returns the axes in reading order."""
    cols = min(n, columns)
    rows = math.ceil(n / cols)
    fig, grid = plt.subplots(rows, cols, figsize=(PANEL_W * cols, PANEL_H * rows + 0.4), squeeze=False,
                             sharey=sharey)
    axes = list(grid.ravel())
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def title(ax, text: str) -> None:
    ax.set_title(textwrap.fill(text, 44), fontsize=9.5)


def short(label: str, width: int = 30) -> str:
    """A label for a legend: its strength in the one λ form, cut to ``width`` characters."""
    label = fmt_strengths(label)
    return label if len(label) <= width else label[: width - 1] + "…"


def lam_axis(ax, lams: list[float], strength: str | None) -> None:
    """Log λ axis (linear for dropout rates and a single λ); symmetric-log when λ=0 is among the
    points, so the unpenalized end shows. Tick labels in the one λ form (``fmt_lam``)."""
    positive = [lam for lam in lams if lam > 0]
    if not (is_rate(strength) or not positive or len(set(lams)) == 1):
        if len(positive) < len(lams):
            ax.set_xscale("symlog", linthresh=min(positive))
        else:
            ax.set_xscale("log")
    if len(set(lams)) == 1:
        ax.set_xticks(lams[:1])
    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _: fmt_lam(value)))
    ax.xaxis.set_minor_formatter(NullFormatter())


def band(ax, lams, summaries: list[Summary], scale: float, label: str, style: str = "-", color=None):
    """The mean line with its CI as a shaded band (none over fewer than ``stats.MIN_SEEDS`` seeds)."""
    mean = [s.mean * scale for s in summaries]
    (line,) = ax.plot(lams, mean, style, marker="o", ms=3.5, label=label, color=color)
    if not all(s.has_interval for s in summaries):
        return
    low, high = [s.low * scale for s in summaries], [s.high * scale for s in summaries]
    ax.fill_between(lams, low, high, color=line.get_color(), alpha=0.18, lw=0)
    if len(lams) == 1:  # a band needs two points: show the interval as an error bar
        ax.errorbar(lams, mean, yerr=[[mean[0] - low[0]], [high[0] - mean[0]]], color=line.get_color(), capsize=4)


def baseline_band(ax, baseline: ConfigStats | None, summary: Summary | None, scale: float) -> None:
    if baseline is None or summary is None:
        return
    if summary.has_interval:
        ax.axhspan(summary.low * scale, summary.high * scale, color="0.55", alpha=0.18, lw=0)
    ax.axhline(summary.mean * scale, color="0.35", lw=1, ls=":", label=f"baseline: {short(baseline.label, 24)}")


def save(fig, path: Path, heading: str) -> None:
    columns = max(1, round(fig.get_figwidth() / PANEL_W))
    fig.suptitle(textwrap.fill(heading, 46 * columns), fontsize=11.5)
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)


def is_rate(strength: str | None) -> bool:
    """Whether a family's strength (``ConfigStats.strength``) is a dropout rate, shown on a linear axis."""
    return strength == "model.dropout"


def strength_name(strength: str | None) -> str:
    return "dropout rate p" if is_rate(strength) else "λ"


def config_legend(ax, configs: list[ConfigStats]) -> None:
    """A line per config, outside the axes, titled by what its values are (λ or a dropout rate)."""
    legend_outside(ax, fontsize=7, title=None if configs[0].lam is None else strength_name(configs[0].strength),
                   title_fontsize=7)


def swept(analysis: Analysis) -> list[FamilyChoice]:
    """The families run at two λ or more: the ones a λ plot has a panel for."""
    return [sel for sel in analysis.selections if len({c.lam for c in sel.configs}) >= 2]


def metric_vs_lambda(analysis: Analysis, folder: Path) -> Plot:
    metric = analysis.metric
    unit = " (%)" if metric.scale == 100 else ""
    fig, axes = panels(len(swept(analysis)))
    for ax, sel in zip(axes, swept(analysis)):
        lams = [c.lam for c in sel.configs]
        baseline_band(ax, sel.baseline, sel.baseline.val if sel.baseline else None, metric.scale)
        band(ax, lams, [c.val for c in sel.configs], metric.scale, "validation")
        band(ax, lams, [c.test for c in sel.configs], metric.scale, "test", style="--")
        s = symbol(sel.at_min.strength)
        ax.axvline(sel.choice.lam_min, color="C3", lw=1.2, label=f"{s}_min = {fmt_lam(sel.choice.lam_min)}")
        ax.axvline(sel.choice.lam_1se, color="C3", lw=1.2, ls="--", label=f"{s}_1se = {fmt_lam(sel.choice.lam_1se)}")
        lam_axis(ax, lams, sel.at_min.strength)
        title(ax, sel.family)
        ax.set(ylabel=f"{metric.name}{unit}", xlabel=strength_name(sel.at_min.strength))
        legend_outside(ax, fontsize=7)
    path = folder / "metric_vs_lambda.png"
    save(fig, path, f"{metric.name} vs regularization strength (mean, 95% bootstrap CI)")
    return Plot(path, f"{metric.name[0].upper()}{metric.name[1:]} vs λ",
                "Validation (solid) and test (dashed) mean with the 95% bootstrap band over seeds; λ is chosen "
                "on validation only (red: λ_min solid, λ_1se dashed). The grey band is the baseline's validation "
                "mean and CI.")


def mean_curve(records: list, key: str) -> np.ndarray:
    """The per-epoch mean over trials; trials that stopped early stop contributing."""
    series = [[h.get(key, math.nan) for h in r.history] for r in records if r.history and key in r.history[0]]
    if not series:
        return np.array([])
    grid = np.full((len(series), max(map(len, series))), np.nan)
    for i, values in enumerate(series):
        grid[i, : len(values)] = values
    return np.nanmean(grid, axis=0)


def curve_groups(analysis: Analysis) -> list[tuple[str, list[ConfigStats]]]:
    """One panel per family, and one for the configs without λ (the baselines)."""
    groups = [(sel.family, sel.configs) for sel in analysis.selections]
    others = [c for c in analysis.configs if c.lam is None]
    if others:
        groups.append(("without λ", others))
    return groups


def learning_curves(analysis: Analysis, folder: Path) -> Plot:
    metric = analysis.metric
    kind = "acc" if metric.key.endswith("acc") else "loss"
    groups = curve_groups(analysis)
    fig, axes = panels(len(groups))
    for ax, (name, configs) in zip(axes, groups):
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(configs)))
        lowest = math.inf
        for color, config in zip(colors, configs):
            legend = short(config.label) if config.lam is None else fmt_lam(config.lam)
            for split, style in (("train", "-"), ("val", "--")):
                curve = mean_curve(config.records, f"{split}_{kind}")
                ax.plot(np.arange(1, len(curve) + 1), curve * metric.scale, color=color, lw=1.2, ls=style,
                        label=legend if split == "train" else None)
                lowest = min(lowest, float(np.nanmin(curve))) if curve.size else lowest
        if kind == "loss" and 0 < lowest < math.inf:
            ax.set_yscale("log")
        title(ax, name)
        ax.set(xlabel="epoch", ylabel=kind_name(metric, kind))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        config_legend(ax, configs)
    path = folder / "curves.png"
    save(fig, path, "train (solid) and validation (dashed) curves, mean over seeds")
    return Plot(path, "Train and validation curves per λ",
                "Train (solid) and validation (dashed), mean over seeds (and folds) at each epoch; colour goes "
                "from weak to strong regularization.")


def kind_name(metric, kind: str) -> str:
    """The curves' axis: clean accuracy, or the data loss (a GAN's objective is no curve's)."""
    if kind == "acc":
        return "accuracy (%)"
    return f"{metric.name if metric.held_out else 'loss'} (without penalty)"


def gap_vs_lambda(analysis: Analysis, folder: Path) -> Plot:
    metric = analysis.metric
    scale = metric.scale
    fig, axes = panels(len(swept(analysis)))
    for ax, sel in zip(axes, swept(analysis)):
        configs = [c for c in sel.configs if c.gap is not None]
        lams = [c.lam for c in configs]
        baseline_band(ax, sel.baseline, sel.baseline.gap if sel.baseline else None, scale)
        band(ax, lams, [c.gap for c in configs], scale, "gap", color="C2")
        ax.axhline(0, color="0.7", lw=0.8)
        lam_axis(ax, lams, sel.at_min.strength)
        title(ax, sel.family)
        ax.set(xlabel=strength_name(sel.at_min.strength), ylabel=metric.gap_name)
        legend_outside(ax, fontsize=7)
    path = folder / "gap_vs_lambda.png"
    save(fig, path, "generalization gap vs regularization strength (mean, 95% bootstrap CI)")
    return Plot(path, "Robust generalization gap vs λ" if metric.robust else "Generalization gap vs λ",
                f"{metric.gap_name[0].upper()}{metric.gap_name[1:]} of the final model; the grey band is the "
                "baseline's.")


def weights_vs_lambda(analysis: Analysis, folder: Path) -> Plot:
    """Per family, ‖w‖₂ (left column, one y scale for all families) and exact zeros (right, 0–100 %)."""
    fig, axes = panels(2 * len(swept(analysis)), columns=2, sharey="col")
    quantities = (("weight_l2", "‖w‖₂ of all weights", 1.0, "C4"), ("sparsity", "exact zeros (%)", 1.0, "C1"))
    for i, sel in enumerate(swept(analysis)):
        for ax, (attr, label, scale, color) in zip(axes[2 * i : 2 * i + 2], quantities):
            known = [c for c in sel.configs if getattr(c, attr) is not None]
            if not known:
                ax.set_visible(False)
                continue
            lams, values = [c.lam for c in known], [getattr(c, attr) * scale for c in known]
            ax.plot(lams, values, marker="o", ms=3.5, color=color)
            base = getattr(sel.baseline, attr) if sel.baseline is not None else None
            if base is not None:
                ax.axhline(base * scale, color="0.35", ls=":", lw=1, label=f"baseline: {short(sel.baseline.label, 24)}")
                legend_outside(ax, fontsize=7)
            if attr == "sparsity":
                ax.set_ylim(0, 100)
            lam_axis(ax, lams, sel.at_min.strength)
            title(ax, sel.family)
            ax.set(xlabel=strength_name(sel.at_min.strength), ylabel=label)
    path = folder / "weights_vs_lambda.png"
    save(fig, path, "weight norm and sparsity vs regularization strength (mean over seeds)")
    return Plot(path, "Weight norm and sparsity vs λ",
                "L2 shrinks the norm without making weights exactly zero; only a proximal L1 step gives exact zeros.")


def coefficient_selections(analysis: Analysis) -> list[FamilyChoice]:
    return [sel for sel in swept(analysis)
            if all("trained_coef" in r.summary for c in sel.configs for r in c.records)]


def mean_coef(config: ConfigStats, key: str) -> np.ndarray | None:
    rows = [r.summary[key] for r in config.records if key in r.summary]
    return np.mean(np.asarray(rows, dtype=np.float64), axis=0) if rows else None


def coefficient_paths(analysis: Analysis, folder: Path) -> Plot | None:
    chosen = coefficient_selections(analysis)
    if not chosen:
        return None
    fig, axes = panels(len(chosen))
    for ax, sel in zip(axes, chosen):
        lams = [c.lam for c in sel.configs]
        trained = np.array([mean_coef(c, "trained_coef") for c in sel.configs])
        reference = [mean_coef(c, "reference_coef") for c in sel.configs]
        colors = plt.cm.tab20(np.arange(trained.shape[1]) % 20)
        for j in range(trained.shape[1]):
            ax.plot(lams, trained[:, j], color=colors[j], lw=1.3)
        if all(ref is not None for ref in reference):
            for j, path in enumerate(np.array(reference).T):
                ax.plot(lams, path, color=colors[j], lw=0, marker="x", ms=4)
        ax.axhline(0, color="0.7", lw=0.8)
        lam_axis(ax, lams, sel.at_min.strength)
        title(ax, sel.family)
        ax.set(xlabel=strength_name(sel.at_min.strength), ylabel="coefficient")
    path = folder / "coefficient_paths.png"
    save(fig, path, "coefficient paths: trained (lines) and reference solution (×)")
    return Plot(path, "Coefficient paths",
                "Each line is one coefficient of the linear model (mean over seeds; at most the first 20); "
                "crosses mark the closed-form or scikit-learn solution at the same λ.")


def robust_curve(config: ConfigStats) -> tuple[list[float], list[Summary]]:
    """ε and the accuracy there over seeds (each seed the mean over its folds), from each run's final
    robust evaluation (``robust_curve``: [ε, accuracy] pairs); the ε every run evaluated."""
    per_seed: dict[float, dict[int, list[float]]] = {}
    for r in config.records:
        for eps, acc in r.summary.get("robust_curve") or ():
            per_seed.setdefault(float(eps), {}).setdefault(r.seed, []).append(float(acc))
    every = [eps for eps, seeds in sorted(per_seed.items()) if len(seeds) == config.n]
    return every, [summarize([float(np.mean(v)) for v in per_seed[eps].values()]) for eps in every]


def robust_vs_eps(analysis: Analysis, folder: Path) -> Plot | None:
    """Accuracy vs ε, a panel per family (and one for the configs without λ), a line per config."""
    groups = [(name, [c for c in configs if robust_curve(c)[0]]) for name, configs in curve_groups(analysis)]
    groups = [(name, configs) for name, configs in groups if configs]
    if not groups:
        return None
    fig, axes = panels(len(groups))
    for ax, (name, configs) in zip(axes, groups):
        colors = plt.cm.viridis(np.linspace(0, 0.9, len(configs)))
        for color, config in zip(colors, configs):
            eps, summaries = robust_curve(config)
            band(ax, eps, summaries, 100.0, short(config.label) if config.lam is None else fmt_lam(config.lam),
                 color=color)
        title(ax, name)
        ax.set(xlabel="ε (attack budget)", ylabel="test accuracy under PGD (%)", ylim=(0, 100))
        config_legend(ax, configs)
    path = folder / "robust_vs_eps.png"
    save(fig, path, "test accuracy vs attack budget ε (final robust evaluation, mean over seeds)")
    return Plot(path, "Accuracy vs ε",
                "Test accuracy under the final PGD evaluation at each ε (ε = 0: clean), mean over seeds with the "
                "95% bootstrap band, a line per config.")


def make_plots(analysis: Analysis, folder: Path) -> list[Plot]:
    """Draw every figure that the data support into ``folder``; returns them in reading order."""
    folder.mkdir(parents=True, exist_ok=True)
    plots = []
    if swept(analysis):
        plots.append(metric_vs_lambda(analysis, folder))
    if analysis.metric.held_out and any(r.history for c in analysis.configs for r in c.records):
        plots.append(learning_curves(analysis, folder))  # a GAN's split losses are no curve of it
    robust = robust_vs_eps(analysis, folder)
    if robust is not None:
        plots.append(robust)
    if swept(analysis):
        if any(c.gap is not None for c in analysis.configs):
            plots.append(gap_vs_lambda(analysis, folder))
        if any(c.weight_l2 is not None or c.sparsity is not None for c in analysis.configs):
            plots.append(weights_vs_lambda(analysis, folder))
        paths = coefficient_paths(analysis, folder)
        if paths is not None:
            plots.append(paths)
    return plots
