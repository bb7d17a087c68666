"""Hostile environments: a full disk, read-only places, links out of a study, identical runs at
once, a PostgreSQL password in the URL's query string. Each ends in the error contract (one line
``error: …``, exit 2, nothing half-written left) or in success.

A full or read-only file system is a real size-limited (or read-only) tmpfs where the tests may
mount one (root on Linux); elsewhere those tests are skipped and the simulated ``ENOSPC`` test
still runs.
"""

import errno
import json
import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
from cli_runner import cli
from test_bad_input import TINY, assert_error

SWEEP = ["sweep", "mlp-l2", "train.epochs=2", "train.plots=false", "--grid", "reg.lam=1e-5:1e-1:log:4",
         "--seeds", "0-1", "--name", "full"]


def can_mount() -> bool:
    if os.geteuid() != 0 or sys.platform != "linux":
        return False
    probe = Path(f"/tmp/reglab-mount-probe-{os.getpid()}")
    probe.mkdir(exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["umount", str(probe)], check=True)
    probe.rmdir()
    return ok


MOUNTS = pytest.mark.skipif(not can_mount(), reason="needs to mount a tmpfs (root on Linux)")


@contextmanager
def tmpfs(folder: Path, size: str, read_only: bool = False):
    """A tmpfs of ``size`` at ``folder``, unmounted after."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def in_a_process(*args: str) -> None:
    """``reglab ARGS`` in a process of its own, which must succeed."""
    proc = subprocess.run([sys.executable, "-m", "reglab.cli", *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, proc.stderr


def remount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True)


def studies_table(monkeypatch, capsys, studies: Path) -> dict[str, str]:
    """The one row of ``reglab studies --dir studies``, as printed: column → cell."""
    code, out, err = cli(monkeypatch, capsys, "studies", "--dir", str(studies))
    assert code == 0, err
    cells = lambda line, bar: [c.strip() for c in line.strip(f"{bar} ").split(bar)]  # noqa: E731
    header = next(line for line in out.splitlines() if line.startswith("┃"))
    row = next(line for line in out.splitlines() if line.startswith("│"))
    return dict(zip(cells(header, "┃"), cells(row, "│")))


# ---- a full disk --------------------------------------------------------------------------------

@MOUNTS
def test_a_run_on_a_full_disk_leaves_no_run_folder(tmp_path, monkeypatch, capsys):
    with tmpfs(tmp_path / "disk", "300k") as disk:
        code, out, err = cli(monkeypatch, capsys, "run", "mlp-l2", "train.epochs=2", "--out", str(disk / "runs"))
        assert_error(code, err, "no space left on the device")
        assert list(disk.glob("runs/*/*")) == []


@MOUNTS
def test_a_study_created_on_a_full_disk_leaves_no_database(tmp_path, monkeypatch, capsys):
    with tmpfs(tmp_path / "disk", "40k") as disk:
        code, out, err = cli(monkeypatch, capsys, *SWEEP, "--dir", str(disk / "studies"))
        assert_error(code, err, "database or disk is full")
        assert list(disk.glob("studies/*")) == []


@MOUNTS
def test_a_study_stopped_by_a_full_disk_puts_its_trials_back_and_resumes(tmp_path, monkeypatch, capsys):
    """The 8 runs trained at once fill the disk: the worker stops in one line, removes their
    half-written folders, and their trials wait again; once space is freed the same command finishes."""
    monkeypatch.chdir(tmp_path)
    with tmpfs(tmp_path / "disk", "600k") as disk:
        studies = disk / "studies"
        code, out, err = cli(monkeypatch, capsys, *SWEEP, "--dir", str(studies))
        assert_error(code, err, "no space left on the device; free some space, then rerun the same command")
        counts = studies_table(monkeypatch, capsys, studies)
        assert (counts["done"], counts["running"], counts["waiting"]) == ("0", "0", "8")
        assert list(studies.glob("full/runs/*/*")) == []
        remount(disk, "size=20m")
        code, out, err = cli(monkeypatch, capsys, *SWEEP, "--dir", str(studies))
        assert code == 0 and "8 trials done, 0 failed, of 8" in out, err


def test_a_simulated_full_disk_keeps_the_contract(tmp_path, monkeypatch, capsys):
    """Where no tmpfs can be mounted: the write of a run's metrics fails with ENOSPC."""
    import reglab.runs

    def full(self, record):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.path / "metrics.jsonl"))

    monkeypatch.setattr(reglab.runs.RunFolder, "log", full)
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(monkeypatch, capsys, "run", "ridge-gd", *TINY)
    assert_error(code, err, "no space left on the device (")
    assert "metrics.jsonl); free some space" in err and list(tmp_path.glob("runs/*/*")) == []
    code, out, err = cli(monkeypatch, capsys, "sweep", "ridge-gd", *TINY, "--grid", "reg.lam=1e-3,1e-2", "--name", "s")
    assert_error(code, err, "no space left on the device")
    counts = studies_table(monkeypatch, capsys, tmp_path / "studies")
    assert (counts["done"], counts["failed"], counts["running"], counts["waiting"]) == ("0", "0", "0", "2")


# ---- read-only places ---------------------------------------------------------------------------

@MOUNTS
def test_read_only_places(tmp_path, monkeypatch, capsys):
    """A study on a file system made read-only: resuming it is refused in one line, it can still be
    listed and reported elsewhere; a report, a run or a study into the read-only place is refused."""
    monkeypatch.chdir(tmp_path)
    with tmpfs(tmp_path / "disk", "20m") as disk:
        studies = disk / "studies"
        sweep = ["sweep", "ridge-gd", *TINY, "--grid", "reg.lam=1e-3,1e-2,1e-1", "--name", "s", "--dir", str(studies)]
        in_a_process(*sweep, "--workers", "0")  # this process keeps no open file on the disk
        remount(disk, "ro")
        code, out, err = cli(monkeypatch, capsys, *sweep)
        assert_error(code, err, "cannot write the study database (attempt to write a readonly database)")
        code, out, err = cli(monkeypatch, capsys, "worker", "--study", "s", "--dir", str(studies))
        assert_error(code, err, "attempt to write a readonly database")
        assert studies_table(monkeypatch, capsys, studies)["waiting"] == "3"
        code, out, err = cli(monkeypatch, capsys, "report", str(studies / "s"), "--out", str(tmp_path / "report"))
        assert_error(code, err, "has no finished trial yet")
        code, out, err = cli(monkeypatch, capsys, "run", "ridge-gd", *TINY, "--out", str(disk / "runs"))
        assert_error(code, err, "cannot create a run folder in")
        code, out, err = cli(monkeypatch, capsys, "sweep", "ridge-gd", *TINY, "--dir", str(disk / "other"))
        assert_error(code, err, "Read-only file system")
    with tmpfs(tmp_path / "disk", "20m") as disk:
        in_a_process("sweep", "ridge-gd", *TINY, "--name", "s", "--dir", str(disk))
        remount(disk, "ro")
        code, out, err = cli(monkeypatch, capsys, "report", str(disk / "s"), "--out", str(tmp_path / "report"))
        assert code == 0 and (tmp_path / "report" / "index.html").is_file(), err
        code, out, err = cli(monkeypatch, capsys, "report", str(disk / "s"), "--out", str(disk / "report"))
        assert_error(code, err, f"cannot write the report to '{disk / 'report'}': Read-only file system")


def test_an_unwritable_report_folder(tmp_path, monkeypatch, capsys):
    """Without a mount: --out below a plain file, where no folder can be made (ENOTDIR)."""
    (tmp_path / "a_file").write_text("x")
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(monkeypatch, capsys, "sweep", "ridge-gd", *TINY, "--name", "s")
    assert code == 0, err
    code, out, err = cli(monkeypatch, capsys, "report", "studies/s", "--out", "a_file/report")
    assert_error(code, err, "cannot write the report to 'a_file/report'")


# ---- links out of a study -----------------------------------------------------------------------

@pytest.mark.parametrize("part", ["runs", "workers", "study.db"])
def test_a_study_part_linked_out_of_the_study_is_refused(part, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "studies" / "s").mkdir(parents=True)
    (tmp_path / "studies" / "s" / part).symlink_to(outside / part)
    for args in (["sweep", "ridge-gd", *TINY, "--name", "s", "--workers", "2"], ["worker", "--study", "s"]):
        code, out, err = cli(monkeypatch, capsys, *args)
        assert_error(code, err, f"'{part}' would put a folder outside 'studies/s'")
    assert list(outside.iterdir()) == [] and not (tmp_path / "studies" / "s" / "study.db").is_file()


# ---- identical runs at once ---------------------------------------------------------------------

def test_four_identical_runs_at_once_all_succeed(tmp_path):
    """Same config, same second, same seed: each process claims its own folder."""
    command = [sys.executable, "-m", "reglab.cli", "run", "ridge-gd", *TINY]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    folders = sorted(tmp_path.glob("runs/ridge-gd/*"))
    assert len(folders) == 4
    assert all(json.loads((f / "summary.json").read_text())["status"] == "ok" for f in folders)


def test_the_loser_of_a_race_for_a_run_folder_takes_the_next_name(tmp_path, monkeypatch, capsys):
    """The race replayed in one process: another run (same second, same config, same seed) creates
    the same folder, still being written under its ``.partial`` name, just after this one looked, so
    looking first cannot help; creating can."""
    import pathlib

    from reglab.config import load_config
    from reglab.runs import RunLabel, folder_name

    monkeypatch.chdir(tmp_path)
    config = load_config('ridge-gd', TINY)
    name = folder_name(RunLabel.of(config), config)
    other = tmp_path / "runs" / "ridge-gd" / f"{name}.partial"
    other.mkdir(parents=True)  # the other process was first
    real_exists = pathlib.Path.exists
    monkeypatch.setattr(pathlib.Path, "exists",
                        lambda self: False if self.name in (name, other.name) else real_exists(self))
    code, out, err = cli(monkeypatch, capsys, "run", "ridge-gd", *TINY)
    assert code == 0, err
    assert (tmp_path / "runs" / "ridge-gd" / f"{name}-2" / "summary.json").is_file()
    assert list(other.iterdir()) == []  # the other run's folder is its own
    assert not (tmp_path / "runs" / "ridge-gd" / name).exists()


# ---- PostgreSQL with the password in the query string --------------------------------------------

@pytest.mark.postgres
def test_a_postgres_password_in_the_query_string_is_never_shown(tmp_path, monkeypatch, capsys):
    import optuna
    import sqlalchemy

    from reglab.study.storage import open_storage

    url = os.environ.get("REGLAB_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("REGLAB_TEST_POSTGRES_URL is not set")
    parsed = sqlalchemy.engine.make_url(url)
    secret = parsed.password
    bare = sqlalchemy.engine.URL.create("postgresql", parsed.username, None, parsed.host, parsed.port,
                                        parsed.database).render_as_string(hide_password=False)
    with_query = f"{bare}?password={secret}"
    name = f"query-password-{time.time_ns()}"
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(monkeypatch, capsys, "sweep", "ridge-gd", *TINY, "--storage", with_query, "--name", name,
                         "--workers", "0")
    assert code == 0, err
    assert "password=***" in out and f"reglab worker --storage '{bare}' --study {name}" in out
    code, out2, err = cli(monkeypatch, capsys, "worker", "--storage", with_query, "--study", name)
    assert code == 0, err
    code, out3, err = cli(monkeypatch, capsys, "studies", "--storage", with_query)
    assert code == 0 and name in out3, err
    code, out4, err = cli(monkeypatch, capsys, "sweep", "ridge-gd", *TINY, "--storage", f"{bare}?password=wrong{secret}",
                          "--name", name, "--workers", "0")
    assert_error(code, err, "password authentication failed")
    stored = [p.read_text() for p in tmp_path.rglob("*") if p.is_file() and p.suffix in (".json", ".jsonl", ".yaml")]
    assert json.loads((tmp_path / "studies" / name / "storage.json").read_text())["storage"] == bare
    for text in (out, out2, out3, err, *stored):
        assert f"password={secret}" not in text and f"wrong{secret}" not in text
    optuna.delete_study(study_name=name, storage=open_storage(url))


def test_a_study_deleted_while_it_is_listed_is_left_out(tmp_path, monkeypatch, capsys):
    """Another user of a shared storage deletes a study between the listing and its counts."""
    import optuna

    import reglab.study.sweep
    from reglab.study.storage import open_storage

    url = f"sqlite:///{tmp_path / 'shared.db'}"
    monkeypatch.chdir(tmp_path)
    for name in ("kept", "gone"):
        code, out, err = cli(monkeypatch, capsys, "sweep", "ridge-gd", *TINY, "--storage", url, "--name", name,
                             "--workers", "0")
        assert code == 0, err
    real_open = reglab.study.sweep.open_study

    def open_after_a_delete(storage, name):
        if name == "gone":
            optuna.delete_study(study_name=name, storage=open_storage(url))
        return real_open(storage, name)

    monkeypatch.setattr(reglab.study.sweep, "open_study", open_after_a_delete)
    code, out, err = cli(monkeypatch, capsys, "studies", "--storage", url)
    assert code == 0 and "│ kept " in out and "│ gone " not in out, err
