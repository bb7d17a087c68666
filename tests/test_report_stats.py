"""The report's statistics against references: scipy, closed forms and hand computations."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from reglab.formatting import fmt_ci, fmt_lam, signed
from reglab.stats import (bootstrap_ci, holm, one_se_choice, paired_comparison, standard_error,
                                 summarize)


def test_bootstrap_ci_matches_scipy_percentile_bootstrap():
    x = np.random.default_rng(1).normal(3.0, 2.0, size=25)
    low, high = bootstrap_ci(x, level=0.95, n_boot=40000, seed=0)
    ref = sps.bootstrap((x,), np.mean, confidence_level=0.95, n_resamples=40000, method="percentile",
                        random_state=np.random.default_rng(7)).confidence_interval
    se = x.std(ddof=1) / math.sqrt(len(x))
    assert abs(low - ref.low) < 0.05 * se and abs(high - ref.high) < 0.05 * se
    assert low < x.mean() < high


def test_bootstrap_ci_covers_the_true_mean_at_about_the_nominal_rate():
    rng = np.random.default_rng(0)
    hits = 0
    trials = 300
    for i in range(trials):
        sample = rng.normal(5.0, 1.0, size=40)
        low, high = bootstrap_ci(sample, n_boot=2000, seed=i)
        hits += low <= 5.0 <= high
    assert 0.90 <= hits / trials <= 0.98


def test_bootstrap_of_one_value_is_that_value():
    assert bootstrap_ci([0.7]) == (0.7, 0.7)
    s = summarize([0.7])
    assert (s.n, s.mean, s.low, s.high) == (1, 0.7, 0.7, 0.7)


def test_one_se_rule_on_a_constructed_table():
    # best mean 0.82 at 1e-3 with values 0.80, 0.82, 0.84: SE = 0.02 / sqrt(3) = 0.011547
    table = {
        1e-4: [0.79, 0.80, 0.81],   # mean 0.80: below 0.82 − SE = 0.80845
        1e-3: [0.80, 0.82, 0.84],   # mean 0.82, the best
        1e-2: [0.81, 0.81, 0.81],   # mean 0.81: within one SE
        1e-1: [0.70, 0.80, 0.90],   # mean 0.80: outside
    }
    choice = one_se_choice(table, 1e-3, "maximize")
    assert choice.lam_min == 1e-3 and choice.best_mean == pytest.approx(0.82)
    assert choice.lam_1se == 1e-2
    assert choice.se == pytest.approx(0.02 / math.sqrt(3))
    assert choice.threshold == pytest.approx(0.82 - 0.02 / math.sqrt(3))


def test_one_se_rule_when_minimizing_picks_the_largest_lambda_within_one_se():
    table = {0.0: [1.0, 1.2], 0.01: [0.9, 1.1], 0.1: [1.05, 1.05], 1.0: [1.2, 1.3]}
    # best 1.0 at 0.01, SE = std([0.9, 1.1], ddof=1)/sqrt(2) = 0.1; threshold 1.1
    choice = one_se_choice(table, 0.01, "minimize")
    assert (choice.lam_min, choice.lam_1se) == (0.01, 0.1)
    assert choice.se == pytest.approx(0.1)


def test_one_se_rule_with_a_single_seed_has_no_spread():
    choice = one_se_choice({0.1: [0.5], 1.0: [0.49]}, 0.1, "maximize")
    assert choice.se == 0.0 and choice.lam_min == choice.lam_1se == 0.1


def test_paired_comparison_matches_scipy_wilcoxon_and_its_own_bootstrap():
    rng = np.random.default_rng(3)
    base = rng.uniform(0.7, 0.8, size=10)
    treated = base + rng.normal(0.02, 0.01, size=10)
    result = paired_comparison(treated, base, "maximize")
    diffs = treated - base
    assert result.n == 10
    assert result.mean_diff == pytest.approx(diffs.mean())
    assert result.p_value == pytest.approx(sps.wilcoxon(diffs).pvalue)
    assert (result.low, result.high) == pytest.approx(bootstrap_ci(diffs))
    assert result.p_improve > 0.99
    worse = paired_comparison(base, treated, "maximize")
    assert worse.p_improve < 0.01
    assert paired_comparison(base, treated, "minimize").p_improve > 0.99


def test_paired_comparison_with_identical_results_says_so():
    result = paired_comparison([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert result.p_value == 1.0 and result.mean_diff == 0.0
    assert "all differences are zero" in result.note
    assert result.p_improve == 0.0


def test_paired_comparison_notes_too_few_pairs():
    assert "cannot reach p<0.05" in paired_comparison([1.0, 2.0, 3.0], [0.0, 0.5, 1.0]).note
    assert paired_comparison(np.arange(8.0) + 1, np.zeros(8)).note == ""


def test_holm_against_a_hand_computation():
    # sorted: 0.005 (×4 = 0.02), 0.01 (×3 = 0.03), 0.03 (×2 = 0.06), 0.04 (×1 = 0.04 → running max 0.06)
    adjusted = holm([0.01, 0.04, 0.03, 0.005])
    assert adjusted == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])
    assert holm([0.02]) == pytest.approx([0.02])


def test_holm_never_rejects_more_than_unadjusted_and_keeps_the_order():
    p = np.random.default_rng(5).uniform(0, 0.2, size=12)
    adjusted = holm(p)
    assert np.all(adjusted >= p)
    order = np.argsort(p)
    assert np.all(np.diff(adjusted[order]) >= 0)


def test_standard_error_is_sample_sd_over_root_n():
    assert standard_error([1.0, 2.0, 3.0, 4.0]) == pytest.approx(np.std([1, 2, 3, 4], ddof=1) / 2)


@pytest.mark.parametrize("lam, text", [(1e-3, "1e-3"), (5e-4, "5e-4"), (0.1, "0.1"), (0.25, "0.25"),
                                       (0.0, "0"), (1e-6, "1e-6"), (3.16e-5, "3.16e-5"), (None, "–"),
                                       (0.00316228, "3.16e-3"), (3.16228e-05, "3.16e-5"), (0.0316228, "0.0316"),
                                       (31.6228, "31.6"), (1000.0, "1e3"), (0.0099999, "0.01"), (1e-2, "0.01")])
def test_lambda_format(lam, text):
    assert fmt_lam(lam) == text


@pytest.mark.parametrize("value, digits, text", [(-0.00001, ".1f", "0.0"), (-0.0, ".1f", "0.0"),
                                                 (-1e-9, "+.3f", "+0.000"), (-0.3, ".1f", "\u22120.3")])
def test_a_value_that_rounds_to_zero_has_no_minus(value, digits, text):
    assert signed(value, digits) == text
    assert "\u22120.0" not in fmt_ci(0.001, -0.0004, 0.002, 100) and fmt_ci(0.001, -0.0004, 0.002, 100) == "0.1 [0.0, 0.2]"


def test_best_sentence_and_the_published_reference():
    from types import SimpleNamespace

    from reglab.report.analysis import Metric
    from reglab.stats import Summary
    from reglab.report.verdicts import best_sentence, reference_sentence
    from reglab.study.choose import Choice

    metric = Metric("val_acc", "maximize", True)
    best = SimpleNamespace(label="l2 λ=1e-3", test=Summary(5, 0.701, 0.69, 0.71), table={})
    choice = Choice("l2 λ=1e-3", {"reg.l2": 0.001}, "l2", 0.001, "val_acc", 0.7, 5)
    text = best_sentence(best, choice, metric)
    assert text == "Chosen on validation among all configs: L2 λ=1e-3, test accuracy 70.1 [69.0, 71.0] (n = 5 seeds)"
    reference = reference_sentence(best, {"value": 0.68, "metric": "test_acc", "source": "paper"}, metric)
    assert reference == ("Published reference for the recipe's own config (L2 λ=1e-3): 68.0 (paper); ours is "
                         "70.1 [69.0, 71.0] (n = 5 seeds), 2.1 points above it")
    few = SimpleNamespace(label="l2 λ=1e-3", test=Summary(2, 0.701, 0.69, 0.71), table={})
    assert best_sentence(few, choice, metric).endswith("test accuracy 70.1 (n = 2 seeds)")


def test_the_small_sample_note_counts_the_differences_the_test_uses():
    # 7 pairs, but 3 differences are zero: the signed-rank test sees 4 and cannot reach p<0.05
    a, b = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [0.0, 1.0, 2.0, 3.0, 5.0, 6.0, 7.0]
    note = paired_comparison(a, b).note
    assert "only 4 non-zero differences" in note
    assert paired_comparison([1.0, 2, 3, 4, 5, 6], [0.0, 0, 0, 0, 0, 0]).note == ""
