"""Which config won: the one place that decides it.

Everything that names the config chosen on validation reads :func:`choose`: the sweep's last line,
``reglab.sweep(...).chosen()``, the report (the overall choice, and each family's λ_min) and the
study's ``chosen`` user attribute that optuna-dashboard shows. The rule, on the validation
objective only (never a test metric):

1. **One result per run.** A record is keyed by (point, seed, fold); a key held twice (a trial
   queued twice, two run folders of one config and seed) counts once: :func:`one_per_key` keeps
   its first ``ok`` record, else its first ``failed`` one, else its first ``pruned`` one, else its
   first unfinished one.
2. **Seed means.** A candidate's value on seed s is the mean over that seed's finished folds,
   v_s = (1/F_s)·Σ_f v_{s,f}; its score is the mean over its seeds, (1/S)·Σ_s v_s. Every sum is
   ``math.fsum`` (exact, then rounded once), so a score does not depend on the records' order.
3. **The failed-seed rule.** A candidate with a failed run (diverged, or failed for any other
   reason) on any seed or fold is not chosen, however good its other runs. A failed candidate
   whose score on its finished runs would have won (or tied) is named in the choice (``passed_over``).
   A candidate with a run **pruned** by successive halving (``reglab.train.halving``) is neither
   chosen nor named, whatever its runs scored: it was dropped before the end, so its results are
   not comparable.
4. **Ties.** Scores within a relative 10⁻⁹ of the best (``math.isclose``) are tied: far below a
   real difference (one validation example in a billion), far above the rounding of a mean, so
   two configs with equal correct counts tie whatever order their runs were summed in. A tie goes
   to the **stronger regularization** (the larger strength: λ, the dropout rate p, γ; none and a
   regularizer without strength count as 0), then to the **simpler family** (:func:`simplicity`:
   none < l2 < l1 < elastic < group < dropout < weight decay < gp < r1 < sn < other penalties; a
   single regularizer before two combined; a family without extra settings before one with
   them), then to the label's alphabetical order. The choice lists the tied labels and which
   part of the rule broke the tie.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

from reglab.ties import reaches

FAMILY_ORDER = ("none", "l2", "l1", "elastic", "group", "dropout", "weight_decay", "gp", "r1", "sn")
STATUS_ORDER = ("ok", "failed", "pruned", "running", "waiting")
TIE_RULES = ("the stronger regularization", "the simpler family", "the labels' alphabetical order")


def run_key(record) -> tuple[str, str, int, int | None]:
    """(label, point, seed, fold) of a record: what makes it one run (a point has one label)."""
    return record.label, json.dumps(record.point, sort_keys=True, default=str), record.seed, record.fold


def one_per_key(records: Iterable) -> list:
    """One record per (point, seed, fold), in first-seen order: the first ``ok``, else the first
    ``failed``, else the first ``pruned``, else the first unfinished one."""
    kept: dict[tuple, Any] = {}
    for record in records:
        key = run_key(record)
        old = kept.get(key)
        if old is None or STATUS_ORDER.index(record.status) < STATUS_ORDER.index(old.status):
            kept[key] = record
    return list(kept.values())


def simplicity(family: str) -> tuple[int, int, int]:
    """The tie rule's order of families, simplest first: (regularizers combined, rank of the first
    in ``FAMILY_ORDER`` (after them all when not listed), settings beside it). ``l2`` → (1, 1, 0),
    ``adamw weight_decay`` → (1, 6, 0), ``l2 + adamw weight_decay`` → (2, 1, 0),
    ``l2 optim.lr=0.01`` → (1, 1, 1)."""
    words = family.split()
    parts = " ".join(w for w in words if "=" not in w).split(" + ")
    first = "weight_decay" if parts[0].endswith("weight_decay") else parts[0]
    rank = FAMILY_ORDER.index(first) if first in FAMILY_ORDER else len(FAMILY_ORDER)
    return len(parts), rank, sum("=" in w for w in words)


@dataclass(frozen=True)
class Candidate:
    """A config that can be chosen, with all its records (finished or not)."""

    label: str
    family: str
    lam: float | None
    point: dict[str, Any]
    records: Sequence

    def tie_order(self) -> tuple[float, tuple[int, int, int], str]:
        """Ascending is preferred: the larger strength, the simpler family, the label."""
        return -(self.lam or 0.0), simplicity(self.family), self.label


def candidates(records: Iterable) -> list[Candidate]:
    """A study's points as candidates: records grouped by label, each key counted once."""
    by_label: dict[str, list] = defaultdict(list)
    for record in one_per_key(records):
        by_label[record.label].append(record)
    return [Candidate(label, rs[0].family, rs[0].lam, rs[0].point, rs) for label, rs in by_label.items()]


def seed_means(records: Iterable, metric: str) -> dict[int, float]:
    """seed → the mean of ``metric`` over that seed's finished folds that report a finite value
    (exact sums)."""
    values: dict[int, list[float]] = defaultdict(list)
    for r in records:
        value = r.summary.get(metric)
        if r.status == "ok" and isinstance(value, (int, float)) and math.isfinite(value):
            values[r.seed].append(float(value))
    return {seed: math.fsum(v) / len(v) for seed, v in sorted(values.items())}


def score(means: dict[int, float]) -> float:
    return math.fsum(means.values()) / len(means)


@dataclass(frozen=True)
class PassedOver:
    """A candidate not chosen because a run failed, though its finished runs scored better."""

    label: str
    score: float
    seeds: int
    failed_seeds: tuple[int, ...]
    reason: str | None

    def text(self) -> str:
        """``l2 λ=0.001 (0.6123 on 9 seeds) failed on seed 3: diverged: loss became nan``."""
        which = ", ".join(str(s) for s in self.failed_seeds)
        plural = "s" if len(self.failed_seeds) > 1 else ""
        return (f"{self.label} ({self.score:.4g} on {self.seeds} seed{'s' * (self.seeds != 1)}) failed on "
                f"seed{plural} {which}" + (f": {self.reason}" if self.reason else ""))


@dataclass(frozen=True)
class Choice:
    """The chosen config: its label, point (the grid values or TPE params that set it apart),
    family and strength; its score (the mean over ``seeds`` seeds of each seed's fold mean of
    ``metric``); the labels tied with it and the part of the tie rule that decided (none: no
    tie); the failed candidates that would have won on their finished runs."""

    label: str
    point: dict[str, Any]
    family: str
    lam: float | None
    metric: str
    score: float
    seeds: int
    tied: tuple[str, ...] = ()
    broken_by: str | None = None
    passed_over: tuple[PassedOver, ...] = field(default_factory=tuple)

    @property
    def tie(self) -> bool:
        return bool(self.tied)

    def tie_text(self) -> str:
        """``tie with dropout p=0.1, broken by the stronger regularization``; empty without a tie."""
        return f"tie with {', '.join(self.tied)}, broken by {self.broken_by}" if self.tied else ""

    def to_dict(self) -> dict[str, Any]:
        """For the study's ``chosen`` user attribute: as JSON reads it back (lists for tuples)."""
        return json.loads(json.dumps({**asdict(self), "tie": self.tie}))


def choose(pool: Iterable[Candidate], metric: str, direction: str) -> Choice | None:
    """The rule of the module docstring over ``pool`` on ``metric`` (``maximize`` or
    ``minimize``); None when every candidate with a finished run also has a failed or a pruned one."""
    sign = 1.0 if direction == "maximize" else -1.0
    eligible, failed = [], []
    for c in pool:
        if any(r.status == "pruned" for r in c.records):
            continue
        means = seed_means(c.records, metric)
        if means:
            (failed if any(r.status == "failed" for r in c.records) else eligible).append((c, means))
    if not eligible:
        return None
    best = max(sign * score(means) for _, means in eligible)

    tied = sorted((c for c, means in eligible if reaches(sign * score(means), best)), key=Candidate.tie_order)
    winner = tied[0]
    means = next(m for c, m in eligible if c is winner)
    broken_by = None
    if len(tied) > 1:
        first, second = winner.tie_order(), tied[1].tie_order()
        broken_by = TIE_RULES[next(i for i in range(3) if first[i] != second[i])]
    passed = tuple(passed_over(c, m) for c, m in failed if reaches(sign * score(m), best))
    return Choice(winner.label, dict(winner.point), winner.family, winner.lam, metric, score(means), len(means),
                  tuple(c.label for c in tied[1:]), broken_by, passed)


def passed_over(candidate: Candidate, means: dict[int, float]) -> PassedOver:
    bad = [r for r in candidate.records if r.status == "failed"]
    return PassedOver(candidate.label, score(means), len(means), tuple(sorted({r.seed for r in bad})), bad[0].reason)


def choose_point(spec: dict[str, Any], records: Iterable) -> Choice | None:
    """The choice among a study's points, on its ``spec['metric']`` and ``spec['direction']``."""
    return choose(candidates(records), spec["metric"], spec["direction"])
