"""A worker: pull waiting trials from a study's storage and train them until none is left.

Each loop iteration

1. fails the stale trials of dead workers (no heartbeat for the grace period); Optuna's retry
   callback puts each one back in the queue as a new WAITING trial with the same attributes;
2. claims waiting trials: the change WAITING → RUNNING succeeds for exactly one worker (a row lock
   in PostgreSQL, ``BEGIN IMMEDIATE`` in SQLite), so no trial is run twice. A heartbeat is recorded
   before the claim, so a worker killed right after claiming is still detected as stale;
3. trains them (up to ``batch`` trials of one group at once when they can be vectorized) while a
   background thread records their heartbeats, stores each outcome in its trial's user attributes
   and its per-epoch validation objective as intermediate values, and finishes it: COMPLETE with
   the objective, or FAIL with the reason (the study goes on);
4. with ``--search tpe``, asks the sampler for a new point when the queue is empty and fewer than
   N trials exist.

A worker stops when no trial is waiting or running. While only other workers' trials run, it
waits and keeps checking for stale ones, so a killed worker's trial is picked up and rerun.
Interrupted (Ctrl-C, SIGTERM), or stopped by a failing machine (a full disk), it puts its claimed
trials back in the queue.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import threading
import time
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Callable

import sqlalchemy
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RDBStorage, fail_stale_trials
from optuna.trial import FrozenTrial, TrialState

from reglab.errors import UserError
from reglab.study.execute import train_all
from reglab.study.points import describe
from reglab.study.queue import open_study, release
from reglab.study.records import current_trials, progress, store_choice
from reglab.study.spec import config_for, fold_list
from reglab.study.storage import quiet_optuna
from reglab.study import tpe
from reglab.train.batched import batched_message, vectorizable

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
            for trial_id in self.trial_ids:
                try:
                    self.storage.record_heartbeat(trial_id)
                except sqlalchemy.exc.SQLAlchemyError:
                    pass  # a lost beat is retried next interval; a long outage makes the trial stale

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
def holding(storage: RDBStorage, trial_ids: list[int], claim_them: bool = True):
    """Claim the trials (skipping those another worker won; ``claim_them=False`` for trials already
    ours), record their heartbeats while the block trains, and put them back in the queue if it is
    interrupted or fails. Yields the ids held."""
    held: list[int] = []
    beats: Heartbeats | None = None
    try:
        with interrupts_deferred():
            held = [i for i in trial_ids if not claim_them or claim(storage, i)]
            beats = Heartbeats(storage, held)
        yield held
    except BaseException:  # interrupted, or the machine failed (a full disk): the trials go back
        if beats is not None:
            beats.stop()
        for trial_id in held:
            with suppress(Exception):  # a storage that cannot be written: the grace period frees them
                release(storage, trial_id)
        raise
    finally:
        if beats is not None:
            beats.stop()


def claim(storage: RDBStorage, trial_id: int) -> bool:
    storage.record_heartbeat(trial_id)
    try:
        won = storage.set_trial_state_values(trial_id, TrialState.RUNNING)
    except UpdateFinishedTrialError:
        return False
    if won:
        storage.set_trial_user_attr(trial_id, "worker", identity())
    return won


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


def finish(storage: RDBStorage, trial_id: int, attrs: dict[str, Any], value: float | None,
           curve: dict[int, float]) -> bool:
    """Store the outcome and the per-epoch objective (``curve``) and finish the trial; False if it
    was given up as stale meanwhile (its retry runs it again)."""
    try:
        for key, item in attrs.items():
            storage.set_trial_user_attr(trial_id, key, item)
        for epoch, item in curve.items():
            storage.set_trial_intermediate_value(trial_id, epoch, item)
        if value is None:
            storage.set_trial_state_values(trial_id, TrialState.FAIL)
        else:
            storage.set_trial_state_values(trial_id, TrialState.COMPLETE, values=[value])
    except UpdateFinishedTrialError:
        return False
    return True


class Worker:
    def __init__(self, storage: RDBStorage, name: str, root: Path, batch: int = 16,
                 echo: Callable[[str], None] = print):
        if batch < 1:
            raise UserError(f"--batch must be at least 1, got {batch}")
        self.storage, self.name, self.root, self.batch, self.echo = storage, name, Path(root).resolve(), batch, echo
        self.study, self.spec = open_study(storage, name)
        self.study_id = storage.get_study_id_from_name(name)
        self.path_message: str | None = None
        self.started = time.monotonic()
        self.finished = 0

    def run(self) -> int:
        """Work until the study has nothing waiting or running; the number of trials finished here."""
        while True:
            with quiet_optuna():
                fail_stale_trials(self.study)
            waiting = self.trials(TrialState.WAITING)
            if waiting:
                self.run_waiting(waiting)
            elif self.spec["search"] == "tpe" and self.tpe_open():
                self.run_new_tpe_trial()
            elif self.trials(TrialState.RUNNING):
                time.sleep(POLL_SECONDS)
            else:
                store_choice(self.study, self.spec)  # now that no trial is left
                return self.finished

    def trials(self, *states: TrialState) -> list[FrozenTrial]:
        return self.storage.get_all_trials(self.study_id, deepcopy=False, states=states or None)

    def trial_id(self, number: int) -> int:
        """The storage's id of the study's trial ``number``."""
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def run_waiting(self, waiting: list[FrozenTrial]) -> None:
        if self.spec["search"] == "tpe":
            self.run_tpe_trial(self.trial_id(waiting[0].number), waiting[0].params)
            return
        group = waiting[0].user_attrs["group"]
        chosen = [t for t in waiting if t.user_attrs["group"] == group][: self.batch]
        configs = {t.number: config_for(self.spec, t.user_attrs["point"], t.user_attrs["seed"],
                                        t.user_attrs["fold"]) for t in chosen}
        reason = vectorizable(list(configs.values())) if len(chosen) > 1 else None
        if reason is not None:
            chosen = chosen[:1]
        ids = {t.number: self.trial_id(t.number) for t in chosen}
        with holding(self.storage, [ids[t.number] for t in chosen]) as held:
            claimed = [t for t in chosen if ids[t.number] in held]
            if not claimed:
                return
            self.say_path(len(claimed), reason)
            outcomes = train_all([configs[t.number] for t in claimed], self.root, len(claimed) > 1)
            for trial, out in zip(claimed, outcomes):  # beating on, so no trial waiting here looks stale
                self.complete(ids[trial.number], trial.user_attrs, out)
        self.say_progress()

    def train_group(self, configs: list) -> list[dict[str, Any]]:
        """Train the seeds of one fold: at once when they can be vectorized."""
        reason = vectorizable(configs)
        self.say_path(len(configs) if reason is None else 1, reason if len(configs) > 1 else None)
        return train_all(configs, self.root, reason is None)

    def say_path(self, n: int, reason: str | None) -> None:
        message = batched_message(n) if n > 1 else f"one after another: {reason}"
        if n == 1 and reason is None:
            return
        if message != self.path_message:
            self.echo(message)
            self.path_message = message

    def say_progress(self) -> None:
        """One line: the study's trials done, failed and left, and the time left at the pace of
        this worker (other workers make it shorter)."""
        counts = progress(self.storage, self.study_id, self.spec, self.study.user_attrs.get("total", 0))
        left = counts["running"] + counts["waiting"] + counts["unqueued"]
        line = f"progress: {counts['done']} done, {counts['failed']} failed, {left} left"
        if left and self.finished:
            seconds = (time.monotonic() - self.started) / self.finished * left
            line += f"; about {seconds / 60:.1f} min left at this worker's pace"
        self.echo(line)

    def objective(self, out: dict[str, Any]) -> float | None:
        value = out["summary"].get(self.spec["metric"]) if out["status"] == "ok" else None
        return value if value is not None and math.isfinite(value) else None

    def complete(self, trial_id: int, attrs: dict[str, Any], out: dict[str, Any]) -> None:
        value = self.objective(out)
        if out["status"] == "ok" and value is None:
            out = {**out, "status": "failed", "reason": f"the run reported no finite {self.spec['metric']}"}
        if not finish(self.storage, trial_id, out, value, learning_curve([out], self.spec["metric"])):
            self.echo(f"{attrs['label']} seed {attrs['seed']}: given up as stale while running; it runs again")
            return
        self.finished += 1
        fold = f" fold {attrs['fold']}" if attrs.get("fold") is not None else ""
        result = f"{self.spec['metric']} {value:.4g}" if value is not None else f"failed: {out['reason']}"
        seconds = out["summary"].get("seconds")
        took = f" ({seconds:.1f} s)" if seconds is not None else ""
        self.echo(f"{attrs['label']} seed {attrs['seed']}{fold}: {result}{took}")

    def tpe_open(self) -> bool:
        """Fewer than N current trials (finished, running or queued)?"""
        return len(current_trials(self.trials())) < self.spec["trials"]

    def run_new_tpe_trial(self) -> None:
        trial = tpe.ask(self.study, self.spec, len(self.trials()))
        trial_id = self.trial_id(trial.number)
        self.storage.record_heartbeat(trial_id)
        self.storage.set_trial_user_attr(trial_id, "worker", identity())
        self.run_tpe_trial(trial_id, trial.params, claim_it=False)

    def run_tpe_trial(self, trial_id: int, params: dict[str, Any], claim_it: bool = True) -> None:
        """Train one proposed point on every seed × fold; its value is the mean objective."""
        spec = self.spec
        runs = [(s, f) for f in fold_list(spec) for s in spec["seeds"]]
        with holding(self.storage, [trial_id], claim_them=claim_it) as held:
            if not held:
                return
            try:
                point = describe(params, config_for(spec, params, *runs[0]))
                configs = [config_for(spec, point.values, s, f) for s, f in runs]
            except UserError as exc:
                self.finish_tpe(trial_id, {"point": params, "label": str(params)}, [], str(exc))
                return
            outcomes = [out for fold in fold_list(spec) for out in
                        self.train_group([c for c, (_, f) in zip(configs, runs) if f == fold])]
        attrs = {"point": point.values, "label": point.label, "family": point.family, "lam": point.lam}
        for (seed, fold), out in zip(runs, outcomes):
            out.update(seed=seed, fold=fold)
        self.finish_tpe(trial_id, attrs, outcomes, None)

    def finish_tpe(self, trial_id: int, attrs: dict[str, Any], outcomes: list[dict], error: str | None) -> None:
        values = [self.objective(o) for o in outcomes]
        failed = next((o for o, v in zip(outcomes, values) if v is None), None)
        reason = error or (f"seed {failed['seed']}: {failed['reason']}" if failed else None)
        value = None if reason else sum(values) / len(values)
        status = {"status": "failed" if reason else "ok", "reason": reason}
        curve = learning_curve(outcomes, self.spec["metric"])
        if not finish(self.storage, trial_id, {**attrs, **status, "runs": outcomes}, value, curve):
            self.echo(f"{attrs['label']}: given up as stale while running; it runs again")
            return
        self.finished += 1
        result = f"mean {self.spec['metric']} {value:.4g}" if value is not None else f"failed: {reason}"
        self.echo(f"{attrs['label']}: {result}")
        self.say_progress()
