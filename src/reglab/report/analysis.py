"""From trial records to what the report states: per-config statistics, λ selection, comparisons.

**The unit of analysis is the seed.** The folds of one seed share its training randomness and its
test split, so they are not independent observations: a config's value on a seed is the mean over
that seed's folds (the CV mean), and every mean, interval, standard error and paired test is over
seeds (n = seeds). A single seed with folds uses the folds for the one-SE rule (glmnet's rule).

λ is chosen on the validation objective only (``tasks.objective``: accuracy, loss, robust
accuracy or a GAN's reverse KL) by the one chooser, ``study.choose``: the overall chosen config
and each family's λ_min are its choice (seed means, no config with a failed run, its tie rule);
λ_1se is the largest λ, among the family's configs without a failed run, within one standard
error of λ_min (``stats.one_se_choice``). A run key held twice counts once (``choose.one_per_key``).

A *family* is a point without its strength (``l2``, ``dropout``, ``l2 optim.lr=0.01``): its
configs differ only in λ, so λ is selected per family. **The baseline** of a family's λ_min config
is the config whose settings equal it with that family's own regularizer off (its λ = 0,
everything else equal: ``points.switched_off``), e.g. ``none`` with the same dropout for ``l2``. A
regularizer without a strength (spectral norm) is compared the same way. Where the study holds no
such config, the closest config without that regularizer stands in, and every other key in which
it differs is named in the verdict sentence itself. Comparisons are on the test metric, paired by
seed; the Wilcoxon p-values of all comparisons get Holm's correction.

What the report holds back: with fewer than ``stats.MIN_SEEDS`` seeds, intervals and
P(improvement) (a note says why); a recipe's published figure, except against the config whose
settings equal the recipe's own (:func:`reference_of`). A λ_min or λ_1se at an end of its family's
grid gets a warning with the range to try next (``report.edges``).
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from reglab.config import validate
from reglab.errors import UserError
from reglab.gan.modes import METRICS as MODE_METRICS
from reglab.stats import (MIN_SEEDS, OneSEChoice, PairedComparison, Summary, holm, one_se_choice,
                          paired_comparison, summary_over_seeds)
from reglab.report.edges import edge_warnings
from reglab.report.verdicts import best_sentence, reference_sentence, verdict
from reglab.study.choose import Candidate, Choice, choose, one_per_key
from reglab.study.points import describe, settings, switched_off
from reglab.study.spec import config_for
from reglab.tasks.objective import objective

GAN_METRICS = tuple(key for key, *_ in MODE_METRICS)
CLEAN_METRICS = ("val_acc", "test_acc")  # shown beside an adversarial study's robust accuracy
NAMES = {"val_acc": "accuracy", "robust_val_acc": "robust accuracy", "modes": "modes", "hq_pct": "HQ %",
         "reverse_kl": "reverse KL"}


@dataclass(frozen=True)
class Metric:
    """A validation metric λ is chosen on, and its test counterpart used in comparisons (a GAN's
    sample metrics have no separate test value: the key is both)."""

    key: str
    direction: str
    classification: bool

    @property
    def test_key(self) -> str:
        return self.key.replace("val_", "test_") if "val_" in self.key else self.key

    @property
    def held_out(self) -> bool:
        return self.test_key != self.key

    @property
    def robust(self) -> bool:
        """Robust accuracy (adversarial studies), shown beside the clean accuracy."""
        return self.key.startswith("robust_")

    @property
    def gap_key(self) -> str | None:
        """The generalization gap of this metric: robust train − test accuracy (``robust_gap``),
        clean train − val accuracy, or val − train loss; none for a GAN."""
        if not self.held_out:
            return None
        if self.robust:
            return "robust_gap"
        return "gap_acc" if self.key.endswith("acc") else "gap_loss"

    @property
    def gap_name(self) -> str:
        """What the gap column and plot show."""
        if self.robust:
            return "robust train − test accuracy (points)"
        return "train − val accuracy (points)" if self.key.endswith("acc") else "val − train loss"

    @property
    def name(self) -> str:
        if self.key in NAMES:
            return NAMES[self.key]
        return "cross-entropy" if self.classification else "MSE"

    @property
    def quantity(self) -> str:
        """What a verdict speaks of: ``test accuracy``, ``reverse KL``."""
        return f"test {self.name}" if self.held_out else self.name

    @property
    def scale(self) -> float:
        """Accuracies are shown in percentage points, everything else as it is."""
        return 100.0 if self.key.endswith("acc") else 1.0


def unit_order(record) -> tuple[int, int]:
    return (record.seed, -1 if record.fold is None else record.fold)


@dataclass
class ConfigStats:
    """One config over its finished seeds; each seed's value is the mean over its folds.

    ``settings`` are the config's resolved settings (``points.settings``); ``strength`` is the key
    that holds its regularizer's strength (None for no regularizer); ``failed`` its failed runs."""

    label: str
    family: str
    lam: float | None
    records: list
    settings: dict[str, Any]
    strength: str | None
    val: Summary
    test: Summary
    gap: Summary | None
    weight_l2: float | None
    sparsity: float | None
    table: dict[str, Summary] = field(default_factory=dict)
    failed: list = field(default_factory=list)

    @property
    def n(self) -> int:
        """The number of seeds: the unit of analysis."""
        return len({r.seed for r in self.records})

    def per_seed(self, key: str) -> dict[int, float]:
        """seed → the mean of ``key`` over that seed's folds."""
        values: dict[int, list[float]] = defaultdict(list)
        for r in self.records:
            if isinstance(r.summary.get(key), (int, float)):
                values[r.seed].append(float(r.summary[key]))
        return {seed: float(np.mean(v)) for seed, v in sorted(values.items())}

    def selection_values(self, key: str) -> list[float]:
        """The values the one-SE rule sees: per-seed means, or the folds of a single seed."""
        if self.n == 1:
            return [float(r.summary[key]) for r in self.records if key in r.summary]
        return list(self.per_seed(key).values())

    def candidate(self) -> Candidate:
        """This config for the chooser: its finished and its failed runs."""
        return Candidate(self.label, self.family, self.lam, self.records[0].point, [*self.records, *self.failed])

    @property
    def off(self) -> dict[str, Any] | None:
        """The settings of this config with its own regularizer off: its baseline's settings."""
        return None if self.strength is None else switched_off(self.settings, self.strength)


def mean_of(records: list, key: str) -> float | None:
    values = [r.summary[key] for r in records if isinstance(r.summary.get(key), (int, float))]
    return float(np.mean(values)) if values else None


@dataclass
class FamilyChoice:
    """λ_min and λ_1se of one family, with the configs they point to (sorted by λ); ``chosen`` is
    the chooser's choice of λ_min (its tie and the λ it passed over for a failed run)."""

    family: str
    choice: OneSEChoice
    chosen: Choice
    at_min: ConfigStats
    at_1se: ConfigStats
    configs: list[ConfigStats]
    baseline: ConfigStats | None = None
    edges: list[str] = field(default_factory=list)
    """a warning for λ_min or λ_1se at each end of the grid it sits at (``report.edges``)"""


@dataclass
class Comparison:
    """A config (a family's λ_min, or a regularizer without strength) against its baseline on one
    test metric, paired by seed. ``differs_in``: every settings key in which the two differ;
    ``also_differs``: those among them that are not the compared regularizer's own; ``failed_out``:
    label → the seeds left out of the pairs because that config failed on them."""

    chosen: ConfigStats
    baseline: ConfigStats
    metric: Metric
    result: PairedComparison
    seeds: int
    folds: int
    differs_in: list[str]
    also_differs: list[str]
    failed_out: dict[str, list[int]] = field(default_factory=dict)
    holm_p: float = 1.0
    verdict: str = ""


@dataclass
class StudyProgress:
    """How much of the study is done; ``pending`` maps a label to (waiting, running) counts."""

    total: int
    counts: Counter
    pending: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def finished(self) -> int:
        return self.counts["ok"] + self.counts["failed"] + self.counts["pruned"]

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
    progress: StudyProgress
    configs: list[ConfigStats]
    selections: list[FamilyChoice]
    comparisons: list[Comparison]
    notes: list[str]
    failed: list
    choice: Choice | None = None
    best: str = ""
    reference: str = ""
    pruned: list = field(default_factory=list)
    """the runs pruned by successive halving: their configs are listed, never chosen or compared"""

    @property
    def edges(self) -> list[str]:
        """Every family's warnings of λ at the end of its grid."""
        return [text for sel in self.selections for text in sel.edges]

    @property
    def gan(self) -> bool:
        return self.metric.key in GAN_METRICS


def progress_of(records: list) -> StudyProgress:
    counts = Counter(r.status for r in records)
    pending: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        if r.status in ("waiting", "running"):
            pending[r.label][0 if r.status == "waiting" else 1] += 1
    return StudyProgress(len(records), counts, {k: (w, r) for k, (w, r) in pending.items()})


def resolved_config(spec: dict, record):
    """The record's validated config: from the study's recipe and the point, or the run folder's."""
    if record.config is not None:
        return validate(record.config)
    return config_for(spec, record.point, record.seed, record.fold)


def metric_of(spec: dict, finished: list) -> Metric:
    """The task's validation objective (``tasks.objective``) for these runs."""
    classification = any("val_acc" in r.summary for r in finished)
    key, direction = objective(resolved_config(spec, finished[0]), classification)
    metric = Metric(key, direction, classification)
    if not any(key in r.summary and metric.test_key in r.summary for r in finished):
        raise UserError(f"no finished trial reports {key} and {metric.test_key}")
    return metric


def require_finished(spec: dict, records: list, progress: StudyProgress) -> None:
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


def extra_metrics(metric: Metric) -> tuple[str, ...]:
    """The per-config metrics beside the chosen one: a GAN's mode metrics, an adversarial study's
    clean accuracy."""
    return GAN_METRICS if metric.key in GAN_METRICS else CLEAN_METRICS if metric.robust else ()


def config_stats(records: list, config, metric: Metric) -> ConfigStats:
    first = records[0]
    return ConfigStats(
        label=first.label, family=first.family, lam=first.lam, records=records, settings=settings(config),
        strength=describe(first.point, config).strength,
        val=summary_over_seeds(records, metric.key), test=summary_over_seeds(records, metric.test_key),
        gap=summary_over_seeds(records, metric.gap_key) if metric.gap_key else None,
        weight_l2=mean_of(records, "weight_l2"), sparsity=mean_of(records, "zeros_total"),
        table={key: s for key in extra_metrics(metric) if (s := summary_over_seeds(records, key)) is not None},
    )


def distinct_labels(configs: list[ConfigStats]) -> None:
    """A label names one config: where two configs share one, each gets the keys that tell it apart."""
    by_label: dict[str, list[ConfigStats]] = defaultdict(list)
    for c in configs:
        by_label[c.label].append(c)
    for same in (group for group in by_label.values() if len(group) > 1):
        keys = sorted({k for c in same for k in c.settings if len({json.dumps(o.settings.get(k)) for o in same}) > 1})
        for c in same:
            c.label += " (" + ", ".join(f"{k}={json.dumps(c.settings.get(k))}" for k in keys) + ")"


def group_configs(spec: dict, finished: list, failed: list, metric: Metric) -> list[ConfigStats]:
    """One ConfigStats per distinct config with a finished run (equal settings pool, whatever their
    points), with the failed runs of that config."""
    by_point: dict[str, list] = defaultdict(list)
    for r in [*finished, *failed]:
        by_point[json.dumps(r.point, sort_keys=True, default=str)].append(r)
    by_settings: dict[str, tuple[Any, list]] = {}
    for group in by_point.values():
        config = resolved_config(spec, group[0])
        key = json.dumps(settings(config), sort_keys=True, default=str)
        by_settings.setdefault(key, (config, []))[1].extend(group)
    configs = []
    for config, rs in by_settings.values():
        done = sorted((r for r in rs if r.status == "ok"), key=unit_order)
        if done:
            stats = config_stats(done, config, metric)
            stats.failed = sorted((r for r in rs if r.status == "failed"), key=unit_order)
            configs.append(stats)
    distinct_labels(configs)
    return sorted(configs, key=lambda c: (c.lam is not None, c.family, -1.0 if c.lam is None else c.lam))


def select(configs: list[ConfigStats], metric: Metric, notes: list[str]) -> list[FamilyChoice]:
    """Per family: λ_min is the chooser's choice among its configs; λ_1se the one-SE rule among
    those without a failed run. A λ passed over for a failed run is noted."""
    families: dict[str, list[ConfigStats]] = defaultdict(list)
    for c in configs:
        if c.lam is not None:
            families[c.family].append(c)
    selections = []
    for family, members in families.items():
        chosen = choose([c.candidate() for c in members], metric.key, metric.direction)
        if chosen is None:
            notes.append(f"{family}: every λ has a failed run, so none is chosen")
            continue
        for other in chosen.passed_over:
            notes.append(f"{family}: not chosen as λ_min, as a run failed: {other.text()}")
        eligible = [c for c in members if not c.failed]
        by_lam = {c.lam: c for c in eligible}
        choice = one_se_choice({c.lam: c.selection_values(metric.key) for c in eligible}, chosen.lam, metric.direction)
        selections.append(FamilyChoice(family, choice, chosen, by_lam[choice.lam_min], by_lam[choice.lam_1se],
                                       sorted(members, key=lambda c: c.lam)))
    return selections


def differing(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The settings keys that both have, with different values (a key only one side has is a
    setting of its regularizer, which ``reg.penalty`` already tells apart)."""
    return sorted(k for k in set(a) & set(b) if json.dumps(a[k]) != json.dumps(b[k]))


def baseline_for(chosen: ConfigStats, configs: list[ConfigStats]) -> ConfigStats | None:
    """The config closest to ``chosen`` with its regularizer off: among the configs that have it
    off (else those without any regularizer), the one differing from that in the fewest keys
    (the first in table order on a tie). Equal to it when the study holds that config."""
    if chosen.strength is None:
        return None
    target = chosen.off
    others = [c for c in configs if c is not chosen]
    pool = [c for c in others if switched_off(c.settings, chosen.strength) == c.settings] or \
        [c for c in others if c.strength is None]
    return min(pool, key=lambda c: len(differing(c.settings, target)), default=None)


def compare(chosen: ConfigStats, baseline: ConfigStats, metric: Metric) -> Comparison | None:
    """Paired by seed, each seed's value the mean over the folds both configs finished; a seed on
    which either config failed is left out, and named."""
    a, b = chosen.per_seed(metric.test_key), baseline.per_seed(metric.test_key)
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    result = paired_comparison([a[s] for s in seeds], [b[s] for s in seeds], metric.direction)
    folds = {r.fold for r in chosen.records if r.seed in seeds and r.fold is not None}
    failed_out = {c.label: sorted({r.seed for r in c.failed} - set(seeds)) for c in (chosen, baseline)}
    return Comparison(chosen, baseline, metric, result, len(seeds), len(folds),
                      differing(chosen.settings, baseline.settings),
                      differing(baseline.settings, chosen.off), {k: v for k, v in failed_out.items() if v})


def compared(selections: list[FamilyChoice], configs: list[ConfigStats]) -> list[tuple[str, ConfigStats]]:
    """``(name, config)`` of every config to compare: each family's λ_min, and each regularizer
    that has no strength to choose (spectral norm)."""
    out = [(sel.family, sel.at_min) for sel in selections]
    out += [(c.family, c) for c in configs if c.lam is None and c.strength is not None]
    return out


def comparisons_of(selections: list[FamilyChoice], configs: list[ConfigStats], metrics: list[Metric],
                   notes: list[str]) -> list[Comparison]:
    out = []
    selection_of = {id(sel.at_min): sel for sel in selections}
    for name, chosen in compared(selections, configs):
        baseline = baseline_for(chosen, configs)
        if id(chosen) in selection_of:
            selection_of[id(chosen)].baseline = baseline
        if chosen.lam == 0:
            notes.append(f"{name}: validation chose λ=0, the baseline itself; nothing to compare")
        elif baseline is None:
            notes.append(f"{name}: no config without this regularizer, so no comparison")
        else:
            found = [c for c in (compare(chosen, baseline, m) for m in metrics) if c is not None]
            if not found:
                notes.append(f"{name}: {chosen.label} and {baseline.label} share no seed, so no paired comparison")
            out.extend(found)
    adjusted = holm([c.result.p_value for c in out])
    for comparison, p in zip(out, adjusted):
        comparison.holm_p = float(p)
    return out


def analyse(spec: dict, records: list) -> Analysis:
    """Everything the report shows, computed once; raises UserError when nothing is finished."""
    records = one_per_key(records)
    progress = progress_of(records)
    require_finished(spec, records, progress)
    pruned = [r for r in records if r.status == "pruned"]
    cut = {r.label for r in pruned}  # a point pruned on any seed is out, its seeds that ended first too
    ok = [r for r in records if r.status == "ok" and r.label not in cut]
    metric = metric_of(spec, ok)
    usable = [r for r in ok if metric.key in r.summary and metric.test_key in r.summary]
    notes = []
    if len(usable) < len(ok):
        notes.append(f"{len(ok) - len(usable)} finished trials lack {metric.key} or {metric.test_key} and are left out")
    if not metric.held_out:
        notes.append(f"A GAN has no held-out split for its sample metrics: λ is chosen on {metric.name} of the "
                     "same runs that the comparisons use, which favours families run at several strengths")
    failed = [r for r in records if r.status == "failed"]
    configs = group_configs(spec, usable, failed, metric)
    selections = select(configs, metric, notes)
    metrics = [Metric(key, direction, False) for key, _, direction, _ in MODE_METRICS] \
        if metric.key in GAN_METRICS else [metric]
    comparisons = comparisons_of(selections, configs, metrics, notes)
    for comparison in comparisons:
        comparison.verdict = verdict(comparison)
    choice = choose([c.candidate() for c in configs], metric.key, metric.direction)
    by_label = {c.label: c for c in configs}
    best = best_sentence(by_label[choice.label], choice, metric) if choice else ""
    if choice is None:
        notes.append("no config is chosen on validation: every config has a failed run")
    few = min(c.n for c in configs)
    if few < MIN_SEEDS:
        notes.append(few_seeds_note(few))
    for sel in selections:
        sel.edges = edge_warnings(sel.family, [c.lam for c in sel.configs], sel.choice.lam_min,
                                  sel.choice.lam_1se, sel.at_min.strength)
    return Analysis(spec, metric, progress, configs, selections, comparisons, notes, failed, choice, best,
                    reference_of(spec, configs, metric), pruned)


def few_seeds_note(n: int) -> str:
    return (f"fewer than {MIN_SEEDS} seeds (n = {n}): no 95% intervals and no P(improvement) where n < {MIN_SEEDS}, "
            f"as a bootstrap of so few values only spans their range; run at least {MIN_SEEDS} seeds for them")


def recipe_settings(spec: dict) -> dict | None:
    """The settings of the recipe's own config (no override, no grid value, no folds); None without a recipe."""
    if not spec.get("recipe_yaml"):
        return None
    return settings(config_for({**spec, "overrides": [], "folds": None}, {}, 0, None))


def reference_of(spec: dict, configs: list[ConfigStats], metric: Metric) -> str:
    """The published figure read against the config equal to the recipe's own on every setting
    (``points.settings``: all that changes the result, no bookkeeping key), or why it is not."""
    published = spec.get("published") or {}
    if published.get("value") is None or published.get("metric") != metric.test_key:
        return ""
    own = recipe_settings(spec)
    same = [c for c in configs if own is not None and c.settings == own]
    if same:
        return reference_sentence(same[0], published, metric)
    if own is None:
        return ""
    closest = min(configs, key=lambda c: len(differing(c.settings, own)))
    keys = differing(closest.settings, own)
    return (f"no published reference for these configs: the published figure ({published.get('source', '')}) is "
            f"for the recipe's own config, and the closest config here differs in {', '.join(keys)}")
