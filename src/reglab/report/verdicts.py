"""One sentence per comparison, e.g.

    L2 λ=1e-3 raises test accuracy by 2.1 points [1.3, 2.9] over none (n = 10 seeds, Holm p=0.002)
    L2 λ=1e-3 changes test accuracy by −0.3 points [−1.1, 0.6] over none: no significant
    difference at 0.05 (n = 10 seeds, folds averaged within each, Holm p=0.62)
    Dropout p=0.5 raises test accuracy by 3.0 points [2.1, 3.9] over none, which also differs in
    optim.lr=0.01 (vs 0.001) (n = 10 seeds, Holm p=0.004)

The sentence claims: the compared config's mean paired difference from its baseline over seeds
(the unit of analysis; a seed on which either config failed is left out and named: ``…, Holm
p=0.004; seed 3 left out, as none failed on it``), its 95% bootstrap CI, and whether the Holm-adjusted Wilcoxon p is below
0.05. The baseline differs from the config only in the regularizer named first, unless the
sentence names the other keys in which it differs (with the baseline's value, then the
config's): then the difference is not the regularizer's alone. A significant change is named by
the way it moves the metric ("raises"/"lowers"), with its size and interval as positive numbers.
With fewer than ``stats.MIN_SEEDS`` pairs the sentence gives no interval.
"""

from __future__ import annotations

import json

from reglab.formatting import fmt_p, fmt_strengths, fmt_value, signed
from reglab.stats import MIN_SEEDS

ALPHA = 0.05
DISPLAY = {"l1": "L1", "l2": "L2", "elastic": "Elastic net", "group": "Group lasso", "dropout": "Dropout",
           "none": "none"}


def display_label(label: str) -> str:
    """``l2 λ=0.001`` → ``L2 λ=1e-3``: the penalty's name as people write it, the strength in the
    one λ form (``formatting.fmt_strengths``)."""
    head, space, rest = label.partition(" ")
    return fmt_strengths(DISPLAY.get(head, head) + space + rest)


def amount(value: float, scale: float) -> str:
    return signed(value * scale, ".1f" if scale == 100 else ".3g")


def sample_size(seeds: int, folds: int) -> str:
    text = f"n = {seeds} seed{'s' if seeds != 1 else ''}"
    return f"{text}, {folds} folds averaged within each" if folds else text


def show(value) -> str:
    return json.dumps(value) if isinstance(value, (list, dict, bool)) or value is None else str(value)


def baseline_text(comparison) -> str:
    """``none``, or ``none, which also differs in model.dropout=0 (vs 0.2)``."""
    also = comparison.also_differs
    if not also:
        return comparison.baseline.label
    base, own = comparison.baseline.settings, comparison.chosen.settings
    keys = ", ".join(f"{k}={show(base.get(k))} (vs {show(own.get(k))})" for k in also)
    return f"{comparison.baseline.label}, which also differs in {keys}"


def left_out(failed_out: dict[str, list[int]]) -> str:
    """``; seed 3 left out, as none failed on it`` for each config that failed on seeds of the pair."""
    parts = []
    for label, seeds in failed_out.items():
        many = len(seeds) > 1
        parts.append(f"; seed{'s' * many} {', '.join(map(str, seeds))} left out, as {display_label(label)} "
                     f"failed on {'them' if many else 'it'}")
    return "".join(parts)


def interval(low: float, high: float, scale: float, n: int) -> str:
    """`` [1.3, 2.9]`` with n ≥ ``MIN_SEEDS`` values, else nothing (``stats.MIN_SEEDS``)."""
    return f" [{amount(low, scale)}, {amount(high, scale)}]" if n >= MIN_SEEDS else ""


def verdict(comparison) -> str:
    """The sentence for one comparison (``analysis.Comparison``) on its test metric; with fewer
    than ``MIN_SEEDS`` pairs, without its interval."""
    r, metric = comparison.result, comparison.metric
    quantity = metric.quantity
    unit = " points" if metric.scale == 100 else ""
    subject = display_label(comparison.chosen.label)
    baseline = baseline_text(comparison)
    tail = (f"({sample_size(comparison.seeds, comparison.folds)}, Holm p{fmt_p(comparison.holm_p)}"
            f"{left_out(comparison.failed_out)})")
    if comparison.holm_p >= ALPHA:
        return (f"{subject} changes {quantity} by {amount(r.mean_diff, metric.scale)}{unit}"
                f"{interval(r.low, r.high, metric.scale, r.n)} over {baseline}: "
                f"no significant difference at {ALPHA} {tail}")
    if r.mean_diff > 0:
        verb, size, low, high = "raises", r.mean_diff, r.low, r.high
    else:
        verb, size, low, high = "lowers", -r.mean_diff, -r.high, -r.low
    return (f"{subject} {verb} {quantity} by {amount(size, metric.scale)}{unit}"
            f"{interval(low, high, metric.scale, r.n)} over {baseline} {tail}")


def value_text(summary, scale: float) -> str:
    """``82.1 [80.3, 83.9]``, or ``82.1`` with fewer than ``MIN_SEEDS`` seeds."""
    if not summary.has_interval:
        return fmt_value(summary.mean, scale)
    return f"{fmt_value(summary.mean, scale)} [{fmt_value(summary.low, scale)}, {fmt_value(summary.high, scale)}]"


def best_sentence(best, choice, metric) -> str:
    """The config chosen on validation among all (``best``, an ``analysis.ConfigStats``, by
    ``choice``, the chooser's ``Choice``): its test metric with CI (and, for robust accuracy, the
    clean test accuracy beside it), the tie it won and how, and each config passed over for a
    failed run (named with its seeds)."""
    text = (f"Chosen on validation among all configs: {display_label(best.label)}, {metric.quantity} "
            f"{value_text(best.test, metric.scale)}")
    clean = best.table.get("test_acc") if metric.robust else None
    if clean is not None:
        text += f", clean test accuracy {value_text(clean, 100)}"
    text += f" (n = {best.test.n} seeds)"
    if choice.tie:
        text += (f"; a tie on validation with {', '.join(display_label(label) for label in choice.tied)}, "
                 f"broken by {choice.broken_by}")
    for other in choice.passed_over:
        text += f"; not chosen, as a run failed: {display_label(other.text())}"
    return text


def reference_sentence(config, published: dict, metric) -> str:
    """The published figure against ``config``, the study's config equal to the recipe's own on
    every setting (the only one it is a reference for)."""
    t, value = config.test, float(published["value"])
    gap = t.mean - value
    side = "above" if gap > 0 else "below"
    if metric.direction == "minimize":
        side = "worse than" if gap > 0 else "better than"
    unit = " points" if metric.scale == 100 else ""
    return (f"Published reference for the recipe's own config ({display_label(config.label)}): "
            f"{fmt_value(value, metric.scale)} ({published.get('source', '')}); ours is "
            f"{value_text(t, metric.scale)} (n = {t.n} seeds), {amount(abs(gap), metric.scale)}{unit} {side} it")
