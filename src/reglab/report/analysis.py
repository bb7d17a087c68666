"""From trial records to what the report states: per-config statistics, λ selection, comparisons.

λ is chosen on the validation metric only (the CV mean when there are folds): λ_min has the best
mean, λ_1se is the largest λ within one standard error of it (``stats.one_se_choice``). Each
family's λ_min config is then compared with the unregularized baseline on the TEST metric,
paired by seed and fold, and the Wilcoxon p-values of all comparisons get Holm's correction.
With folds, every (seed, fold) trial is one observation: a config's mean is the CV mean (averaged
over seeds as well) and its SE is s/√n over all of them, which for one seed is glmnet's rule.

A *family* is a point without its strength (``l2``, ``dropout``, ``l2 optim.lr=0.01``): the
configs of one family differ only in λ, so λ is selected per family. The baseline is the
unregularized ``none`` config run with the same other settings when there is one, else plain
``none``, else the family's own λ=0 config.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reglab.errors import UserError
from reglab.report.stats import (OneSEChoice, PairedComparison, Summary, holm, one_se_choice,
                                 paired_comparison, summarize)
from reglab.report.verdicts import best_sentence, verdict

NOT_CONTEXT = ("reg", "seed", "data.fold", "optim.weight_decay")


@dataclass(frozen=True)
class Metric:
    """The validation metric λ is chosen on, and its test counterpart used in comparisons."""

    key: str
    direction: str
    classification: bool

    @property
    def test_key(self) -> str:
        return "test_" + self.key.split("_", 1)[1]

    @property
    def gap_key(self) -> str:
        return "gap_acc" if self.key.endswith("acc") else "gap_loss"

    @property
    def name(self) -> str:
        if self.key.endswith("acc"):
            return "accuracy"
        return "cross-entropy" if self.classification else "MSE"

    @property
    def scale(self) -> float:
        """Accuracies are shown in percentage points, losses as they are."""
        return 100.0 if self.key.endswith("acc") else 1.0


def unit_of(record) -> tuple[int, int | None]:
    """What pairs two trials: the same seed and the same fold."""
    return (record.seed, record.fold)


def unit_order(record) -> tuple[int, int]:
    return (record.seed, -1 if record.fold is None else record.fold)


@dataclass
class ConfigStats:
    """One grid point over its finished seeds (and folds)."""

    label: str
    family: str
    lam: float | None
    records: list
    val: Summary
    test: Summary
    gap: Summary | None
    weight_l2: float | None
    sparsity: float | None

    @property
    def n(self) -> int:
        return len(self.records)

    def units(self, key: str) -> dict[tuple[int, int | None], float]:
        return {unit_of(r): float(r.summary[key]) for r in self.records if key in r.summary}


def mean_of(records: list, key: str) -> float | None:
    values = [r.summary[key] for r in records if isinstance(r.summary.get(key), (int, float))]
    return float(np.mean(values)) if values else None


def config_stats(records: list, metric: Metric) -> ConfigStats:
    first = records[0]
    gaps = [r.summary[metric.gap_key] for r in records if metric.gap_key in r.summary]
    return ConfigStats(
        label=first.label, family=first.family, lam=first.lam, records=records,
        val=summarize([r.summary[metric.key] for r in records]),
        test=summarize([r.summary[metric.test_key] for r in records]),
        gap=summarize(gaps) if gaps else None,
        weight_l2=mean_of(records, "weight_l2"), sparsity=mean_of(records, "zeros_total"),
    )


@dataclass
class Selection:
    """λ_min and λ_1se of one family, with the configs they point to (sorted by λ)."""

    family: str
    choice: OneSEChoice
    at_min: ConfigStats
    at_1se: ConfigStats
    configs: list[ConfigStats]
    baseline: ConfigStats | None = None


@dataclass
class Comparison:
    """A family's λ_min config against the baseline on the test metric."""

    chosen: ConfigStats
    baseline: ConfigStats
    result: PairedComparison
    seeds: int
    folds: int
    holm_p: float = 1.0
    verdict: str = ""


@dataclass
class Progress:
    """How much of the study is done; ``pending`` maps a label to (waiting, running) counts."""

    total: int
    counts: Counter
    pending: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return self.counts["ok"] + self.counts["failed"]

    @property
    def complete(self) -> bool:
        return self.finished == self.total

    def message(self) -> str:
        if self.complete:
            return f"this report covers all {self.total} trials"
        return (f"this report covers {self.finished} of {self.total} trials: "
                f"{self.counts['waiting']} waiting, {self.counts['running']} running")


@dataclass
class Analysis:
    spec: dict[str, Any]
    metric: Metric
    progress: Progress
    configs: list[ConfigStats]
    selections: list[Selection]
    comparisons: list[Comparison]
    notes: list[str]
    failed: list
    best: str = ""


def progress_of(records: list) -> Progress:
    counts = Counter(r.status for r in records)
    pending: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        if r.status in ("waiting", "running"):
            pending[r.label][0 if r.status == "waiting" else 1] += 1
    return Progress(len(records), counts, {k: (w, r) for k, (w, r) in pending.items()})


def metric_of(spec: dict, finished: list) -> Metric:
    key = spec.get("metric") or "val_loss"
    if key not in ("val_acc", "val_loss"):
        raise UserError(f"the report chooses λ on val_acc or val_loss, not '{key}'")
    direction = spec.get("direction") or ("maximize" if key == "val_acc" else "minimize")
    classification = any("val_acc" in r.summary for r in finished)
    metric = Metric(key, direction, classification)
    if not any(key in r.summary and metric.test_key in r.summary for r in finished):
        raise UserError(f"no finished trial reports {key} and {metric.test_key}")
    return metric


def require_finished(spec: dict, records: list, progress: Progress) -> None:
    """Nothing to report without a successful trial: say what there is instead."""
    if progress.counts["ok"]:
        return
    name = spec.get("name", "")
    runs = spec.get("source") == "run folders"
    subject = f"the run folders of {name} hold" if runs else f"study '{name}' has"
    c = progress.counts
    if c["failed"] and not (c["waiting"] or c["running"]):
        reason = next(r.reason for r in records if r.status == "failed")
        raise UserError(f"{subject} no successful trial: {c['failed']} failed (first: {reason})")
    raise UserError(f"{subject} no finished trial yet: {c['waiting']} waiting, {c['running']} running, "
                    f"{c['failed']} failed")


def group_configs(finished: list, metric: Metric) -> list[ConfigStats]:
    by_label: dict[str, list] = defaultdict(list)
    for r in finished:
        by_label[r.label].append(r)
    configs = [config_stats(sorted(rs, key=unit_order), metric) for rs in by_label.values()]
    return sorted(configs, key=lambda c: (c.lam is not None, c.family, -1.0 if c.lam is None else c.lam))


def select(configs: list[ConfigStats], metric: Metric) -> list[Selection]:
    families: dict[str, list[ConfigStats]] = defaultdict(list)
    for c in configs:
        if c.lam is not None:
            families[c.family].append(c)
    selections = []
    for family, members in families.items():
        by_lam = {c.lam: c for c in members}
        choice = one_se_choice({c.lam: [r.summary[metric.key] for r in c.records] for c in members},
                               metric.direction)
        selections.append(Selection(family, choice, by_lam[choice.lam_min], by_lam[choice.lam_1se],
                                    sorted(members, key=lambda c: c.lam)))
    return selections


def context(config: ConfigStats) -> dict[str, Any]:
    """The settings of a point other than its regularizer, e.g. ``{"optim.lr": 0.01}``."""
    point = config.records[0].point
    return {k: v for k, v in point.items() if not k.startswith(NOT_CONTEXT)}


def baseline_for(selection: Selection, configs: list[ConfigStats]) -> ConfigStats | None:
    """The unregularized config for a family: ``none`` with the same other settings, else plain
    ``none`` (else the first ``none`` config), else the family's λ=0 config."""
    nones = [c for c in configs if c.lam is None and c.family.split()[0] == "none"]
    wanted = context(selection.at_min)
    for candidates in ([c for c in nones if context(c) == wanted], [c for c in nones if c.family == "none"], nones):
        if candidates:
            return candidates[0]
    return next((c for c in selection.configs if c.lam == 0), None)


def compare(selection: Selection, baseline: ConfigStats, metric: Metric) -> Comparison | None:
    chosen = selection.at_min
    a, b = chosen.units(metric.test_key), baseline.units(metric.test_key)
    common = sorted(set(a) & set(b), key=lambda unit: (unit[0], -1 if unit[1] is None else unit[1]))
    if not common:
        return None
    result = paired_comparison([a[u] for u in common], [b[u] for u in common], metric.direction)
    return Comparison(chosen, baseline, result, len({u[0] for u in common}),
                      len({u[1] for u in common if u[1] is not None}))


def comparisons_of(selections: list[Selection], configs: list[ConfigStats], metric: Metric,
                   notes: list[str]) -> list[Comparison]:
    out = []
    for sel in selections:
        baseline = sel.baseline = baseline_for(sel, configs)
        if baseline is None:
            notes.append(f"{sel.family}: no baseline (no 'none' config and no λ=0), so no comparison")
        elif baseline is sel.at_min:
            notes.append(f"{sel.family}: validation chose λ=0, the baseline itself; nothing to compare")
        else:
            comparison = compare(sel, baseline, metric)
            if comparison is None:
                notes.append(f"{sel.family}: λ_min and {baseline.label} share no seed, so no paired comparison")
            else:
                out.append(comparison)
    adjusted = holm([c.result.p_value for c in out])
    for comparison, p in zip(out, adjusted):
        comparison.holm_p = float(p)
    return out


def analyse(spec: dict, records: list) -> Analysis:
    """Everything the report shows, computed once; raises UserError when nothing is finished."""
    progress = progress_of(records)
    require_finished(spec, records, progress)
    ok = [r for r in records if r.status == "ok"]
    metric = metric_of(spec, ok)
    usable = [r for r in ok if metric.key in r.summary and metric.test_key in r.summary]
    notes = []
    if len(usable) < len(ok):
        notes.append(f"{len(ok) - len(usable)} finished trials lack {metric.key} or {metric.test_key} and are left out")
    configs = group_configs(usable, metric)
    selections = select(configs, metric)
    comparisons = comparisons_of(selections, configs, metric, notes)
    for comparison in comparisons:
        comparison.verdict = verdict(comparison, metric)
    failed = [r for r in records if r.status == "failed"]
    best = best_sentence(best_config(configs, metric), metric, spec.get("published")) if configs else ""
    return Analysis(spec, metric, progress, configs, selections, comparisons, notes, failed, best)


def best_config(configs: list[ConfigStats], metric: Metric) -> ConfigStats:
    """The config with the best mean validation metric (never chosen on test)."""
    sign = 1.0 if metric.direction == "maximize" else -1.0
    return max(configs, key=lambda c: sign * c.val.mean)
