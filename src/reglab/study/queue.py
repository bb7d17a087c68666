"""Creating, resuming and opening a study in its storage.

A grid study holds one trial per point × seed × fold, put in the queue (state WAITING) once, when
the study is created. Each trial carries its point as real Optuna params with the grid's
distributions (so optuna-dashboard and ``study.trials[i].params`` show them); the trial's user
attributes hold the rest (seed, fold, label, the run's outcome). A TPE study of N trials holds N
waiting trials without params from the start; a worker claims one and the sampler fills in its
point, so exactly N trials ever run however many workers ask at once.

Creation is guarded by the storage itself: the study is created with ``load_if_exists=False``, so
of several ``reglab sweep`` commands started at once exactly one creates it; the others find it
and check that its spec is theirs. The plan (the study attributes ``spec`` and ``total``, the
number of planned trials) is stored first. The queue is then filled in one transaction under the
study's queue lock (``transactions.fill_queue``), which also sets the attribute ``enqueued``:
every reader sees the whole queue or none of it. A creator killed or paused half way has added
nothing visible; until ``enqueued`` is set, ``reglab studies`` and ``reglab report`` count the
planned trials as not yet queued, and every ``reglab sweep`` or ``reglab worker`` on the study
tries to fill it (waiting for the lock, at most ``transactions.LOCK_WAIT`` seconds at a time). The
lock holder adds only the planned keys that no trial holds, so no key is ever added twice.
"""

from __future__ import annotations

import time
import warnings
from typing import Any, Callable

import optuna
from optuna.distributions import BaseDistribution
from optuna.exceptions import DuplicatedStudyError
from optuna.storages import RDBStorage

from reglab.errors import UserError
from reglab.study.auto_grid import distribution
from reglab.study.grid import param_value, parse_grid
from reglab.study.points import trial_plan
from reglab.study.spec import canonical, differences, spec_hash
from reglab.study.storage import shown_url
from reglab.study.transactions import QueueBusy, fill_queue

SPEC_WAIT = 30.0  # seconds to wait for a concurrent creator to store its spec

Echo = Callable[[str], None]


def create_or_resume(storage: RDBStorage, name: str, spec: dict[str, Any],
                     echo: Echo | None = None) -> tuple[optuna.Study, bool]:
    """The study ``name`` with this spec, created (and its queue filled) if new; ``(study, created)``.

    A study of that name with another spec is refused. ``echo`` gets a line when a queue that a
    killed creator left unfilled is completed here."""
    try:
        study = optuna.create_study(storage=storage, study_name=name, direction=spec["direction"],
                                    load_if_exists=False)
    except DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage)
        stored = canonical(wait_for_spec(study))
        if stored != spec:
            changed = ", ".join(differences(stored, spec))
            raise UserError(f"study '{name}' exists with a different config ({changed} differ); rerun "
                            "the same command to resume it, or pass --name to start another") from None
        complete_queue(storage, study, stored, echo)
        return study, False
    with warnings.catch_warnings():  # experimental in Optuna since 3.2, and what the dashboard reads
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([spec["metric"]])  # optuna-dashboard's axis names the objective
    study.set_user_attr("spec", spec)
    study.set_user_attr("spec_hash", spec_hash(spec))
    study.set_user_attr("total", spec["trials"] if spec["search"] == "tpe" else len(trial_plan(spec)))
    try:
        fill_queue(storage, study._study_id, lambda: planned_trials(spec))
    except QueueBusy:
        pass  # another process holds the lock to fill it; the workers complete it if that one dies
    return study, True


def planned_trials(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The queue's trials, for ``transactions.add_trials``: per planned grid trial its point as
    params and its plan entry as user attributes; for TPE, N trials holding only their key."""
    if spec["search"] == "tpe":
        return [{"user_attrs": {"key": f"trial {i}"}} for i in range(spec["trials"])]
    space = point_space(spec)
    return [{"params": {key: param_value(value) for key, value in attrs["point"].items()},
             "distributions": {key: space[key] for key in attrs["point"]}, "user_attrs": attrs}
            for attrs in trial_plan(spec)]


def point_space(spec: dict[str, Any]) -> dict[str, BaseDistribution]:
    """Each grid key's Optuna distribution (an auto grid's spans the λ chosen for it)."""
    return {grid.key: grid.distribution() if grid.auto is None else distribution(spec)
            for grid in map(parse_grid, spec["grids"])}


def wait_for_spec(study: optuna.Study) -> dict[str, Any]:
    """The stored spec; a creator running at the same moment may not have stored it yet."""
    deadline = time.monotonic() + SPEC_WAIT
    while "spec" not in study.user_attrs:
        if time.monotonic() > deadline:
            raise UserError(f"study '{study.study_name}' exists but was not made by reglab sweep (it "
                            "holds no spec); pass --name to start another")
        time.sleep(0.5)
    return study.user_attrs["spec"]


def queue_is_filled(study: optuna.Study) -> bool:
    return bool(study.user_attrs.get("enqueued"))


def complete_queue(storage: RDBStorage, study: optuna.Study, spec: dict[str, Any], echo: Echo | None = None) -> bool:
    """Fill the queue that a creator left unfilled (killed, or still at work); True once it is
    filled, False when another process held the queue lock for ``LOCK_WAIT`` seconds (a paused
    creator: call again later)."""
    if queue_is_filled(study):
        return True
    try:
        added = fill_queue(storage, study._study_id, lambda: planned_trials(spec))
    except QueueBusy:
        if echo is not None:
            echo(f"the queue of study '{study.study_name}' is being filled by another process; waiting")
        return False
    if added is not None and echo is not None:
        echo(f"the queue of study '{study.study_name}' was not filled (its creation was interrupted): "
             f"added its {added} trials")
    return True


def open_study(storage: RDBStorage, name: str) -> tuple[optuna.Study, dict[str, Any]]:
    """An existing reglab study and its spec, for workers and readers."""
    names = [s.study_name for s in storage.get_all_studies()]
    if name not in names:
        known = f"; studies there: {', '.join(sorted(names))}" if names else "; it holds no study"
        raise UserError(f"no study named '{name}' in {shown_url(storage.url)}{known}")
    study = optuna.load_study(study_name=name, storage=storage)
    return study, wait_for_spec(study)

