"""Reading a study's results: one :class:`TrialRecord` per point × seed × fold.

``load_study(target)`` takes a study folder (``studies/<name>``, whose ``study.db`` or
``storage.json`` says where the study is) or a pair ``(storage_url, study_name)`` and returns
``(spec, records)``.

A trial that was given up as stale (its worker died) and put back in the queue is superseded by
its retry and left out, and a point × seed × fold that storage holds twice (queued twice) counts
once; what remains is one record per point × seed × fold (a TPE trial gives one per seed × fold
of its point). Status is ``ok``, ``pruned`` (dropped by successive halving, Optuna's PRUNED
state, with the reason), ``failed`` (with the reason), ``running`` or ``waiting``. A grid study whose queue was never completed (its creator was killed while filling
it) also gets a ``waiting`` record for each planned trial not yet queued, so it never looks
complete.

Nothing derived from the results is stored as they come in (no per-point means kept up to date
by several workers): the point means and the chosen config are computed where they are read
(:mod:`reglab.study.choose`). :func:`store_choice` writes the choice once nothing is left to run,
as the study user attribute ``chosen`` and the trial user attribute ``chosen: true`` on the chosen
config's trials, which optuna-dashboard shows. A trial's summary and history are its system
attributes (``transactions.OUTCOME_ATTRS``; a study stored by an older reglab has them as user
attributes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import FrozenTrial, TrialState

from reglab.bounded import MAX_JSON_BYTES, load_json, read_bounded
from reglab.errors import UserError
from reglab.study.choose import choose_point, one_per_key
from reglab.study.points import trial_plan
from reglab.study.queue import open_study, queue_is_filled
from reglab.study.storage import default_url, open_storage, quiet_optuna
from reglab.study.transactions import OUTCOME_ATTRS, mark_chosen

STATES = {TrialState.COMPLETE: "ok", TrialState.PRUNED: "pruned", TrialState.FAIL: "failed",
          TrialState.RUNNING: "running", TrialState.WAITING: "waiting"}
LOST = "its worker stopped sending heartbeats"


@dataclass
class TrialRecord:
    point: dict[str, Any]
    label: str
    family: str
    lam: float | None
    seed: int
    fold: int | None
    status: str
    reason: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    run_dir: str | None = None
    config: dict[str, Any] | None = None  # the resolved config, when read from a run folder


def superseded(trials: list[FrozenTrial]) -> set[int]:
    """Numbers of the stale trials that were put back in the queue as a retry."""
    with quiet_optuna():
        return {n for t in trials for n in RetryHeartbeatStaleTrialCallback.retry_history(t)}


ENDED = ("ok", "failed", "pruned")  # a trial's statuses once it has ended: it never runs again
PREFERRED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING, TrialState.FAIL)


def current_trials(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """The latest attempt of every planned trial, one per key: should the storage hold a key
    twice (a queue filled twice by an older reglab), the complete one counts (else the pruned,
    running, waiting, failed one, the first of them)."""
    gone = superseded(trials)
    latest = [t for t in trials if t.number not in gone and t.state in STATES]
    best: dict[Any, FrozenTrial] = {}
    for t in sorted(latest, key=lambda t: (PREFERRED.index(t.state), t.number)):
        best.setdefault(t.user_attrs.get("key", t.number), t)
    return [t for t in latest if best[t.user_attrs.get("key", t.number)] is t]


def status_of(trial: FrozenTrial) -> tuple[str, str | None]:
    status = STATES[trial.state]
    if status == "pruned":
        return status, trial.user_attrs.get("reason")
    if status != "failed":
        return status, None
    return status, trial.user_attrs.get("reason") if trial.user_attrs.get("status") == "failed" else LOST


def trial_records(trial: FrozenTrial, spec: dict[str, Any]) -> list[TrialRecord]:
    attrs = {**trial.user_attrs, **{k: v for k, v in trial.system_attrs.items() if k in OUTCOME_ATTRS}}
    point = attrs.get("point", trial.params)
    base = {"point": point, "label": attrs.get("label", json.dumps(point)), "family": attrs.get("family", ""),
            "lam": attrs.get("lam")}
    status, reason = status_of(trial)
    if spec["search"] == "grid":
        return [TrialRecord(**base, seed=attrs["seed"], fold=attrs.get("fold"), status=status, reason=reason,
                            summary=attrs.get("summary", {}), history=attrs.get("history", []),
                            run_dir=attrs.get("run_dir"))]
    runs = attrs.get("runs") if status in ("ok", "failed") and attrs.get("runs") else None
    if runs is None:
        folds = range(spec["folds"]) if spec["folds"] else [None]
        return [TrialRecord(**base, seed=s, fold=f, status=status, reason=reason)
                for s in spec["seeds"] for f in folds]
    return [TrialRecord(**base, seed=r["seed"], fold=r["fold"], status=r["status"], reason=r["reason"],
                        summary=r["summary"], history=r["history"], run_dir=r["run_dir"]) for r in runs]


def study_records(trials: list[FrozenTrial], spec: dict[str, Any]) -> list[TrialRecord]:
    """One record per point × seed × fold: a key that storage holds twice counts once
    (:func:`reglab.study.choose.one_per_key`)."""
    return one_per_key(r for t in current_trials(trials) for r in trial_records(t, spec))


def progress(storage: RDBStorage, study_id: int, spec: dict[str, Any], total: int) -> dict[str, int]:
    """Counts of the study's trials by status, and ``unqueued``: planned trials not yet in the
    queue. A grid study whose queue is filled loads only its waiting, running, failed and pruned
    trials (done = total − the rest, as each planned trial has one current attempt; a pruned trial
    is done, and ``pruned`` says how many of the done were pruned); a TPE study counts the trials
    not yet asked for as waiting."""
    if spec["search"] == "grid":
        def load(state: TrialState) -> list[FrozenTrial]:
            return storage.get_all_trials(study_id, deepcopy=False, states=(state,))

        failed = sum(t.user_attrs.get("status") == "failed" for t in load(TrialState.FAIL))
        counts = {"waiting": len(load(TrialState.WAITING)), "running": len(load(TrialState.RUNNING)),
                  "failed": failed, "unqueued": 0}
        if not storage.get_study_user_attrs(study_id).get("enqueued"):
            queued = len(current_trials(storage.get_all_trials(study_id, deepcopy=False)))
            counts["unqueued"] = max(0, total - queued)
        return {"done": max(0, total - sum(counts.values())), **counts,
                "pruned": len(load(TrialState.PRUNED)), "total": total}
    counts = {"done": 0, "failed": 0, "running": 0, "waiting": 0, "unqueued": 0, "pruned": 0}
    names = {"ok": "done", "pruned": "done", "failed": "failed", "running": "running", "waiting": "waiting"}
    for trial in current_trials(storage.get_all_trials(study_id, deepcopy=False)):
        counts[names[STATES[trial.state]]] += 1
    counts["waiting"] += max(0, total - sum(counts.values()))
    return {**counts, "total": max(total, sum(counts.values()))}


def store_choice(storage: RDBStorage, study: optuna.Study, spec: dict[str, Any]) -> None:
    """Mark the choice of :func:`reglab.study.choose.choose_point` for optuna-dashboard
    (``transactions.mark_chosen``): the study user attribute ``chosen`` (``Choice.to_dict``; None
    before any result) and ``chosen: true`` on the current trials of its config, read from the
    storage at once: called when the study has nothing left to run, it is a function of the
    finished trials alone, so workers that call it at once write the same value."""
    trials = study.get_trials(deepcopy=False)
    choice = choose_point(spec, study_records(trials, spec))
    chosen = [] if choice is None else [t._trial_id for t in current_trials(trials)
                                        if t.user_attrs.get("label") == choice.label]
    mark_chosen(storage, storage.get_study_id_from_name(study.study_name),
                None if choice is None else choice.to_dict(), chosen)


def locate(target: str | Path | tuple[str, str]) -> tuple[str, str]:
    """``(storage_url, study_name)`` of a study folder or pair."""
    if isinstance(target, tuple):
        return target
    folder = Path(target)
    if (folder / "study.db").is_file():
        return default_url(folder), folder.name
    if (folder / "storage.json").is_file():
        path = folder / "storage.json"
        try:
            where = load_json(read_bounded(path, MAX_JSON_BYTES, "damaged"), str(path))
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} is damaged (not valid JSON: {exc})") from None
        if not (isinstance(where, dict) and isinstance(where.get("storage"), str)
                and isinstance(where.get("name"), str)):
            raise UserError(f"{path} is damaged (it must hold the strings 'storage' and 'name')")
        return where["storage"], where["name"]
    raise UserError(f"'{folder}' is not a study folder (no study.db or storage.json)")


def load_study(target: str | Path | tuple[str, str]) -> tuple[dict[str, Any], list[TrialRecord]]:
    """A study's spec (plus ``name`` and ``storage``) and its records."""
    url, name = locate(target)
    storage = open_storage(url, must_exist=True)
    study, spec = open_study(storage, name)
    spec = {**spec, "name": name, "storage": url}
    trials = study.get_trials(deepcopy=False)
    return spec, study_records(trials, spec) + unqueued_records(study, trials, spec)


def unqueued_records(study, trials: list[FrozenTrial], spec: dict[str, Any]) -> list[TrialRecord]:
    """A ``waiting`` record for each planned trial of a grid study that is not in its queue yet."""
    if queue_is_filled(study) or spec["search"] != "grid":
        return []
    present = {t.user_attrs.get("key") for t in trials}
    return [TrialRecord(point=a["point"], label=a["label"], family=a["family"], lam=a["lam"], seed=a["seed"],
                        fold=a["fold"], status="waiting") for a in trial_plan(spec) if a["key"] not in present]
