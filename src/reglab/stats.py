"""The statistics behind the report: bootstrap intervals, the one-standard-error rule, paired
comparisons with the Wilcoxon signed-rank test, and Holm's correction. Pure numpy/scipy.

Every interval is a percentile bootstrap of the mean: draw ``n_boot`` resamples of the n values
with replacement, take each resample's mean m*_b, and report the (1−level)/2 and (1+level)/2
quantiles of {m*_b}.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable, Literal, Mapping, Sequence

import numpy as np
from scipy import stats

Direction = Literal["maximize", "minimize"]
MIN_SEEDS_FOR_INTERVAL = 5  # below this many seeds no interval is shown: n values' bootstrap is their spread


def bootstrap_means(values: Sequence[float], n_boot: int = 10000, seed: int = 0) -> np.ndarray:
    """The means m*_b = (1/n)·Σ_i x[I_bi] of ``n_boot`` resamples, I_bi uniform on {0…n−1}."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or len(x) == 0:
        raise ValueError("bootstrap needs a non-empty 1-D sample")
    rng = np.random.default_rng(seed)
    return x[rng.integers(0, len(x), size=(n_boot, len(x)))].mean(axis=1)


def bootstrap_ci(values: Sequence[float], level: float = 0.95, n_boot: int = 10000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean: the (1−level)/2 and (1+level)/2 quantiles of the
    resampled means. One value gives the degenerate interval [x, x]."""
    means = bootstrap_means(values, n_boot, seed)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    return float(low), float(high)


def standard_error(values: Sequence[float]) -> float:
    """SE of the mean, s/√n with the sample standard deviation s (ddof=1); 0 for a single value."""
    x = np.asarray(values, dtype=np.float64)
    return float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else 0.0


@dataclass(frozen=True)
class Summary:
    """Mean of n values with its percentile-bootstrap CI."""

    n: int
    mean: float
    low: float
    high: float


def summarize(values: Sequence[float], level: float = 0.95, n_boot: int = 10000, seed: int = 0) -> Summary:
    x = np.asarray(values, dtype=np.float64)
    low, high = bootstrap_ci(x, level, n_boot, seed)
    return Summary(len(x), float(x.mean()), low, high)


def summary_over_seeds(records: Iterable, key: str) -> Summary | None:
    """:func:`summarize` over seeds of ``key``: each seed's value is the mean over its records (its
    folds) that report ``key``, the seeds in the order they first appear. ``records`` are anything
    with ``seed`` and ``summary`` (a study's trial records, a GAN's runs); None when none reports it."""
    values: dict[int, list[float]] = defaultdict(list)
    for r in records:
        if isinstance(r.summary.get(key), (int, float)):
            values[r.seed].append(float(r.summary[key]))
    return summarize([np.mean(v) for v in values.values()]) if values else None


@dataclass(frozen=True)
class OneSEChoice:
    """λ_min has the best mean; λ_1se is the largest λ whose mean is within one SE of that best.

    ``threshold`` is best − SE (maximize) or best + SE (minimize), SE = s/√n at λ_min.
    """

    lam_min: float
    lam_1se: float
    best_mean: float
    se: float
    threshold: float


def one_se_choice(table: Mapping[float, Sequence[float]], lam_min: float, direction: Direction) -> OneSEChoice:
    """λ_1se from ``table`` (λ → validation values over seeds/folds) given λ_min, the λ with the best
    mean (chosen by ``reglab.study.choose``, which also breaks ties): with SE = s/√n of the values
    at λ_min, λ_1se = max{λ : mean(table[λ]) ≥ best − SE} when maximizing, or
    max{λ : mean(table[λ]) ≤ best + SE} when minimizing. λ_1se ≥ λ_min always.
    """
    samples = {float(lam): np.asarray(values, dtype=np.float64) for lam, values in table.items()}
    if float(lam_min) not in samples:
        raise ValueError("one_se_choice needs λ_min among the table's λ")
    means = {lam: float(values.mean()) for lam, values in samples.items()}
    best = means[float(lam_min)]
    se = standard_error(samples[float(lam_min)])
    threshold = best - se if direction == "maximize" else best + se
    within = [lam for lam, m in means.items() if (m >= threshold if direction == "maximize" else m <= threshold)]
    return OneSEChoice(float(lam_min), max(within), best, se, threshold)


@dataclass(frozen=True)
class PairedComparison:
    """A − B on paired observations (same seeds and folds).

    ``p_improve`` is the share of bootstrap resamples whose mean difference lies in the good
    direction (> 0 when maximizing, < 0 when minimizing). ``p_value`` is the two-sided Wilcoxon
    signed-rank p (zero differences dropped); ``note`` says when it could not be computed.
    """

    n: int
    mean_diff: float
    low: float
    high: float
    p_improve: float
    p_value: float
    note: str


def wilcoxon_p(diffs: np.ndarray) -> tuple[float, str]:
    """Two-sided Wilcoxon signed-rank p of the differences; p = 1 when all are zero."""
    if not np.any(diffs != 0):
        return 1.0, "all differences are zero"
    return float(stats.wilcoxon(diffs).pvalue), ""


def paired_comparison(a: Sequence[float], b: Sequence[float], direction: Direction = "maximize",
                      level: float = 0.95, n_boot: int = 10000, seed: int = 0) -> PairedComparison:
    """Compare A to B on pairs (a_i, b_i): d_i = a_i − b_i, mean d̄ with its bootstrap CI,
    P(improvement) = #{b : sign-correct d̄*_b}/n_boot, and the Wilcoxon signed-rank p of {d_i}."""
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1 or len(x) == 0:
        raise ValueError("paired_comparison needs two non-empty samples of equal length")
    diffs = x - y
    means = bootstrap_means(diffs, n_boot, seed)
    tail = (1 - level) / 2
    low, high = np.quantile(means, [tail, 1 - tail])
    good = means > 0 if direction == "maximize" else means < 0
    p_value, note = wilcoxon_p(diffs)
    nonzero = int(np.count_nonzero(diffs))
    if nonzero < 6 and not note:
        note = (f"only {nonzero} non-zero differences: the signed-rank test (which drops zero "
                "differences) cannot reach p<0.05 with fewer than 6")
    return PairedComparison(len(diffs), float(diffs.mean()), float(low), float(high),
                            float(good.mean()), p_value, note)


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment, in the input order: with p_(1) ≤ … ≤ p_(m),
    adjusted p_(i) = max_{j≤i} min(1, (m − j + 1)·p_(j))."""
    p = np.asarray(pvalues, dtype=np.float64)
    m = len(p)
    order = np.argsort(p, kind="stable")
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.maximum.accumulate(scaled)
    return adjusted
