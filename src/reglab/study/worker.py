"""A worker: pull waiting trials from a study's storage and train them until none is left.

Each loop iteration

1. fails the stale trials of dead workers (no heartbeat for the grace period) and queues a retry
   of each, in one transaction (``transactions.fail_stale``): a kill at any moment leaves either
   the running trial or the failure with its retry;
2. fills the queue if its creator did not (``queue.complete_queue``);
3. claims waiting trials in one transaction (``transactions.claim``): WAITING → RUNNING with a
   heartbeat, for exactly one worker (a row lock in PostgreSQL, ``BEGIN IMMEDIATE`` in SQLite).
   It starts at a random waiting trial of a random group, so that workers started at once do not
   all reach for the head of the same list;
4. trains them (up to ``batch`` trials of one group at once when they can be vectorized) while a
   background thread records their heartbeats, then stores every outcome in one transaction
   (``transactions.finish``): its user attributes, its per-epoch validation objective as
   intermediate values, and COMPLETE with the objective or FAIL with the reason (the study goes
   on). Only then are the run folders renamed to their final names (``runs.publish``), so no
   kill leaves a finished-looking folder that no trial points to;
5. with ``--search tpe``, a claimed trial without params gets the point the sampler proposes;
6. with ``--prune halving``, it claims every waiting trial of one fold at once and trains them by
   successive halving (``reglab.train.halving``): a rung compares every point on all its seeds, so
   one worker holds them all; several workers share a study fold by fold.

What a worker prints: on a terminal, one rich bar of the study's trials done/total with the time
left (``launch.Display``); otherwise (piped, or a log file) a line per finished run, and its time:
the wall-clock time since the previous result (the first: since ``since``, the start of the
``reglab sweep`` that runs it, else of the worker), so that the times printed add up to the wall
clock. Runs trained together as one stack print their lines, then the stack's time once
(``4 runs trained together (6.4 s)``); a run trained alone ends its own line with it.

A worker stops when the queue is filled and no trial is waiting or running. While only other
workers' trials run, it waits and keeps checking for stale ones, so a killed worker's trial is
picked up and rerun. Interrupted (Ctrl-C, SIGTERM), or stopped by a failing machine (a full
disk), it puts its claimed trials back in the queue. A lost storage is reconnected to (``storage.reconnecting``); training is never repeated for it.
"""

from __future__ import annotations

import math
import os
import random
import signal
import socket
import sys
import threading
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Callable, TypeVar

from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from reglab.errors import UserError
from reglab.runs import publish
from reglab.study import tpe, transactions
from reglab.study.transactions import Waiting
from reglab.study.execute import train_all
from reglab.study.launch import Display
from reglab.study.points import describe, run_label
from reglab.study.queue import complete_queue, open_study
from reglab.study.records import ENDED, progress, store_choice, study_records
from reglab.study.spec import config_for, fold_list
from reglab.study.storage import reconnecting
from reglab.train.batched import batched_message, vectorizable
from reglab.train.halving import Halving

T = TypeVar("T")
POLL_SECONDS = 1.0
CURVE_POINTS = 50  # most intermediate values stored per trial
INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


class Heartbeats:
    """Record a heartbeat for each trial every ``interval`` seconds until stopped."""

    def __init__(self, storage: RDBStorage, trial_ids: list[int]):
        self.storage, self.trial_ids = storage, trial_ids
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.beat, daemon=True)
        self.thread.start()

    def beat(self) -> None:
        while not self.done.wait(self.storage.heartbeat_interval):
            try:
                transactions.heartbeat(self.storage, self.trial_ids)
            except Exception:
                pass  # a lost beat is retried next interval; a long outage makes the trials stale

    def stop(self) -> None:
        self.done.set()
        self.thread.join()


@contextmanager
def interrupts_deferred():
    """Hold Ctrl-C and SIGTERM back until the block ends, then deliver them: a trial interrupted
    between its claim and its heartbeats would otherwise stay RUNNING until it goes stale."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {s: signal.signal(s, lambda signum, frame: caught.append(signum)) for s in INTERRUPTS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for s in dict.fromkeys(caught):
            signal.raise_signal(s)


@contextmanager
def holding(storage: RDBStorage, claim_them: Callable[[], list[int]]):
    """Claim trials (``claim_them()`` returns the ids won), record their heartbeats while the
    block trains, and put them back in the queue if it is interrupted. Yields the ids held."""
    held: list[int] = []
    beats: Heartbeats | None = None
    try:
        with interrupts_deferred():
            held = claim_them()
            beats = Heartbeats(storage, held)
        yield held
    except BaseException:  # interrupted, or the machine failed (a full disk): the trials go back
        if beats is not None:
            beats.stop()
        if held:
            with suppress(Exception):  # a storage that cannot be written: the grace period frees them
                transactions.release(storage, held)
        raise
    finally:
        if beats is not None:
            beats.stop()


def identity() -> dict[str, Any]:
    """Who runs a trial, stored with it: this machine and process."""
    return {"host": socket.gethostname(), "pid": os.getpid()}


def learning_curve(outcomes: list[dict[str, Any]], metric: str) -> dict[int, float]:
    """Per epoch, the mean of ``metric`` over the outcomes' histories that reached that epoch; of a
    long run, at most ``CURVE_POINTS`` evenly spaced epochs (the last one included), as each value
    is one write to the storage."""
    by_epoch: dict[int, list[float]] = {}
    for out in outcomes:
        for record in out.get("history", []):
            if metric in record and math.isfinite(record[metric]):
                by_epoch.setdefault(int(record["epoch"]), []).append(record[metric])
    epochs = sorted(by_epoch)
    if len(epochs) > CURVE_POINTS:
        epochs = [epochs[round(i * (len(epochs) - 1) / (CURVE_POINTS - 1))] for i in range(CURVE_POINTS)]
    return {epoch: sum(by_epoch[epoch]) / len(by_epoch[epoch]) for epoch in epochs}


class Worker:
    """Trains a study's waiting trials (module docstring); ``terminal`` (None: whether stdout is a
    terminal) shows a progress bar instead of a line per run; ``since`` (``time.monotonic()``;
    None: now) is when its clock of the times printed starts."""

    def __init__(self, storage: RDBStorage, name: str, root: Path, batch: int = 16,
                 echo: Callable[[str], None] = print, terminal: bool | None = None, since: float | None = None):
        if batch < 1:
            raise UserError(f"--batch must be at least 1, got {batch}")
        self.storage, self.name, self.root, self.batch, self.echo = storage, name, Path(root).resolve(), batch, echo
        self.study, self.spec = open_study(storage, name)
        self.study_id = storage.get_study_id_from_name(name)
        self.path_message: str | None = None
        self.started = self.last_result = time.monotonic() if since is None else since
        self.finished = 0
        self.terminal = sys.stdout.isatty() if terminal is None else terminal
        self.display: Display | None = None

    def db(self, step: Callable[[], T]) -> T:
        """``step()`` against the storage, reconnecting while it is unreachable."""
        return reconnecting(self.storage, step, self.echo)

    def run(self) -> int:
        """Work until the study has nothing waiting or running; the number of trials finished here."""
        if self.terminal:
            self.display = Display(self.study.user_attrs.get("total", 0), self.echo, terminal=True)
            self.say_progress()
        try:
            return self.work()
        finally:
            if self.display is not None:
                self.display.close()

    def work(self) -> int:
        filled = False
        while True:
            self.db(lambda: transactions.fail_stale(self.storage, self.study_id, self.storage.grace_period))
            filled = filled or self.db(lambda: complete_queue(self.storage, self.study, self.spec, self.echo))
            waiting = self.db(lambda: transactions.waiting(self.storage, self.study_id))
            if waiting:
                self.run_waiting(waiting)
            elif not filled or self.db(lambda: self.trials(TrialState.RUNNING)):
                time.sleep(POLL_SECONDS)
            else:
                self.db(lambda: store_choice(self.storage, self.study, self.spec))  # now that no trial is left
                self.db(self.publish_finished)
                return self.finished

    def publish_finished(self) -> None:
        """Publish the run folders of stored outcomes whose worker died before renaming them."""
        for record in study_records(self.trials(), self.spec):
            if record.run_dir is not None and record.status in ENDED:
                publish(Path(record.run_dir))

    def trials(self, *states: TrialState) -> list[FrozenTrial]:
        return self.storage.get_all_trials(self.study_id, deepcopy=False, states=states or None)

    def claim(self, trials: list[Waiting], limit: int) -> list[int]:
        ids = [t.trial_id for t in trials]
        return self.db(lambda: transactions.claim(self.storage, ids, limit, identity()))

    def run_waiting(self, waiting: list[Waiting]) -> None:
        if self.spec["search"] == "tpe":
            self.run_tpe_trial(waiting)
            return
        if self.spec.get("prune"):
            self.run_prune_group(waiting)
            return
        start = random.choice(waiting)
        group = [t for t in waiting if t.user_attrs["group"] == start.user_attrs["group"]]
        at = group.index(start)
        group = group[at:] + group[:at]  # from a random trial on, so that workers spread over the list
        reason = vectorizable([self.config_of(t) for t in group[: self.batch]]) if len(group) > 1 and self.batch > 1 else None
        limit = 1 if reason is not None else self.batch
        with holding(self.storage, lambda: self.claim(group, limit)) as held:
            claimed = [t for t in group if t.trial_id in held]
            if not claimed:
                return
            self.say_path(len(claimed), reason)
            configs = [self.config_of(t) for t in claimed]
            outcomes = train_all(configs, self.root, len(claimed) > 1, self.labels_of(claimed, configs))
            self.complete(claimed, outcomes)  # beating on, so no trial waiting here looks stale
        self.say_progress()

    def config_of(self, trial: Waiting):
        attrs = trial.user_attrs
        return config_for(self.spec, attrs["point"], attrs["seed"], attrs.get("fold"))

    def labels_of(self, trials: list[Waiting], configs: list) -> list:
        """The run folders' labels of ``trials`` (their configs ``configs``): the point's and seed."""
        return [run_label(describe(t.user_attrs["point"], c), self.spec) for t, c in zip(trials, configs)]

    def run_prune_group(self, waiting: list[Waiting]) -> None:
        """Claim every waiting trial of one fold (a prune group: all its points × seeds, as a rung
        compares every point on all its seeds) and train them by successive halving
        (``reglab.train.halving``); the pruned ones are stored as PRUNED."""
        fold = random.choice(waiting).user_attrs.get("fold")
        group = [t for t in waiting if t.user_attrs.get("fold") == fold]
        prune = self.spec["prune"]
        rule = Halving(self.spec["metric"], self.spec["direction"], prune["eta"], prune["min_epochs"])
        with holding(self.storage, lambda: self.claim(group, len(group))) as held:
            claimed = [t for t in group if t.trial_id in held]
            if not claimed:
                return
            points = [t.user_attrs["label"] for t in claimed]
            self.echo(f"successive halving (η={rule.eta}) over {len(set(points))} points × their seeds: "
                      f"{len(claimed)} runs")
            configs = [self.config_of(t) for t in claimed]
            outcomes = train_all(configs, self.root, False, self.labels_of(claimed, configs), rule, points, self.batch)
            self.complete(claimed, outcomes)
        self.say_progress()

    def train_group(self, configs: list, point) -> list[dict[str, Any]]:
        """Train the seeds of one fold of ``point``: at once when they can be vectorized."""
        reason = vectorizable(configs)
        self.say_path(len(configs) if reason is None else 1, reason if len(configs) > 1 else None)
        return train_all(configs, self.root, reason is None, [run_label(point, self.spec)] * len(configs))

    def say_path(self, n: int, reason: str | None) -> None:
        message = batched_message(n) if n > 1 else f"one after another: {reason}"
        if n == 1 and reason is None:
            return
        if message != self.path_message:
            self.echo(message)
            self.path_message = message

    def took(self) -> float:
        """Seconds since the previous result (or the start): this result's share of the wall clock."""
        now = time.monotonic()
        seconds, self.last_result = now - self.last_result, now
        return seconds

    def say(self, line: str) -> None:
        """A line about one run: printed unless the progress bar stands for it."""
        if self.display is None:
            self.echo(line)

    def say_progress(self) -> None:
        """The progress bar's counts; off a terminal, one line: the study's trials done, failed and
        left, and the time left at the pace of this worker (other workers make it shorter)."""
        counts = self.db(lambda: progress(self.storage, self.study_id, self.spec, self.study.user_attrs.get("total", 0)))
        if self.display is not None:
            self.display.show(counts)
            return
        left = counts["running"] + counts["waiting"] + counts["unqueued"]
        line = f"progress: {counts['done']} done, {counts['failed']} failed, {left} left"
        if left and self.finished:
            seconds = (time.monotonic() - self.started) / self.finished * left
            line += f"; about {seconds / 60:.1f} min left at this worker's pace"
        self.echo(line)

    def objective(self, out: dict[str, Any]) -> float | None:
        value = out["summary"].get(self.spec["metric"]) if out["status"] == "ok" else None
        return value if value is not None and math.isfinite(value) else None

    def complete(self, trials: list[Waiting], outcomes: list[dict[str, Any]]) -> None:
        """Store the outcomes in one transaction, then give their run folders their final names."""
        rows = []
        for trial, out in zip(trials, outcomes):
            value = self.objective(out)
            if out["status"] == "ok" and value is None:
                out.update(status="failed", reason=f"the run reported no finite {self.spec['metric']}")
            rows.append((trial.trial_id, out, value, learning_curve([out], self.spec["metric"])))
        with interrupts_deferred():
            stored = self.db(lambda: transactions.finish(self.storage, rows))
            for out, kept in zip(outcomes, stored):
                if kept and out.get("run_dir"):
                    publish(Path(out["run_dir"]))
        seconds = self.took()
        alone = len(trials) == 1
        for trial, out, (_, _, value, _), kept in zip(trials, outcomes, rows, stored):
            attrs = trial.user_attrs
            if not kept:
                self.echo(f"{attrs['label']} seed {attrs['seed']}: given up as stale while running; it runs again")
                continue
            self.finished += 1
            fold = f" fold {attrs['fold']}" if attrs.get("fold") is not None else ""
            result = (f"{self.spec['metric']} {value:.4g}" if value is not None else
                      f"{'pruned' if out['status'] == 'pruned' else 'failed'}: {out['reason']}")
            self.say(f"{attrs['label']} seed {attrs['seed']}{fold}: {result}" + (f" ({seconds:.1f} s)" if alone else ""))
        if not alone:
            self.say(f"  {len(trials)} runs trained together ({seconds:.1f} s)")

    def run_tpe_trial(self, waiting: list[Waiting]) -> None:
        """Claim one waiting trial, give it the point TPE proposes (a retry keeps its own), and
        train that point on every seed × fold; its value is the mean objective."""
        spec = self.spec
        runs = [(s, f) for f in fold_list(spec) for s in spec["seeds"]]
        with holding(self.storage, lambda: self.claim(waiting, 1)) as held:
            if not held:
                return
            trial = next(t for t in waiting if t.trial_id == held[0])
            params = trial.params or self.db(lambda: tpe.propose(self.study, spec, trial.trial_id, trial.number))
            try:
                point = describe(params, config_for(spec, params, *runs[0]))
                configs = [config_for(spec, point.values, s, f) for s, f in runs]
            except UserError as exc:
                self.finish_tpe(trial, {"point": params, "label": str(params)}, [], str(exc))
                return
            outcomes = [out for fold in fold_list(spec) for out in
                        self.train_group([c for c, (_, f) in zip(configs, runs) if f == fold], point)]
            attrs = {"point": point.values, "label": point.label, "family": point.family, "lam": point.lam}
            for (seed, fold), out in zip(runs, outcomes):
                out.update(seed=seed, fold=fold)
            self.finish_tpe(trial, attrs, outcomes, None)

    def finish_tpe(self, trial: Waiting, attrs: dict[str, Any], outcomes: list[dict], error: str | None) -> None:
        values = [self.objective(o) for o in outcomes]
        failed = next((o for o, v in zip(outcomes, values) if v is None), None)
        reason = error or (f"seed {failed['seed']}: {failed['reason']}" if failed else None)
        value = None if reason else sum(values) / len(values)
        status = {"status": "failed" if reason else "ok", "reason": reason}
        row = (trial.trial_id, {**attrs, **status, "runs": outcomes}, value, learning_curve(outcomes, self.spec["metric"]))
        with interrupts_deferred():
            (kept,) = self.db(lambda: transactions.finish(self.storage, [row]))
            for out in outcomes if kept else []:
                if out.get("run_dir"):
                    publish(Path(out["run_dir"]))
        if not kept:
            self.echo(f"{attrs['label']}: given up as stale while running; it runs again")
            return
        self.finished += 1
        result = f"mean {self.spec['metric']} {value:.4g}" if value is not None else f"failed: {reason}"
        self.say(f"{attrs['label']}: {result} ({len(outcomes)} runs, {self.took():.1f} s)")
        self.say_progress()
