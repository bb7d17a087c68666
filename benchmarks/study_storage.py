"""Storage time per trial of a study, one call per write (Optuna's API) against one transaction
per batch (``reglab.study.transactions``), side by side in one process, on SQLite and PostgreSQL.

A study of ``--trials`` planned ``ridge-gd`` trials (≥ 200) is queued, then every trial is claimed
and finished in batches of ``--batch``, exactly as a worker stores them: the outcome of a real
``ridge-gd`` run (its user attributes, its per-epoch objective as intermediate values, the value)
is stored for each trial. Training is left out: only the storage is timed. The one-call-per-write
way stores only the first ``--baseline`` trials (its per-trial time, with the longest waiting
lists to read, is a little lower than over the whole study: its ratio is understated).

* ``per call``: what a worker did before: per batch the waiting list (``get_all_trials``); per
  trial a heartbeat, the WAITING → RUNNING change and the ``worker`` attribute to claim it; each
  user attribute, each intermediate value and the state to finish it; the queue filled one
  ``add_trial`` at a time.
* ``one transaction``: ``transactions.fill_queue``; per batch ``waiting``, ``claim`` and ``finish``.

The target is ≤ 20 ms of storage per trial on both backends. PostgreSQL is used when
``REGLAB_TEST_POSTGRES_URL`` (or ``--postgres URL``) names a server.

    python benchmarks/study_storage.py
    python benchmarks/study_storage.py --trials 400 --batch 16
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
import uuid
from pathlib import Path

import optuna
from optuna.trial import TrialState, create_trial

from reglab.study import transactions
from reglab.study.execute import train_all
from reglab.study.queue import create_or_resume, planned_trials, point_space
from reglab.study.spec import config_for, make_spec
from reglab.study.storage import default_url, open_storage
from reglab.study.worker import learning_curve

SET = ["train.plots=false", "train.save_weights=false"]


def spec_of(trials: int) -> dict:
    seeds = max(1, trials // 20)
    return make_spec("ridge-gd", SET, ["reg.l2=1e-4:1:log:20"], f"0-{seeds - 1}", None)


def one_outcome(spec: dict, root: Path) -> tuple[dict, float, dict[int, float]]:
    """A real run's outcome, its objective and its curve, as a worker stores them."""
    out = train_all([config_for(spec, {"reg.l2": 1e-3}, 0, None)], root, False)[0]
    return out, out["summary"][spec["metric"]], learning_curve([out], spec["metric"])


def per_call(storage, name: str, spec: dict, batch: int, outcome, stored: int) -> tuple[float, float]:
    """(queue seconds per trial, claim + finish seconds per trial) with one storage call per write;
    only the first ``stored`` trials are claimed and finished (the rest would take minutes)."""
    out, value, curve = outcome
    study = optuna.create_study(storage=storage, study_name=name, direction=spec["direction"])
    study.set_user_attr("spec", spec)
    started = time.perf_counter()
    space = point_space(spec)
    for trial in planned_trials(spec):
        study.add_trial(create_trial(state=TrialState.WAITING, params=trial["params"],
                                     distributions={k: space[k] for k in trial["params"]}, user_attrs=trial["user_attrs"]))
    queued = time.perf_counter()
    study_id, done = storage.get_study_id_from_name(name), 0
    while done < stored:
        waiting = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))
        ids = []
        for t in waiting[:batch]:
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
            storage.record_heartbeat(trial_id)
            if storage.set_trial_state_values(trial_id, TrialState.RUNNING):
                storage.set_trial_user_attr(trial_id, "worker", {"host": "here", "pid": 0})
                ids.append(trial_id)
        for trial_id in ids:
            for key, item in out.items():
                storage.set_trial_user_attr(trial_id, key, item)
            for epoch, item in curve.items():
                storage.set_trial_intermediate_value(trial_id, epoch, item)
            storage.set_trial_state_values(trial_id, TrialState.COMPLETE, values=[value])
        done += len(ids)
    n = len(planned_trials(spec))
    return (queued - started) / n, (time.perf_counter() - queued) / done


def one_transaction(storage, name: str, spec: dict, batch: int, outcome, stored: int) -> tuple[float, float]:
    """(queue seconds per trial, claim + finish seconds per trial) with one transaction per step;
    every trial is claimed and finished."""
    out, value, curve = outcome
    started = time.perf_counter()
    create_or_resume(storage, name, spec)
    queued = time.perf_counter()
    study_id = storage.get_study_id_from_name(name)
    while waiting := transactions.waiting(storage, study_id):
        ids = transactions.claim(storage, [t.trial_id for t in waiting[:batch]], batch, {"host": "here", "pid": 0})
        transactions.finish(storage, [(i, out, value, curve) for i in ids])
    n = len(planned_trials(spec))
    return (queued - started) / n, (time.perf_counter() - queued) / n


def check(storage, name: str, n: int, stored: int) -> None:
    trials = storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False)
    complete = sum(t.state == TrialState.COMPLETE for t in trials)
    assert len(trials) == n and complete >= stored, name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--baseline", type=int, default=40, help="trials stored one call per write")
    parser.add_argument("--postgres", default=os.environ.get("REGLAB_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    spec = spec_of(args.trials)
    n = len(planned_trials(spec))
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; optuna {optuna.__version__}; "
          f"{n} trials of ridge-gd, batches of {args.batch}")
    with tempfile.TemporaryDirectory() as tmp:
        outcome = one_outcome(spec, Path(tmp) / "runs")
        backends = [("SQLite", lambda: open_storage(default_url(Path(tmp))))]
        if args.postgres:
            backends.append(("PostgreSQL", lambda: open_storage(args.postgres)))
        print(f"{'backend':<11} {'way':<16} {'queue ms/trial':>15} {'store ms/trial':>15}")
        for backend, open_it in backends:
            storage, rows = open_it(), {}
            for way, fn, stored in (("per call", per_call, args.baseline), ("one transaction", one_transaction, n)):
                name = f"bench-{uuid.uuid4().hex[:8]}"
                rows[way] = fn(storage, name, spec, args.batch, outcome, stored)
                check(storage, name, n, stored)
                print(f"{backend:<11} {way:<16} {1000 * rows[way][0]:>15.1f} {1000 * rows[way][1]:>15.1f}")
                if backend == "PostgreSQL":
                    optuna.delete_study(study_name=name, storage=storage)
            (q0, s0), (q1, s1) = rows["per call"], rows["one transaction"]
            print(f"{backend:<11} {'ratio':<16} {q0 / q1:>14.1f}× {s0 / s1:>14.1f}×")


if __name__ == "__main__":
    main()
