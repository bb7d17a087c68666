"""Studies end to end through the command line: workers in separate processes, one of them killed
with SIGKILL mid-trial (SQLite with --workers 2, PostgreSQL with 3 `reglab worker`), Ctrl-C,
resume, the listing, and bad input."""

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from reglab.errors import UserError
from reglab.study.points import trial_plan
from reglab.study.queue import create_or_resume, open_study
from reglab.study.records import load_study, superseded
from reglab.study.spec import make_spec
from reglab.study.storage import default_url, open_storage
from cli_runner import cli

SLOW = ["train.epochs=1200", "train.plots=false", "train.save_weights=false"]  # about a second a trial
LONG = ["train.epochs=6000", "train.plots=false", "train.save_weights=false"]  # long enough to interrupt
GRID = "reg.l2=1e-3,1e-1"
FAST_HEARTBEAT = ["--batch", "1", "--heartbeat", "1", "--grace", "3"]


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "reglab.cli", *args]


def reglab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(command(*args), cwd=cwd, capture_output=True, text=True, timeout=300)


def wait_for_study(url: str, name: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while True:
        try:
            storage = open_storage(url, must_exist=url.startswith("sqlite"))
            open_study(storage, name)
            return storage
        except UserError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def wait_for_running(storage, name: str, ours, timeout: float = 120):
    """A trial that one of our processes (``ours(pid)`` is true) is training now, and its pid."""
    study_id = storage.get_study_id_from_name(name)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for trial in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,)):
            pid = trial.user_attrs.get("worker", {}).get("pid")
            if pid is not None and ours(pid):
                return trial, pid
        time.sleep(0.1)
    raise AssertionError("no trial started running")


def check_exactly_once(storage, name: str, spec: dict, killed, finished_before: dict[int, float]) -> None:
    trials = storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False)
    complete = Counter(t.user_attrs["key"] for t in trials if t.state == TrialState.COMPLETE)
    assert complete == Counter(t["key"] for t in trial_plan(spec))  # every point × seed once, none missing
    gone = superseded(trials)
    assert all(t.number in gone for t in trials if t.state != TrialState.COMPLETE)
    by_number = {t.number: t for t in trials}
    assert by_number[killed.number].state == TrialState.FAIL and killed.number in gone
    rerun = next(t for t in trials if t.state == TrialState.COMPLETE and t.user_attrs["key"] == killed.user_attrs["key"])
    assert rerun.user_attrs["worker"]["pid"] != killed.user_attrs["worker"]["pid"]
    for number, value in finished_before.items():  # nothing finished was lost or redone
        assert by_number[number].state == TrialState.COMPLETE and by_number[number].value == value


def completed_values(storage, name: str) -> dict[int, float]:
    study_id = storage.get_study_id_from_name(name)
    return {t.number: t.value for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,))}


def test_sqlite_two_workers_survive_a_sigkill_mid_trial(tmp_path):
    proc = subprocess.Popen(command("sweep", "ridge-gd", *SLOW, "--grid", GRID, "--seeds", "0-1", "--workers", "2",
                                    "--name", "kill", *FAST_HEARTBEAT), cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        url = default_url(tmp_path / "studies" / "kill")
        storage = wait_for_study(url, "kill")
        killed, pid = wait_for_running(storage, "kill", lambda pid: pid != proc.pid)
        before = completed_values(storage, "kill")
        os.kill(pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=300)
    finally:
        proc.kill()
    assert proc.returncode == 0, out + err
    assert "exited with code -9" in out and "4 trials done, 0 failed, of 4" in out
    spec, records = load_study(tmp_path / "studies" / "kill")
    check_exactly_once(storage, "kill", spec, killed, before)
    assert len(records) == 4 and all(r.status == "ok" and Path(r.run_dir).is_dir() for r in records)


@pytest.mark.postgres
def test_postgres_three_workers_survive_a_sigkill_mid_trial(tmp_path):
    url = os.environ.get("REGLAB_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("REGLAB_TEST_POSTGRES_URL is not set")
    name = f"kill-{uuid.uuid4().hex[:8]}"
    storage = open_storage(url)
    spec = make_spec("ridge-gd", SLOW, [GRID], "0-1", None)
    create_or_resume(storage, name, spec)
    procs = [subprocess.Popen(command("worker", "--storage", url, "--study", name, *FAST_HEARTBEAT), cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(3)]
    try:
        killed, pid = wait_for_running(storage, name, {p.pid for p in procs}.__contains__)
        before = completed_values(storage, name)
        os.kill(pid, signal.SIGKILL)
        outputs = {p.pid: p.communicate(timeout=300)[0] for p in procs}
        codes = {p.pid: p.returncode for p in procs}
        assert codes.pop(pid) == -signal.SIGKILL
        assert set(codes.values()) == {0}, outputs
        check_exactly_once(storage, name, spec, killed, before)
        spec_read, records = load_study((url, name))
        assert spec_read["name"] == name and len(records) == 4 and all(r.status == "ok" for r in records)
    finally:
        for p in procs:
            p.kill()
        optuna.delete_study(study_name=name, storage=storage)


def test_ctrl_c_puts_the_trial_back_and_the_same_command_resumes(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sweep = ["sweep", "ridge-gd", *LONG, "--grid", "reg.l2=1e-2", "--name", "stop"]
    code, out, err = cli(monkeypatch, capsys, *sweep, "--workers", "0")
    assert code == 0, err
    assert "study 'stop' created: 1 trial: 1 point × 1 seed" in out and "reglab worker --dir studies --study stop" in out
    worker = subprocess.Popen(command("worker", "--study", "stop", *FAST_HEARTBEAT), cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    storage = open_storage(default_url(tmp_path / "studies" / "stop"))
    trial, pid = wait_for_running(storage, "stop", worker.pid.__eq__)
    worker.send_signal(signal.SIGINT)
    out, err = worker.communicate(timeout=120)
    assert worker.returncode == 130 and err == "error: interrupted\n"
    (only,) = storage.get_all_trials(storage.get_study_id_from_name("stop"), deepcopy=False)
    assert only.number == trial.number and only.state == TrialState.WAITING
    code, out, err = cli(monkeypatch, capsys, *sweep)
    assert code == 0, err
    assert "study 'stop' resumed: 0/1 trials finished" in out
    assert "next: reglab report studies/stop --out report/" in out
    (only,) = storage.get_all_trials(storage.get_study_id_from_name("stop"), deepcopy=False)
    assert only.state == TrialState.COMPLETE and only.user_attrs["worker"]["pid"] == os.getpid()
    code, out, err = cli(monkeypatch, capsys, "studies")
    row = next(line for line in out.splitlines() if "stop" in line)
    assert [c.strip() for c in row.split("│")[1:9]] == ["stop", "ridge-gd", "grid", "1", "0", "0", "0", "1"]


def test_ctrl_c_right_after_a_claim_puts_the_trial_back(tmp_path, monkeypatch, capsys):
    """A Ctrl-C that lands between a claim and its heartbeats must not strand the trial RUNNING."""
    from reglab.study import transactions, worker as worker_module

    monkeypatch.chdir(tmp_path)
    code, out, err = cli(monkeypatch, capsys, "sweep", "ridge-gd", *SLOW, "--grid", "reg.l2=1e-2",
                         "--name", "gap", "--workers", "0")
    assert code == 0, err
    real_claim = transactions.claim

    def claim_then_ctrl_c(*args):
        won = real_claim(*args)
        os.kill(os.getpid(), signal.SIGINT)  # arrives while the trial is RUNNING and not yet held
        return won

    monkeypatch.setattr(transactions, "claim", claim_then_ctrl_c)
    storage = open_storage(default_url(tmp_path / "studies" / "gap"))
    with pytest.raises(KeyboardInterrupt):
        worker_module.Worker(storage, "gap", tmp_path / "studies" / "gap").run()
    (only,) = storage.get_all_trials(storage.get_study_id_from_name("gap"), deepcopy=False)
    assert only.state == TrialState.WAITING


def test_a_sweep_says_what_is_done_failed_and_left(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(monkeypatch, capsys, "sweep", "ridge-gd", "train.epochs=50", "train.plots=false",
                         "--grid", "reg.l2=1e-3,1e4", "--batch", "1", "--name", "pace")
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("progress:")]
    first = ("progress: 1 done, 0 failed, 1 left; about ", "progress: 0 done, 1 failed, 1 left; about ")
    assert lines[0].startswith(first) and lines[0].endswith(" pace")  # a worker starts at a random trial
    assert lines[-1] == "progress: 1 done, 1 failed, 0 left"


def closed_port() -> int:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return port


def test_bad_input_is_one_line_and_leaves_no_study(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    unreachable = f"postgresql+psycopg2://u:p@127.0.0.1:{closed_port()}/db"
    for args, fragment in [
        (["--grid", "reg.l2=0,1e-5:1e-1:lug:9"], "bad grid token '1e-5:1e-1:lug:9' (value 2)"),
        (["optim.lrr=0.1", "--grid", "reg.l2=0,1"], "unknown config key 'optim.lrr'; did you mean 'optim.lr'?"),
        (["--grid", "reg.lamda=0,1"], "did you mean 'reg.lam'?"),
        (["--grid", "reg.l2=0,1", "--seeds", "9-2"], "bad --seeds '9-2'"),
        (["--grid", "reg.l2=0,1", "--storage", unreachable], "cannot open storage"),
        (["--grid", "reg.l2=0,1", "--search", "tpe"], "--search tpe needs --trials"),
        (["--grid", "reg.l2=0,1", "--name", "a/b"], "study name 'a/b'"),
    ]:
        code, out, err = cli(monkeypatch, capsys, "sweep", "ridge-gd", *args)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, (args, err)
        assert fragment in err and "Traceback" not in err
        assert not (tmp_path / "studies").exists(), args
    code, out, err = cli(monkeypatch, capsys, "sweep", "ridge-gd", "train.epochs=20", "train.plots=false",
                         "--grid", "reg.l2=0,1", "--name", "x")
    assert code == 0, err
    for args, fragment in [
        (["sweep", "ridge-gd", "train.epochs=20", "--grid", "reg.l2=0,2", "--name", "x"],
         "error: study 'x' exists with a different config (grids, overrides differ); rerun the same command to "
         "resume it, or pass --name to start another\n"),
        (["worker", "--study", "nothere"], "no study database at"),
        (["studies", "--storage", unreachable], "cannot open storage"),
    ]:
        code, out, err = cli(monkeypatch, capsys, *args)
        assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and fragment in err, err


def test_a_bad_grid_through_a_real_process(tmp_path):
    proc = reglab("sweep", "ridge-gd", "--grid", "reg.l2=0,1e-5:1e-1:lug:9", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == ("error: bad grid token '1e-5:1e-1:lug:9' (value 2) in --grid 'reg.l2=0,1e-5:1e-1:lug:9': "
                           "expected START:STOP:log|lin:COUNT; 'lug' is neither log nor lin\n")


def test_two_local_workers_share_one_group_of_trials(tmp_path):
    """Four runs that could be trained as one batch are split between the two workers, so that
    neither waits while the other trains them all."""
    proc = reglab("sweep", "ridge-gd", "train.epochs=300", "train.plots=false", "train.save_weights=false",
                  "--grid", GRID, "--seeds", "0-1", "--workers", "2", "--name", "share", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "training 2 models at once (vectorized)" in proc.stdout
    storage = open_storage(default_url(tmp_path / "studies" / "share"))
    study, _ = open_study(storage, "share")
    pids = Counter(t.user_attrs["worker"]["pid"] for t in study.get_trials(states=(TrialState.COMPLETE,)))
    assert sorted(pids.values()) == [2, 2]


def test_a_worker_completes_a_queue_whose_creator_died(tmp_path, monkeypatch):
    """The state an older reglab's creator, killed after queueing two of six trials one by one,
    left; ``reglab worker`` adds the four missing ones and trains all six."""
    from reglab.study.records import progress
    from reglab.study.sweep import work

    spec = make_spec("ridge-gd", ["train.epochs=3", "train.plots=false", "train.save_weights=false"],
                     ["reg.l2=1e-3,1e-1"], "0-2", None)
    folder = tmp_path / "studies" / "cut"
    folder.mkdir(parents=True)
    storage = open_storage(default_url(folder))
    study = optuna.create_study(storage=storage, study_name="cut", direction=spec["direction"])
    for key, value in {"spec": spec, "total": 6, "enqueued": False}.items():
        study.set_user_attr(key, value)
    for attrs in trial_plan(spec)[:2]:
        study.enqueue_trial({}, user_attrs=attrs)
    counts = progress(storage, study._study_id, spec, 6)
    assert counts == {"done": 0, "failed": 0, "running": 0, "waiting": 2, "unqueued": 4, "pruned": 0, "total": 6}
    spec_read, records = load_study(folder)
    assert [r.status for r in records] == ["waiting"] * 6
    lines = []
    assert work("cut", None, tmp_path / "studies", 16, None, None, echo=lines.append) == 6
    assert "the queue of study 'cut' was not filled (its creation was interrupted): added its 4 trials" in lines
    assert progress(storage, study._study_id, spec, 6) == {"done": 6, "failed": 0, "running": 0, "waiting": 0,
                                                          "unqueued": 0, "pruned": 0, "total": 6}
