"""Successive halving: train the points of a sweep together and drop the worst ones at rungs.

A *point* is one config trained on several seeds (each seed one run). All runs of all points start
together, in as many stacks as their configs need (:func:`reglab.train.batched.vectorizable`:
the points that one stack can train share it, at most ``batch`` runs each; the others train as
stacks of their own, rung by rung). With n points, E epochs and the factor η:

* **rungs**: after epochs ⌈E/η^s⌉, …, ⌈E/η²⌉, ⌈E/η⌉, where s = ⌊log_η n⌋ is the number of halvings
  n points allow (each keeps ⌈n/η⌉, so s of them leave at least one); rungs before ``min_epochs``
  and equal ones are left out (:func:`rungs`). With the demo's 10 points, E = 30 and η = 3: after
  epochs 4 and 10.
* **at a rung** every stack has trained to that epoch. A run's standing is what it would report if
  it ended now: its metric at its best epoch so far when ``train.restore_best`` (as its summary
  would say), else at this epoch; a run that already ended (early stopping) stands at its result.
  A point's score is the mean of its runs' standings over its seeds (exact sums); a point with a
  failed run ranks last (the chooser never chooses it). The ⌈n/η⌉ best points on the study's
  metric and direction are kept (and any point tied with the last kept one, within a relative
  10⁻⁹ as in the chooser); the runs of the others still training end as **pruned**
  (``Tracker.prune``: status ``pruned``, the rung epoch and the reason in ``summary.json``) and
  leave their stack (``select(keep)``).

After the last rung the stacks train to the end. A run's result is as it would be without pruning
when its point is kept: the rungs only read the runs' metrics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Hashable, Iterator

from reglab.config import Config
from reglab.runs import Run, RunLabel
from reglab.ties import reaches
from reglab.train.batched import vectorizable
from reglab.train.engine import Stack, course, run_folders, stack_of
from reglab.train.experiment import prepare
from reglab.train.threads import use_free_cores
from reglab.train.tracker import Member


def halvings(points: int, eta: int) -> int:
    """s = ⌊log_η n⌋, in integers: the most halvings (each keeping ⌈n/η⌉) before one point is left."""
    s = 0
    while eta ** (s + 1) <= points:
        s += 1
    return s


def rungs(epochs: int, points: int, eta: int, min_epochs: int = 1) -> list[int]:
    """The epochs after which points are dropped, ascending: ⌈E/η^k⌉ for k = s, …, 1 (s =
    :func:`halvings`), each once, those before ``min_epochs`` or at the last epoch left out."""
    at = {-(-epochs // eta ** k) for k in range(1, halvings(points, eta) + 1)}
    return sorted(e for e in at if min_epochs <= e < epochs)


def kept(points: int, eta: int) -> int:
    """⌈n/η⌉: how many of n points a rung keeps (the worst fraction 1 − 1/η is dropped)."""
    return -(-points // eta)


@dataclass(frozen=True)
class Halving:
    """Successive halving with factor ``eta`` (≥ 2) on ``metric`` (``maximize`` or ``minimize``),
    no rung before epoch ``min_epochs``."""

    metric: str
    direction: str
    eta: int = 3
    min_epochs: int = 1


def standing(member: Member, metric: str) -> float | None:
    """What the run would report for ``metric`` if it ended now; None when it failed or has none."""
    tracker = member.tracker
    if member.result is not None:
        summary = member.result.summary
        value = summary.get(metric) if summary.get("status") == "ok" else None
    elif tracker.status["status"] != "ok" or not tracker.history:
        value = None
    else:
        best = tracker.exp.config.train.restore_best and tracker.best_epoch
        value = (tracker.history[tracker.best_epoch - 1] if best else tracker.history[-1]).get(metric)
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def scores(runs: dict[Hashable, list[Member]], rule: Halving) -> dict[Hashable, float | None]:
    """Each point's score at a rung: the mean standing of its runs, None when one has none."""
    out: dict[Hashable, float | None] = {}
    for point, members in runs.items():
        values = [standing(m, rule.metric) for m in members]
        out[point] = None if any(v is None for v in values) else math.fsum(values) / len(values)
    return out


def survivors(points: dict[Hashable, float | None], rule: Halving) -> list[Hashable]:
    """The points a rung keeps: the ⌈n/η⌉ best, those tied with the last of them, none without a score."""
    sign = 1.0 if rule.direction == "maximize" else -1.0
    ranked = sorted((p for p, v in points.items() if v is not None), key=lambda p: -sign * points[p])
    if not ranked:
        return []
    bar = sign * points[ranked[:kept(len(points), rule.eta)][-1]]
    return [p for p in ranked if reaches(sign * points[p], bar)]


class Course:
    """A stack trained epoch by epoch (``engine.course``), paused between epochs."""

    def __init__(self, stack: Stack):
        self.stack, self.size, self.epoch, self.seconds = stack, len(stack.members), 0, 0.0
        self.steps: Iterator[float] | None = course(stack, progress=False)

    def advance(self, epoch: int | None = None) -> None:
        """Train up to the end of ``epoch`` (None: to the end), or until every model has ended."""
        while self.steps is not None and (epoch is None or self.epoch < epoch):
            try:
                self.seconds = next(self.steps)
                self.epoch += 1
            except StopIteration:
                self.steps = None

    def prune(self, drop: set[Hashable], point_of: dict[int, Hashable], epoch: int, reason) -> None:
        """End the models of the points in ``drop`` as pruned and take them out of the stack."""
        if self.steps is None:
            return
        rows = [i for i, m in enumerate(self.stack.members) if point_of[id(m)] in drop]
        for i in rows:
            member = self.stack.members[i]
            member.tracker.prune(epoch, reason(point_of[id(member)]), self.seconds, self.size)
        keep = [i for i in range(len(self.stack.members)) if i not in rows]
        if not keep:
            self.steps.close()
            self.steps = None
        elif rows:
            self.stack.select(keep)


def train_halving(stacks: list[Stack], point_of: dict[int, Hashable], rule: Halving) -> None:
    """Train the stacks' members (``point_of``: ``id(member)`` → its point) by the rule of the
    module's docstring; each member ends with its result (ok, failed or pruned)."""
    courses = [Course(s) for s in stacks]
    runs: dict[Hashable, list[Member]] = {}
    for s in stacks:
        for m in s.members:
            runs.setdefault(point_of[id(m)], []).append(m)
    epochs = max(m.exp.config.train.epochs for s in stacks for m in s.members)
    for epoch in rungs(epochs, len(runs), rule.eta, rule.min_epochs):
        for c in courses:
            c.advance(epoch)
        points = scores(runs, rule)
        keep = survivors(points, rule)
        drop = set(runs) - set(keep)
        worst_kept = points[keep[-1]] if keep else None

        def reason(point: Hashable) -> str:
            value = points[point]
            said = "a run failed" if value is None else f"mean {rule.metric} {value:.4g} over {len(runs[point])} seeds"
            bar = f", the last kept {worst_kept:.4g}" if worst_kept is not None else ""
            return (f"successive halving (η={rule.eta}) after epoch {epoch}: {said}, not among the "
                    f"best {len(keep)} of {len(runs)} points{bar}")

        for c in courses:
            c.prune(drop, point_of, epoch, reason)
        runs = {p: runs[p] for p in keep}
    for c in courses:
        c.advance()


def stacks_for(members: list[Member], batch: int) -> list[Stack]:
    """The members in stacks: each with the members that one stack can train with its first one
    (:func:`vectorizable`), at most ``batch``; the others in stacks of their own."""
    groups: list[list[Member]] = []
    for member in members:
        home = next((g for g in groups if len(g) < batch
                     and vectorizable([g[0].exp.config, member.exp.config]) is None), None)
        if home is None:
            groups.append([member])
        else:
            home.append(member)
    return [stack_of(g) for g in groups]


def run_halving(configs: list[Config], points: list[Hashable], rule: Halving, root: str | Path | None = None,
                batch: int = 16, publish: bool = True, labels: list[RunLabel | None] | None = None) -> list[Run]:
    """Train ``configs`` (``points[i]``: the point of config i) by successive halving and write their
    run folders (named by ``labels[i]``, else as a single run's); one result per config, in order. A config that cannot be built gives a failed
    result (and its point is never chosen); the other runs of its point train on."""
    use_free_cores()
    results: list[Run | None] = [None] * len(configs)
    members: list[tuple[int, Member]] = []
    for i, config in enumerate(configs):
        try:
            members.append((i, Member.of(prepare(config))))
        except Exception as exc:
            results[i] = Run.failed(exc)
    trained = [m for _, m in members]
    if trained:
        stacks = stacks_for(trained, batch)
        point_of = {id(m): points[i] for i, m in members}
        labels = labels or [None] * len(configs)
        with run_folders(trained, root, publish, [labels[i] for i, _ in members]):
            train_halving(stacks, point_of, rule)
    for i, member in members:
        results[i] = member.result
    return results
