"""Creating, resuming and opening a study in its storage.

A grid study holds one trial per point × seed × fold, put in the queue (state WAITING) once, when
the study is created. Each trial carries its point as real Optuna params with the grid's
distributions (so optuna-dashboard and ``study.trials[i].params`` show them); the trial's user
attributes hold the rest (seed, fold, label, the run's outcome). Creation is guarded by the storage itself: the study is created with
``load_if_exists=False``, so of several ``reglab sweep`` commands started at once exactly one
creates it and fills the queue; the others find it, check that its spec is theirs, and resume.

The plan is recorded before the first trial is queued: the study attributes ``spec`` and
``total`` (the number of planned trials), and ``enqueued=False``. The creator sets ``enqueued``
to True when every trial is in. A creator killed half way leaves ``enqueued`` False, so every
reader knows the queue is short (``reglab studies`` and ``reglab report`` count the missing
trials as not yet queued) and the next ``reglab sweep`` or ``reglab worker`` completes the queue:
once no trial has been added for ``QUIET_WAIT`` seconds, it adds the planned trials that are
missing, found by their key. Two of them doing this at the very same moment after a kill could
both add a missing trial; one at a time (the usual case) adds each exactly once.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import optuna
from optuna.distributions import BaseDistribution
from optuna.exceptions import DuplicatedStudyError
from optuna.storages import RDBStorage
from optuna.trial import TrialState, create_trial

from reglab.errors import UserError
from reglab.study.grid import param_value, parse_grid
from reglab.study.points import trial_plan
from reglab.study.spec import canonical, differences, spec_hash
from reglab.study.storage import shown_url

SPEC_WAIT = 30.0  # seconds to wait for a concurrent creator to store its spec
QUIET_WAIT = 10.0  # seconds without a new trial after which an unfinished queue is filled in
PROGRESS_SECONDS = 2.0  # while a queue is filled, one progress line this often

Echo = Callable[[str], None]


def create_or_resume(storage: RDBStorage, name: str, spec: dict[str, Any],
                     echo: Echo | None = None) -> tuple[optuna.Study, bool]:
    """The study ``name`` with this spec, created (and its queue filled) if new; ``(study, created)``.

    A study of that name with another spec is refused. ``echo`` gets progress lines while a
    large queue is filled."""
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
        finish_queue(study, stored, echo)
        return study, False
    plan = trial_plan(spec) if spec["search"] == "grid" else []
    study.set_user_attr("spec", spec)
    study.set_user_attr("spec_hash", spec_hash(spec))
    study.set_user_attr("total", len(plan) if plan else spec["trials"])
    study.set_user_attr("enqueued", False)
    fill(study, spec, plan, echo)
    study.set_user_attr("enqueued", True)
    return study, True


def point_space(spec: dict[str, Any]) -> dict[str, BaseDistribution]:
    """Each grid key's Optuna distribution."""
    return {grid.key: grid.distribution() for grid in map(parse_grid, spec["grids"])}


def enqueue(study: optuna.Study, space: dict[str, BaseDistribution], attrs: dict[str, Any]) -> None:
    """Add one planned grid trial to the queue: its point as params, ``attrs`` as user attributes."""
    params = {key: param_value(value) for key, value in attrs["point"].items()}
    study.add_trial(create_trial(state=TrialState.WAITING, params=params,
                                 distributions={key: space[key] for key in params}, user_attrs=attrs))


def fill(study: optuna.Study, spec: dict[str, Any], trials: list[dict[str, Any]], echo: Echo | None) -> None:
    """Queue the planned grid trials ``trials``, with a progress line every ``PROGRESS_SECONDS``."""
    space, last = point_space(spec), time.monotonic()
    for i, attrs in enumerate(trials, start=1):
        enqueue(study, space, attrs)
        if echo is not None and time.monotonic() - last > PROGRESS_SECONDS:
            echo(f"queueing trials: {i}/{len(trials)}")
            last = time.monotonic()


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
    return bool(study.user_attrs.get("enqueued")) or study.user_attrs["spec"]["search"] != "grid"


def finish_queue(study: optuna.Study, spec: dict[str, Any], echo: Echo | None = None) -> None:
    """Resume a creation that was interrupted: once no trial has been added for ``QUIET_WAIT``
    seconds, enqueue the planned trials that are missing."""
    if queue_is_filled(study):
        return
    if echo is not None:
        echo(f"the queue of study '{study.study_name}' is not complete (its creation was interrupted); "
             "completing it")
    count, quiet_since = -1, time.monotonic()
    while time.monotonic() - quiet_since < QUIET_WAIT:
        time.sleep(0.5)
        if study.user_attrs.get("enqueued"):
            return
        now = len(study.get_trials(deepcopy=False))
        if now != count:
            count, quiet_since = now, time.monotonic()
    present = {t.user_attrs.get("key") for t in study.get_trials(deepcopy=False)}
    missing = [attrs for attrs in trial_plan(spec) if attrs["key"] not in present]
    fill(study, spec, missing, echo)
    if echo is not None:
        echo(f"added the {len(missing)} missing trials")
    study.set_user_attr("enqueued", True)


def open_study(storage: RDBStorage, name: str) -> tuple[optuna.Study, dict[str, Any]]:
    """An existing reglab study and its spec, for workers and readers."""
    names = [s.study_name for s in storage.get_all_studies()]
    if name not in names:
        known = f"; studies there: {', '.join(sorted(names))}" if names else "; it holds no study"
        raise UserError(f"no study named '{name}' in {shown_url(storage.url)}{known}")
    study = optuna.load_study(study_name=name, storage=storage)
    return study, wait_for_spec(study)


def release(storage: RDBStorage, trial_id: int) -> None:
    """Put a claimed trial back in the queue (its worker was interrupted)."""
    try:
        storage.set_trial_state_values(trial_id, TrialState.WAITING)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass
