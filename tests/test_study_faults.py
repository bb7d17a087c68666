"""Studies under injected faults, on SQLite and PostgreSQL: a process killed or paused at a step
boundary (between failing a stale trial and queueing its retry, in the middle of filling a queue),
PostgreSQL restarted under four workers, six workers asking TPE for four trials, and a soak of
random SIGKILL/SIGTERM kills. Each ends with every planned key complete exactly once.

A fault is injected by a small script run as its own process (:data:`FAULT`): it hooks the
storage's SQL statements (SQLAlchemy events) and kills or stops itself at the boundary named."""

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from reglab.report import build_report
from reglab.study.points import trial_plan
from reglab.study.queue import create_or_resume
from reglab.study.records import load_study
from reglab.study.spec import make_spec
from reglab.study.storage import default_url, open_storage
from reglab.study.worker import Worker
from cli_runner import cli

FAST = ["train.epochs=20", "train.plots=false", "train.save_weights=false"]

FAULT = r"""
import json, os, signal, sys
import sqlalchemy
from reglab.study import queue
from reglab.study.queue import create_or_resume
from reglab.study.storage import open_storage
from reglab.study.sweep import interrupt
from reglab.study.worker import Worker

args = json.loads(sys.argv[1])
storage = open_storage(args["url"], heartbeat=1, grace=2)
queue.QUIET_WAIT = 0.5  # an older reglab waited this long before completing another's queue
signal.signal(signal.SIGTERM, interrupt)  # as `reglab worker` does
state = {"rows": 0, "failed": False}

def strike():
    os.kill(os.getpid(), getattr(signal, args["signal"]))

@sqlalchemy.event.listens_for(storage.engine, "after_cursor_execute")
def watch(conn, cursor, statement, parameters, context, executemany):
    text = statement.lstrip().upper()
    if args["at"] == "fill" and text.startswith("INSERT INTO TRIAL_USER_ATTRIBUTES"):
        state["rows"] += len(parameters) if executemany else 1
        if state["rows"] >= args["rows"] and not state.get("struck"):
            state["struck"] = True
            strike()
    if args["at"] == "retry" and text.startswith("UPDATE TRIALS") and "FAIL" in repr(parameters):
        state["failed"] = True

@sqlalchemy.event.listens_for(storage.engine, "begin")
def next_transaction(conn):
    if state["failed"]:  # the transaction that failed the stale trial is committed
        strike()

if args["at"] == "fill":
    create_or_resume(storage, args["name"], args["spec"])
else:
    Worker(storage, args["name"], args["root"]).run()
"""


def fault(url: str, name: str, at: str, sig: str, **kw) -> subprocess.Popen:
    args = json.dumps({"url": url, "name": name, "at": at, "signal": sig, **kw})
    return subprocess.Popen([sys.executable, "-c", FAULT, args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)


def worker(url: str, name: str, folder: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "reglab.cli", "worker", "--storage", url, "--study", name,
                             "--dir", str(folder), "--heartbeat", "1", "--grace", "2", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def place(request, tmp_path):
    """``(url, name)`` of a fresh study place on each backend; a PostgreSQL study is deleted after."""
    name = f"f-{uuid.uuid4().hex[:8]}"
    if request.param == "sqlite":
        (tmp_path / "studies" / name).mkdir(parents=True)
        yield default_url(tmp_path / "studies" / name), name
        return
    url = os.environ.get("REGLAB_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("REGLAB_TEST_POSTGRES_URL is not set")
    yield url, name
    try:
        optuna.delete_study(study_name=name, storage=open_storage(url))
    except KeyError:
        pass


def keys_complete(storage, name: str) -> Counter:
    trials = storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False)
    return Counter(t.user_attrs["key"] for t in trials if t.state == TrialState.COMPLETE)


def planned(spec) -> Counter:
    return Counter(a["key"] for a in trial_plan(spec))


def stopped(pid: int) -> bool:
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] == "T"


@pytest.mark.parametrize("sig", ["SIGKILL", "SIGTERM"])
def test_a_kill_between_failing_a_stale_trial_and_queueing_its_retry_loses_nothing(place, sig, tmp_path):
    url, name = place
    storage = open_storage(url, heartbeat=1, grace=2)
    spec = make_spec("ridge-gd", FAST, ["reg.l2=1e-3,1e-1"], "0-1", None)
    create_or_resume(storage, name, spec)
    study_id = storage.get_study_id_from_name(name)
    victim = storage.get_all_trials(study_id, deepcopy=False)[0]
    storage.record_heartbeat(victim._trial_id)  # a worker claimed it, then died
    storage.set_trial_state_values(victim._trial_id, TrialState.RUNNING)
    time.sleep(3.5)  # older than the grace period
    proc = fault(url, name, "retry", sig, root=str(tmp_path / "runs"))
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, out  # the fault struck
    assert storage.get_trial(victim._trial_id).state == TrialState.FAIL
    Worker(storage, name, tmp_path / "runs", echo=lambda line: None).run()
    assert keys_complete(storage, name) == planned(spec)


@pytest.mark.parametrize("sig", ["SIGSTOP", "SIGKILL"])
def test_a_creator_paused_or_killed_while_filling_the_queue_adds_no_key_twice(place, sig, tmp_path):
    url, name = place
    spec = make_spec("ridge-gd", FAST, ["reg.l2=1e-4:1:log:15"], "0-1", None)
    creator = fault(url, name, "fill", sig, rows=40, spec=spec)
    try:
        deadline = time.monotonic() + 120
        while creator.poll() is None and not stopped(creator.pid):
            assert time.monotonic() < deadline, "the creator never reached the fault"
            time.sleep(0.05)
        storage = open_storage(url, heartbeat=1, grace=2)
        folder = tmp_path / "studies"
        workers = [worker(url, name, folder) for _ in range(2)]
        if sig == "SIGSTOP":
            time.sleep(4)  # the workers find a study whose queue is being filled
            creator.send_signal(signal.SIGCONT)
        outputs = [w.communicate(timeout=300)[0] for w in workers]
        creator.communicate(timeout=120)
    finally:
        creator.kill()
    assert [w.returncode for w in workers] == [0, 0], outputs
    trials = storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False)
    assert Counter(t.user_attrs["key"] for t in trials) == planned(spec)  # each planned key queued once
    assert keys_complete(storage, name) == planned(spec)


def test_a_creator_killed_mid_fill_leaves_an_unqueued_study_that_studies_and_report_see(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "studies" / "cut").mkdir(parents=True)
    url = default_url(tmp_path / "studies" / "cut")
    spec = make_spec("ridge-gd", FAST, ["reg.l2=1e-4:1:log:15"], "0-1", None)
    creator = fault(url, "cut", "fill", "SIGKILL", rows=40, spec=spec)
    creator.communicate(timeout=120)
    assert creator.returncode == -signal.SIGKILL
    code, out, err = cli(monkeypatch, capsys, "studies")
    row = next(line for line in out.splitlines() if "cut" in line)
    assert [c.strip() for c in row.split("│")[1:10]] == ["cut", "ridge-gd", "grid", "0", "0", "0", "0", "30", "30"]
    code, out, err = cli(monkeypatch, capsys, "report", "studies/cut", "--out", "report")
    assert code == 2 and "no finished trial yet: 30 waiting" in err, err
    code, out, err = cli(monkeypatch, capsys, "worker", "--study", "cut")
    assert code == 0 and "added its 30 trials" in out and "30 trials trained here" in out, err
    storage = open_storage(url)
    assert keys_complete(storage, "cut") == planned(spec)


def test_tpe_asked_for_four_trials_runs_four_with_six_workers_started_at_once(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "reglab.cli", "sweep", "ridge-gd", *FAST, "--grid",
                           "reg.l2=1e-4:1:log:5", "--search", "tpe", "--trials", "4", "--workers", "6",
                           "--name", "tpe6"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    storage = open_storage(default_url(tmp_path / "studies" / "tpe6"))
    trials = storage.get_all_trials(storage.get_study_id_from_name("tpe6"), deepcopy=False)
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    assert len({t.params["reg.l2"] for t in trials}) == 4


def pg_cluster() -> list[str] | None:
    """``pg_ctlcluster VERSION main``, when this process may restart the local PostgreSQL."""
    if os.geteuid() != 0 or shutil.which("pg_ctlcluster") is None or not os.path.isdir("/usr/lib/postgresql"):
        return None
    version = sorted(os.listdir("/usr/lib/postgresql"), key=lambda v: [int(p) for p in v.split(".")])[-1]
    return ["pg_ctlcluster", version, "main"]


@pytest.mark.postgres
def test_four_workers_survive_a_postgres_restart(tmp_path):
    url = os.environ.get("REGLAB_TEST_POSTGRES_URL")
    cluster = pg_cluster()
    if not url or cluster is None:
        pytest.skip("needs REGLAB_TEST_POSTGRES_URL, root and pg_ctlcluster")
    name = f"restart-{uuid.uuid4().hex[:8]}"
    storage = open_storage(url)
    spec = make_spec("ridge-gd", ["train.epochs=300", *FAST[1:]], ["reg.l2=1e-4:1:log:10"], "0-5", None)
    create_or_resume(storage, name, spec)
    workers = [worker(url, name, tmp_path / "studies", "--batch", "2") for _ in range(4)]
    try:
        study_id = storage.get_study_id_from_name(name)
        deadline = time.monotonic() + 300
        while len({t.user_attrs["worker"]["pid"] for t in storage.get_all_trials(study_id, deepcopy=False)
                   if "worker" in t.user_attrs}) < 4:  # every worker is at work
            assert time.monotonic() < deadline
            time.sleep(0.2)
        subprocess.run([*cluster, "restart"], check=True, timeout=120)
        outputs = [w.communicate(timeout=300)[0] for w in workers]
    finally:
        for w in workers:
            w.kill()
    storage = open_storage(url)
    assert [w.returncode for w in workers] == [0] * 4, outputs
    assert not any("Traceback" in o for o in outputs), outputs
    assert keys_complete(storage, name) == planned(spec)
    optuna.delete_study(study_name=name, storage=storage)


def published_folders(runs: Path) -> tuple[set[str], list[Path]]:
    """The finished run folders under ``runs`` and the ones still named ``.partial``."""
    from reglab.runs import PARTIAL

    folders = [p for p in runs.glob("*/*") if p.is_dir()]
    return {str(p) for p in folders if not p.name.endswith(PARTIAL)}, [p for p in folders if p.name.endswith(PARTIAL)]


@pytest.mark.postgres
def test_a_soak_of_random_kills_ends_with_every_key_once_and_every_count_agreeing(tmp_path, monkeypatch, capsys):
    """20 random SIGKILL/SIGTERM kills across 4 workers of a 200-trial PostgreSQL study."""
    url = os.environ.get("REGLAB_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("REGLAB_TEST_POSTGRES_URL is not set")
    monkeypatch.chdir(tmp_path)
    name, rng = f"soak-{uuid.uuid4().hex[:8]}", random.Random(17)
    code, out, err = cli(monkeypatch, capsys, "sweep", "ridge-gd", "train.epochs=60", *FAST[1:], "--grid",
                         "reg.l2=1e-4:1:log:20", "--seeds", "0-9", "--storage", url, "--name", name,
                         "--workers", "0")
    assert code == 0, err
    storage = open_storage(url)
    try:
        live = [worker(url, name, tmp_path / "studies", "--batch", "4") for _ in range(4)]
        dead, kills = [], 0
        while kills < 20:
            time.sleep(rng.uniform(0.3, 1.5))
            victim = live.pop(rng.randrange(len(live)))
            if victim.poll() is None:
                victim.send_signal(rng.choice([signal.SIGKILL, signal.SIGTERM]))
                kills += 1
            dead.append(victim)
            live.append(worker(url, name, tmp_path / "studies", "--batch", "4"))
        outputs = [w.communicate(timeout=240)[0] for w in live]
        for w in dead:
            w.communicate(timeout=60)
    finally:
        for w in live + dead:
            w.kill()
    assert [w.returncode for w in live] == [0] * 4, outputs
    spec, records = load_study((url, name))
    assert keys_complete(storage, name) == planned(spec)  # every planned key complete exactly once
    trials = storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False)
    optuna_counts = Counter(t.state for t in trials)
    current = [r for r in records]
    assert len(current) == 200 and all(r.status == "ok" for r in current)
    published, partial = published_folders(tmp_path / "studies" / name / "runs")
    assert published == {r.run_dir for r in current}  # no orphan: every finished folder is a trial's
    code, out, err = cli(monkeypatch, capsys, "studies", "--storage", url)
    row = next(line for line in out.splitlines() if name in line)
    cells = [c.strip() for c in row.split("│")[1:10]]
    assert cells[3:9] == ["200", "0", "0", "0", "200", "0"], cells
    report = build_report([name], tmp_path / "report", url)
    assert report.analysis.progress.counts["ok"] == 200 and report.analysis.progress.counts["failed"] == 0
    assert optuna_counts[TrialState.COMPLETE] == 200
    assert optuna_counts[TrialState.FAIL] == len(trials) - 200  # each one a stale attempt with its retry
    assert set(optuna_counts) <= {TrialState.COMPLETE, TrialState.FAIL}
    optuna.delete_study(study_name=name, storage=storage)
