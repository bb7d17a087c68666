"""The report's tables as plain rows, written as CSV: configs, selection, comparisons, failed.

Values are raw (accuracies as fractions, full precision); the HTML page formats them. As on the
page, a value over fewer than ``stats.MIN_SEEDS`` seeds has no interval and no P(improvement):
those cells are empty.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from reglab.report.analysis import Analysis, ConfigStats
from reglab.stats import MIN_SEEDS, Summary
from reglab.report.verdicts import ALPHA


def ci_columns(prefix: str, summary: Summary | None) -> dict[str, Any]:
    if summary is None:
        return {f"{prefix}_mean": "", f"{prefix}_ci_low": "", f"{prefix}_ci_high": ""}
    low, high = (summary.low, summary.high) if summary.has_interval else ("", "")
    return {f"{prefix}_mean": summary.mean, f"{prefix}_ci_low": low, f"{prefix}_ci_high": high}


def config_row(c: ConfigStats) -> dict[str, Any]:
    return {"label": c.label, "family": c.family, "lambda": "" if c.lam is None else c.lam,
            "n_seeds": c.n, "n_runs": len(c.records), **ci_columns("val", c.val), **ci_columns("test", c.test), **ci_columns("gap", c.gap),
            "weight_l2": "" if c.weight_l2 is None else c.weight_l2,
            "zeros_total": "" if c.sparsity is None else c.sparsity,
            "seeds": " ".join(str(s) for s in sorted({r.seed for r in c.records})),
            **{column: value for key, summary in c.table.items() for column, value in ci_columns(key, summary).items()}}


def configs_rows(analysis: Analysis) -> list[dict[str, Any]]:
    return [config_row(c) for c in analysis.configs]


def selection_rows(analysis: Analysis) -> list[dict[str, Any]]:
    return [{"family": s.family, "grid_edge": "; ".join(s.edges), "n_lambdas": len(s.configs),
             "lambda_min": s.choice.lam_min, "lambda_1se": s.choice.lam_1se,
             "best_val_mean": s.choice.best_mean, "se_at_lambda_min": s.choice.se, "threshold": s.choice.threshold,
             **ci_columns("val_at_min", s.at_min.val), **ci_columns("test_at_min", s.at_min.test),
             **ci_columns("val_at_1se", s.at_1se.val), **ci_columns("test_at_1se", s.at_1se.test)}
            for s in analysis.selections]


def paired_interval(r) -> dict[str, Any]:
    """The difference's CI and P(improvement); empty with fewer than ``stats.MIN_SEEDS`` pairs."""
    if r.n < MIN_SEEDS:
        return {"diff_ci_low": "", "diff_ci_high": "", "p_improvement": ""}
    return {"diff_ci_low": r.low, "diff_ci_high": r.high, "p_improvement": r.p_improve}


def comparison_rows(analysis: Analysis) -> list[dict[str, Any]]:
    return [{"config": c.chosen.label, "lambda": c.chosen.lam, "baseline": c.baseline.label,
             "baseline_differs_in": " ".join(c.differs_in),
             "metric": c.metric.test_key, "pairs": c.result.n, "seeds": c.seeds, "folds": c.folds,
             "mean_diff": c.result.mean_diff, **paired_interval(c.result), "wilcoxon_p": c.result.p_value, "holm_p": c.holm_p,
             "significant": c.holm_p < ALPHA, "verdict": c.verdict, "note": c.result.note}
            for c in analysis.comparisons]


def failed_rows(analysis: Analysis) -> list[dict[str, Any]]:
    return [{"label": r.label, "seed": r.seed, "fold": "" if r.fold is None else r.fold,
             "reason": r.reason or "", "step": r.summary.get("step", ""), "run_dir": r.run_dir or ""}
            for r in analysis.failed]


def ci_names(prefix: str) -> list[str]:
    return [f"{prefix}_mean", f"{prefix}_ci_low", f"{prefix}_ci_high"]


HEADERS = {
    "configs": ["label", "family", "lambda", "n_seeds", "n_runs", *ci_names("val"), *ci_names("test"), *ci_names("gap"),
                "weight_l2", "zeros_total", "seeds"],
    "selection": ["family", "grid_edge", "n_lambdas", "lambda_min", "lambda_1se", "best_val_mean", "se_at_lambda_min",
                  "threshold", *ci_names("val_at_min"), *ci_names("test_at_min"), *ci_names("val_at_1se"),
                  *ci_names("test_at_1se")],
    "comparisons": ["config", "lambda", "baseline", "baseline_differs_in", "metric", "pairs", "seeds", "folds", "mean_diff", "diff_ci_low",
                    "diff_ci_high", "p_improvement", "wilcoxon_p", "holm_p", "significant", "verdict", "note"],
    "failed": ["label", "seed", "fold", "reason", "step", "run_dir"],
}
ROWS = {"configs": configs_rows, "selection": selection_rows, "comparisons": comparison_rows,
        "failed": failed_rows}


def write_tables(analysis: Analysis, folder: Path) -> list[Path]:
    """``configs.csv``, ``selection.csv``, ``comparisons.csv`` and ``failed.csv`` (header only when
    empty); a GAN study's configs also get modes, HQ % and reverse KL, an adversarial study's the clean
    val_acc and test_acc (mean and CI over seeds)."""
    paths = []
    for name, header in HEADERS.items():
        path = folder / f"{name}.csv"
        rows = ROWS[name](analysis)
        extra = [k for k in rows[0] if k not in header] if rows else []  # a GAN's mode metrics, clean accuracy
        with open(path, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=header + extra)
            writer.writeheader()
            writer.writerows(rows)
        paths.append(path)
    return paths
