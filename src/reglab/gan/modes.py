"""The GAN mode table: modes, HQ % and reverse KL per regularizer as mean [95% CI] over seeds, and
the verdict on L1 against no regularizer and against the best other regularizer.

Intervals are percentile bootstraps of the mean (``reglab.stats``). A comparison pairs runs by
seed: d_i = A_i − B_i; a difference is significant when the two-sided Wilcoxon signed-rank p of
{d_i} is below 0.05 (unadjusted: three metrics and two comparisons are stated, not searched).
"Best" ranks by mean modes, then mean HQ %, then lower mean reverse KL. When several L1 strengths
were run, the best of them speaks for L1; it is chosen on the same runs, which if anything
favours L1.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from reglab.formatting import fmt_lam, fmt_p, signed
from reglab.stats import Summary, paired_comparison, summary_over_seeds
from reglab.runs import read_run, run_folders

ALPHA = 0.05
METRICS = (("modes", "modes", "maximize", ".1f"), ("hq_pct", "HQ %", "maximize", ".1f"),
           ("reverse_kl", "reverse KL", "minimize", ".3f"))  # fmt: skip


@dataclass(frozen=True)
class GanRun:
    label: str
    seed: int
    status: str
    summary: dict[str, Any]


@dataclass(frozen=True)
class Row:
    """One regularizer's line of the table, from its runs (:class:`GanRun`, or a study's trial
    records: anything with ``seed``, ``status`` and ``summary``); the seed is the unit."""

    label: str
    runs: list

    @property
    def ok(self) -> int:
        """The seeds with a finished run."""
        return len({r.seed for r in self.runs if r.status == "ok"})

    @property
    def failed(self) -> int:
        return sum(r.status == "failed" for r in self.runs)

    @functools.cached_property
    def stats(self) -> dict[str, Summary | None]:
        done = [r for r in self.runs if r.status == "ok"]
        return {key: summary_over_seeds(done, key) for key, *_ in METRICS}

    def complete(self) -> bool:
        return all(s is not None for s in self.stats.values())

    def rank(self) -> tuple[float, float, float]:
        return (self.stats["modes"].mean, self.stats["hq_pct"].mean, -self.stats["reverse_kl"].mean)


def regularizer_label(config: dict[str, Any]) -> str:
    """A run's regularizers from its resolved config: ``none``, ``l1 λ=1e-4``, ``r1 γ=0.1``, ``sn``…"""
    reg, gan = config["reg"], config["gan"]
    parts = []
    if reg["penalty"] != "none":
        where = "" if gan["reg_on"] == "both" else f" on {gan['reg_on'].upper()}"
        mode = "" if reg["mode"] == "coupled" else f" {reg['mode']}"
        parts.append(f"{reg['penalty']} λ={fmt_lam(reg['lam'])}{mode}{where}")
    if gan["gp"]:
        parts.append(f"gp λ={fmt_lam(gan['gp'])}")
    if gan["r1"]:
        parts.append(f"r1 γ={fmt_lam(gan['r1'])}")
    if gan["spectral_norm"]:
        parts.append("sn")
    if gan["clip"]:
        parts.append(f"clip c={fmt_lam(gan['clip'])}")
    if gan["label_smoothing"]:
        parts.append(f"label smoothing {gan['label_smoothing']:g}")
    return " + ".join(parts) or "none"


def runs_from_folders(targets: Iterable[str | Path]) -> list[GanRun]:
    """GAN runs from run folders (or folders holding them)."""
    runs = []
    for path in run_folders(targets):
        data = read_run(path)
        config = data["config"]
        if config.get("task") == "gan":
            runs.append(GanRun(regularizer_label(config), int(config["seed"]),
                               data["summary"].get("status", "running"), data["summary"]))  # fmt: skip
    return runs


def by_label(runs: list[GanRun]) -> dict[str, list[GanRun]]:
    groups: dict[str, list[GanRun]] = defaultdict(list)
    for run in runs:
        groups[run.label].append(run)
    return dict(groups)


def best_first(rows: Iterable[Row]) -> list[Row]:
    """The rows whose finished runs report every metric, best first."""
    return sorted((row for row in rows if row.complete()), key=Row.rank, reverse=True)


def mode_rows(runs: list[GanRun]) -> list[Row]:
    """One row per regularizer with at least one finished run, best first."""
    return best_first(Row(label, group) for label, group in by_label(runs).items())


def rows_of_configs(configs: list) -> list[Row]:
    """The mode table of a report (``analysis.ConfigStats`` with their finished and failed trial
    records), best first."""
    return best_first(Row(c.label, [*c.records, *c.failed]) for c in configs)


def cell(s: Summary, digits: str) -> str:
    """``17.3 [16.1, 18.5]``; the mean alone with fewer than ``stats.MIN_SEEDS`` seeds."""
    mean = signed(s.mean, digits)
    return f"{mean} [{signed(s.low, digits)}, {signed(s.high, digits)}]" if s.has_interval else mean


def markdown_table(rows: list[Row]) -> str:
    head = "| regularizer | runs | " + " | ".join(name for _, name, *_ in METRICS) + " |"
    lines = [head, "|---|---|" + "---|" * len(METRICS)]
    for row in rows:
        cells = [cell(row.stats[key], digits) for key, _, _, digits in METRICS]
        failed = f" ({row.failed} failed)" if row.failed else ""
        lines.append(f"| {row.label} | {row.ok}{failed} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def comparison(runs: list[GanRun], subject: str, baseline: str) -> str:
    """How ``subject`` differs from ``baseline`` on each metric, paired by seed."""
    groups = {label: {r.seed: r for r in group if r.status == "ok"} for label, group in by_label(runs).items()}
    seeds = sorted(set(groups[subject]) & set(groups[baseline]))
    if not seeds:
        return f"{subject} and {baseline} share no finished seed: no comparison"
    better, worse, parts = [], [], []
    for key, name, direction, digits in METRICS:
        a = [groups[subject][s].summary[key] for s in seeds]
        b = [groups[baseline][s].summary[key] for s in seeds]
        c = paired_comparison(a, b, direction)
        significant = c.p_value < ALPHA
        good = c.mean_diff > 0 if direction == "maximize" else c.mean_diff < 0
        if significant:
            (better if good else worse).append(name)
        parts.append(f"{name} {signed(c.mean_diff, '+' + digits)} [{signed(c.low, digits)}, "
                     f"{signed(c.high, digits)}] (p{fmt_p(c.p_value)})")  # fmt: skip
    if better and not worse:
        outcome = f"better on {', '.join(better)}"
    elif worse and not better:
        outcome = f"worse on {', '.join(worse)}"
    elif better:
        outcome = f"better on {', '.join(better)} but worse on {', '.join(worse)}"
    else:
        outcome = "no significant difference"
    return f"{subject} against {baseline} ({len(seeds)} seeds): {outcome}; " + ", ".join(parts)


def l1_verdict(runs: list[GanRun]) -> list[str]:
    """L1 (its best strength) against ``none`` and against the best other regularizer."""
    rows = mode_rows(runs)
    l1 = [r for r in rows if r.label.startswith("l1 ") and " + " not in r.label]
    if not l1:
        return ["no L1 run: no verdict on L1"]
    sentences = []
    if any(r.label == "none" for r in rows):
        sentences.append(comparison(runs, l1[0].label, "none"))
    others = [r for r in rows if r.label != "none" and not r.label.startswith("l1 ")]
    if others:
        sentences.append(comparison(runs, l1[0].label, others[0].label))
    return sentences
