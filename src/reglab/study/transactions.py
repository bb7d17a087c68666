"""The study's writes that must be all-or-nothing, each one transaction on Optuna's RDB tables.

Optuna's storage API commits every call on its own: filling a queue of 200 trials is about 2000
commits, storing one outcome about 60 (its user attributes, its intermediate values, its state),
and failing a stale trial commits the failure before its retry is created. Here each of these is
one transaction, written with Optuna's own table models (``optuna.storages._rdb.models``), so
that what Optuna, optuna-dashboard and reglab read is exactly what Optuna itself would store:

* :func:`fill_queue`: every missing planned trial, and the study attribute ``enqueued``, at once,
  under the study's queue lock. A creator killed (or paused) half way has added nothing that
  anyone can see; whoever holds the lock next adds each missing key exactly once.
* :func:`claim`: up to ``limit`` of the given waiting trials become RUNNING with a heartbeat and
  the claiming worker's identity; a trial another worker took is skipped (PostgreSQL:
  ``FOR UPDATE SKIP LOCKED``; SQLite: the transaction holds the write lock).
* :func:`finish`: a batch's outcomes (user attributes, intermediate values, value, state) at once;
  a trial that is no longer RUNNING (given up as stale meanwhile) is left alone. A run pruned by
  successive halving (its attribute ``status`` is ``pruned``) becomes PRUNED, without a value.
* :func:`mark_chosen`: the study attribute ``chosen`` and the trial attribute ``chosen: true`` on
  the chosen config's trials (and on no other), at once;
* :func:`fail_stale`: a running trial whose last heartbeat is older than the grace period becomes
  FAIL and its retry (a WAITING copy with Optuna's ``failed_trial`` and ``retry_history`` system
  attributes, as ``RetryHeartbeatStaleTrialCallback`` writes them) is created in the same
  transaction, so no kill can leave a failed trial without its retry.

What optuna-dashboard shows of a trial stays plain and small: a user attribute without a value
(None) is not written, and a run's numbers (``OUTCOME_ATTRS``: its summary, its history, a TPE
trial's runs) are system attributes, which Optuna keeps and the dashboard does not list.

The queue lock is PostgreSQL's transaction-scoped advisory lock on (``LOCK_SPACE``, study id),
waited for at most ``LOCK_WAIT`` seconds (``lock_timeout``); on SQLite every transaction opens
with ``BEGIN IMMEDIATE`` (see ``storage.py``), which holds the database's write lock. Both are
released by the server when the holder's connection dies, so a killed holder blocks nobody.
"""

from __future__ import annotations

import datetime
import json
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import sqlalchemy
from optuna.distributions import BaseDistribution, distribution_to_json, json_to_distribution
from optuna.storages import RDBStorage
from optuna.storages._rdb import models
from optuna.trial import TrialState
from sqlalchemy import orm

LOCK_SPACE = 0x726C  # the first key of reglab's advisory locks ("rl")
LOCK_WAIT = 30.0  # seconds to wait for another process's queue lock
OUTCOME_ATTRS = ("summary", "history", "runs")  # stored as system attributes (module docstring)


class QueueBusy(Exception):
    """Another process held the study's queue lock for longer than ``LOCK_WAIT`` seconds."""


def is_postgres(storage: RDBStorage) -> bool:
    return storage.engine.dialect.name == "postgresql"


@contextmanager
def transaction(storage: RDBStorage) -> Iterator[orm.Session]:
    """One transaction: committed when the block ends, rolled back if it raises."""
    with orm.Session(storage.engine, expire_on_commit=False) as session, session.begin():
        yield session


def lock_queue(session: orm.Session, storage: RDBStorage, study_id: int) -> None:
    """Take the study's queue lock for the rest of the transaction (see the module's docstring);
    :class:`QueueBusy` after ``LOCK_WAIT`` seconds."""
    if not is_postgres(storage):
        return  # BEGIN IMMEDIATE took the write lock
    session.execute(sqlalchemy.text(f"SET LOCAL lock_timeout = '{int(LOCK_WAIT * 1000)}ms'"))
    try:
        with session.begin_nested():
            session.execute(sqlalchemy.text("SELECT pg_advisory_xact_lock(:space, :study)"),
                            {"space": LOCK_SPACE, "study": study_id})
    except sqlalchemy.exc.OperationalError as exc:
        if getattr(exc.orig, "pgcode", None) == "55P03":  # lock_not_available
            raise QueueBusy() from None
        raise
    session.execute(sqlalchemy.text("SET LOCAL lock_timeout = 0"))


def study_attr(session: orm.Session, study_id: int, key: str) -> Any:
    row = session.scalars(sqlalchemy.select(models.StudyUserAttributeModel).where(
        models.StudyUserAttributeModel.study_id == study_id, models.StudyUserAttributeModel.key == key)).first()
    return None if row is None else json.loads(row.value_json)


def set_study_attr(session: orm.Session, study_id: int, key: str, value: Any) -> None:
    row = session.scalars(sqlalchemy.select(models.StudyUserAttributeModel).where(
        models.StudyUserAttributeModel.study_id == study_id, models.StudyUserAttributeModel.key == key)).first()
    if row is None:
        session.add(models.StudyUserAttributeModel(study_id=study_id, key=key, value_json=json.dumps(value)))
    else:
        row.value_json = json.dumps(value)


def trial_keys(session: orm.Session, study_id: int) -> set[str]:
    """The ``key`` user attribute of every trial of the study."""
    rows = session.execute(
        sqlalchemy.select(models.TrialUserAttributeModel.value_json)
        .join(models.TrialModel, models.TrialModel.trial_id == models.TrialUserAttributeModel.trial_id)
        .where(models.TrialModel.study_id == study_id, models.TrialUserAttributeModel.key == "key"))
    return {json.loads(value) for (value,) in rows}


def add_trials(session: orm.Session, study_id: int, trials: list[dict[str, Any]]) -> None:
    """Insert WAITING trials, each given as ``{"params", "distributions", "user_attrs",
    "system_attrs"}``, numbered after the study's last trial. The caller holds the study row's
    lock (:func:`lock_study`), as Optuna's own trial creation does, so numbers never collide."""
    number = session.scalar(sqlalchemy.select(sqlalchemy.func.count()).select_from(models.TrialModel)
                            .where(models.TrialModel.study_id == study_id))
    rows = [models.TrialModel(study_id=study_id, number=number + i, state=TrialState.WAITING)
            for i in range(len(trials))]
    session.add_all(rows)
    session.flush()
    params, attrs = [], []
    for row, trial in zip(rows, trials):
        for name, value in trial.get("params", {}).items():
            dist: BaseDistribution = trial["distributions"][name]
            params.append({"trial_id": row.trial_id, "param_name": name, "param_value": dist.to_internal_repr(value),
                           "distribution_json": distribution_to_json(dist)})
        for model, key in ((models.TrialUserAttributeModel, "user_attrs"), (models.TrialSystemAttributeModel, "system_attrs")):
            attrs += [(model, {"trial_id": row.trial_id, "key": k, "value_json": json.dumps(v)})
                      for k, v in trial.get(key, {}).items() if v is not None]
    if params:
        session.execute(sqlalchemy.insert(models.TrialParamModel), params)
    for model in (models.TrialUserAttributeModel, models.TrialSystemAttributeModel):
        values = [v for m, v in attrs if m is model]
        if values:
            session.execute(sqlalchemy.insert(model), values)


def lock_study(session: orm.Session, study_id: int) -> None:
    """Lock the study's row for the transaction, as Optuna does before numbering a new trial."""
    session.execute(sqlalchemy.select(models.StudyModel.study_id).where(models.StudyModel.study_id == study_id)
                    .with_for_update())


def fill_queue(storage: RDBStorage, study_id: int, plan: Callable[[], list[dict[str, Any]]]) -> int | None:
    """Under the queue lock: unless the study's ``enqueued`` attribute is already true, add each
    planned trial (``plan()``, as for :func:`add_trials`, its key in ``user_attrs["key"]``) whose
    key no trial holds, and set ``enqueued``; all in one transaction. The number added, or None
    when the queue was filled already. :class:`QueueBusy` when the lock stays taken."""
    with transaction(storage) as session:
        lock_queue(session, storage, study_id)
        if study_attr(session, study_id, "enqueued"):
            return None
        lock_study(session, study_id)
        present = trial_keys(session, study_id)
        missing = [t for t in plan() if t["user_attrs"]["key"] not in present]
        add_trials(session, study_id, missing)
        set_study_attr(session, study_id, "enqueued", True)
        return len(missing)


@dataclass
class Waiting:
    """A waiting trial as a worker needs it: ids, user attributes, params (external values)."""

    trial_id: int
    number: int
    user_attrs: dict[str, Any]
    params: dict[str, Any]


def waiting(storage: RDBStorage, study_id: int) -> list[Waiting]:
    """The study's WAITING trials in number order, read in three queries (Optuna's
    ``get_all_trials`` also reads every value, intermediate value and system attribute)."""
    with transaction(storage) as session:
        rows = session.execute(sqlalchemy.select(models.TrialModel.trial_id, models.TrialModel.number)
                               .where(models.TrialModel.study_id == study_id,
                                      models.TrialModel.state == TrialState.WAITING)
                               .order_by(models.TrialModel.number)).all()
        trials = {trial_id: Waiting(trial_id, number, {}, {}) for trial_id, number in rows}
        if not trials:
            return []
        for attr in session.scalars(sqlalchemy.select(models.TrialUserAttributeModel)
                                    .where(models.TrialUserAttributeModel.trial_id.in_(list(trials)))):
            trials[attr.trial_id].user_attrs[attr.key] = json.loads(attr.value_json)
        for param in session.scalars(sqlalchemy.select(models.TrialParamModel)
                                     .where(models.TrialParamModel.trial_id.in_(list(trials)))):
            dist = json_to_distribution(param.distribution_json)
            trials[param.trial_id].params[param.param_name] = dist.to_external_repr(param.param_value)
        return list(trials.values())


def now(session: orm.Session) -> datetime.datetime:
    """The database's clock, naive (as Optuna stores heartbeats)."""
    return session.execute(sqlalchemy.func.now()).scalar_one().replace(tzinfo=None)


def beat(session: orm.Session, trial_ids: list[int]) -> None:
    """Record a heartbeat now for each trial (a row per trial, created on its first beat)."""
    moment = now(session)
    have = set(session.scalars(sqlalchemy.select(models.TrialHeartbeatModel.trial_id)
                               .where(models.TrialHeartbeatModel.trial_id.in_(trial_ids))))
    if have:
        session.execute(sqlalchemy.update(models.TrialHeartbeatModel)
                        .where(models.TrialHeartbeatModel.trial_id.in_(have)).values(heartbeat=moment))
    session.add_all(models.TrialHeartbeatModel(trial_id=i, heartbeat=moment) for i in trial_ids if i not in have)


def heartbeat(storage: RDBStorage, trial_ids: list[int]) -> None:
    """One heartbeat for each of the trials, in one transaction."""
    if trial_ids:
        with transaction(storage) as session:
            beat(session, trial_ids)


def set_attrs(session: orm.Session, model, trial_id: int, attrs: dict[str, Any]) -> None:
    """Replace the trial's attributes of these keys (user or system, by ``model``); a key whose
    value is None is removed."""
    session.execute(sqlalchemy.delete(model).where(model.trial_id == trial_id, model.key.in_(list(attrs))))
    rows = [{"trial_id": trial_id, "key": k, "value_json": json.dumps(v)} for k, v in attrs.items() if v is not None]
    if rows:
        session.execute(sqlalchemy.insert(model), rows)


def set_user_attrs(session: orm.Session, trial_id: int, attrs: dict[str, Any]) -> None:
    """Store a trial's attributes: ``OUTCOME_ATTRS`` as system attributes, the rest as user ones."""
    set_attrs(session, models.TrialUserAttributeModel, trial_id, {k: v for k, v in attrs.items() if k not in OUTCOME_ATTRS})
    set_attrs(session, models.TrialSystemAttributeModel, trial_id, {k: v for k, v in attrs.items() if k in OUTCOME_ATTRS})


def claim(storage: RDBStorage, trial_ids: list[int], limit: int, worker: dict[str, Any]) -> list[int]:
    """Up to ``limit`` of ``trial_ids`` (in their order) that are still WAITING become RUNNING,
    with a heartbeat and the user attribute ``worker``; their ids. One transaction."""
    with transaction(storage) as session:
        query = sqlalchemy.select(models.TrialModel).where(models.TrialModel.trial_id.in_(trial_ids),
                                                           models.TrialModel.state == TrialState.WAITING)
        if is_postgres(storage):
            query = query.with_for_update(skip_locked=True)
        free = {row.trial_id: row for row in session.scalars(query)}
        won = [i for i in trial_ids if i in free][:limit]
        started = datetime.datetime.now()
        for trial_id in won:
            free[trial_id].state = TrialState.RUNNING
            free[trial_id].datetime_start = started
            set_user_attrs(session, trial_id, {"worker": worker})
        if won:
            beat(session, won)
        return won


def release(storage: RDBStorage, trial_ids: list[int]) -> None:
    """Put the trials that are still RUNNING back in the queue (their worker was interrupted)."""
    with transaction(storage) as session:
        session.execute(sqlalchemy.update(models.TrialModel).where(
            models.TrialModel.trial_id.in_(trial_ids), models.TrialModel.state == TrialState.RUNNING)
            .values(state=TrialState.WAITING))


def finish(storage: RDBStorage, outcomes: list[tuple[int, dict[str, Any], float | None, dict[int, float]]]) -> list[bool]:
    """Store each ``(trial_id, user attributes, value, intermediate values)`` and finish the trial:
    COMPLETE with the value, PRUNED when the attributes say ``"status": "pruned"``, else FAIL when
    the value is None. One transaction; per trial, False when it was
    no longer RUNNING (given up as stale: its retry runs it again) and was left alone."""
    ids = [trial_id for trial_id, *_ in outcomes]
    with transaction(storage) as session:
        rows = {row.trial_id: row for row in session.scalars(
            sqlalchemy.select(models.TrialModel).where(models.TrialModel.trial_id.in_(ids)).with_for_update())}
        done, values, steps, ended = [], [], [], datetime.datetime.now()
        for trial_id, attrs, value, curve in outcomes:
            row = rows[trial_id]
            if row.state != TrialState.RUNNING:
                done.append(False)
                continue
            set_user_attrs(session, trial_id, attrs)
            for step, item in curve.items():
                stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(item)
                steps.append({"trial_id": trial_id, "step": step, "intermediate_value": stored,
                              "intermediate_value_type": kind})
            if value is not None:
                stored, kind = models.TrialValueModel.value_to_stored_repr(value)
                values.append({"trial_id": trial_id, "objective": 0, "value": stored, "value_type": kind})
            row.state = (TrialState.PRUNED if attrs.get("status") == "pruned" else
                         TrialState.FAIL if value is None else TrialState.COMPLETE)
            row.datetime_complete = ended
            done.append(True)
        if steps:
            session.execute(sqlalchemy.insert(models.TrialIntermediateValueModel), steps)
        if values:
            session.execute(sqlalchemy.insert(models.TrialValueModel), values)
        return done


def mark_chosen(storage: RDBStorage, study_id: int, choice: dict[str, Any] | None, trial_ids: list[int]) -> None:
    """In one transaction: the study attribute ``chosen`` (the choice, None before any), and the
    trial user attribute ``chosen: true`` on ``trial_ids`` (the chosen config's trials), removed from
    every other trial of the study. Written to the tables, as Optuna refuses to change a finished
    trial. Under the study row's lock, so that workers that end at once write one after the other
    (else, in PostgreSQL, the second would not see the first's rows and insert them twice)."""
    with transaction(storage) as session:
        lock_study(session, study_id)
        set_study_attr(session, study_id, "chosen", choice)
        ids = sqlalchemy.select(models.TrialModel.trial_id).where(models.TrialModel.study_id == study_id)
        session.execute(sqlalchemy.delete(models.TrialUserAttributeModel).where(
            models.TrialUserAttributeModel.trial_id.in_(ids), models.TrialUserAttributeModel.key == "chosen"))
        if trial_ids:
            session.execute(sqlalchemy.insert(models.TrialUserAttributeModel),
                            [{"trial_id": i, "key": "chosen", "value_json": "true"} for i in trial_ids])


def attrs_of(session: orm.Session, model, trial_id: int) -> dict[str, Any]:
    return {row.key: json.loads(row.value_json) for row in session.scalars(
        sqlalchemy.select(model).where(model.trial_id == trial_id))}


def fail_stale(storage: RDBStorage, study_id: int, grace: float) -> list[int]:
    """Fail the study's running trials whose last heartbeat is more than ``grace`` seconds old,
    and queue a retry of each, in one transaction; the numbers of the trials failed."""
    with transaction(storage) as session:
        query = (sqlalchemy.select(models.TrialModel)
                 .join(models.TrialHeartbeatModel, models.TrialHeartbeatModel.trial_id == models.TrialModel.trial_id)
                 .where(models.TrialModel.study_id == study_id, models.TrialModel.state == TrialState.RUNNING,
                        models.TrialHeartbeatModel.heartbeat < now(session) - datetime.timedelta(seconds=grace)))
        if is_postgres(storage):
            query = query.with_for_update(of=models.TrialModel, skip_locked=True)
        stale = list(session.scalars(query))
        if not stale:
            return []
        lock_study(session, study_id)
        ended, retries = datetime.datetime.now(), []
        for row in stale:
            row.state, row.datetime_complete = TrialState.FAIL, ended
            system = attrs_of(session, models.TrialSystemAttributeModel, row.trial_id)
            system = {"failed_trial": row.number, **system,
                      "retry_history": [*system.get("retry_history", []), row.number]}
            params = session.scalars(sqlalchemy.select(models.TrialParamModel)
                                     .where(models.TrialParamModel.trial_id == row.trial_id)).all()
            dists = {p.param_name: json_to_distribution(p.distribution_json) for p in params}
            retries.append({"params": {p.param_name: dists[p.param_name].to_external_repr(p.param_value) for p in params},
                            "distributions": dists, "system_attrs": system,
                            "user_attrs": attrs_of(session, models.TrialUserAttributeModel, row.trial_id)})
        add_trials(session, study_id, retries)
        return [row.number for row in stale]

