"""Study storage: creation, resume, refusal, atomic claims, unreachable servers, failures, TPE, CV."""

import json
import multiprocessing
import socket
import statistics
import time
from collections import Counter

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from reglab.errors import UserError
from reglab.study.points import trial_plan
from reglab.study.queue import create_or_resume
from reglab.study.choose import choose_point
from reglab.study.records import load_study
from reglab.study.spec import make_spec
from reglab.study.storage import default_url, heartbeat_settings, open_storage
from reglab.study.sweep import sweep
from reglab.study.transactions import claim
from cli_runner import cli

TINY = ["train.epochs=30", "train.plots=false", "train.save_weights=false"]


def ridge_spec(grids=("reg.l2=1e-3,1e-1",), seeds="0-1", folds=None, **kw):
    return make_spec("ridge-gd", TINY, list(grids), seeds, folds, **kw)


def sqlite_storage(folder):
    folder.mkdir(parents=True, exist_ok=True)
    return open_storage(default_url(folder))


def trials_of(storage, name, *states):
    return storage.get_all_trials(storage.get_study_id_from_name(name), deepcopy=False, states=states or None)


def test_creation_enqueues_every_point_seed_fold_once_and_resume_adds_nothing(tmp_path):
    spec = ridge_spec(grids=("reg=none,l2", "reg.lam=1e-3,1e-1"), seeds="0-2", folds=2)
    storage = sqlite_storage(tmp_path / "s")
    study, created = create_or_resume(storage, "s", spec)
    assert created
    waiting = trials_of(storage, "s", TrialState.WAITING)
    assert len(waiting) == 3 * 3 * 2  # points (none, l2 λ=1e-3, l2 λ=0.1) × seeds × folds
    assert Counter(t.user_attrs["key"] for t in waiting) == Counter(t["key"] for t in trial_plan(spec))
    again, created = create_or_resume(open_storage(default_url(tmp_path / "s")), "s", spec)
    assert not created and len(trials_of(storage, "s")) == len(waiting)


def test_a_creation_cut_short_is_completed_on_resume(tmp_path):
    """What an older reglab's creator, killed after enqueueing two of six trials one by one, left."""
    spec = ridge_spec(seeds="0-2")
    storage = sqlite_storage(tmp_path / "s")
    study = optuna.create_study(storage=storage, study_name="s", direction=spec["direction"])
    study.set_user_attr("spec", spec)
    study.set_user_attr("total", 6)
    plan = trial_plan(spec)
    for attrs in plan[:2]:
        study.enqueue_trial({}, user_attrs=attrs)
    create_or_resume(storage, "s", spec)
    keys = Counter(t.user_attrs["key"] for t in trials_of(storage, "s"))
    assert keys == Counter(t["key"] for t in plan)
    assert study.user_attrs["enqueued"] is True


def test_a_different_spec_under_the_same_name_is_refused(tmp_path):
    storage = sqlite_storage(tmp_path / "s")
    create_or_resume(storage, "s", ridge_spec())
    with pytest.raises(UserError) as err:
        create_or_resume(storage, "s", ridge_spec(seeds="0-4"))
    message = str(err.value)
    assert "study 's' exists with a different config" in message and "seeds" in message
    assert "rerun the same command to resume it" in message and "--name" in message


def create_in_process(url, spec, out):
    out.put(create_or_resume(open_storage(url), "race", spec)[1])


def test_concurrent_creations_fill_the_queue_once(tmp_path):
    spec = ridge_spec(grids=("reg.l2=1e-4:1:log:10",), seeds="0-3")
    (tmp_path / "s").mkdir()
    url = default_url(tmp_path / "s")
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=create_in_process, args=(url, spec, out)) for _ in range(3)]
    for p in procs:
        p.start()
    created = sorted(out.get(timeout=120) for _ in procs)
    for p in procs:
        p.join()
    assert created == [False, False, True]
    storage = open_storage(url)
    keys = Counter(t.user_attrs["key"] for t in trials_of(storage, "race"))
    assert len(keys) == 40 and set(keys.values()) == {1}


def claim_all(url, name, out):
    storage = open_storage(url)
    study_id = storage.get_study_id_from_name(name)
    won = []
    while waiting := storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,)):
        ids = {t._trial_id: t.number for t in waiting[:4]}
        won += [ids[i] for i in claim(storage, list(ids), 4, {"pid": 0})]
    out.put(won)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_each_waiting_trial_is_claimed_by_exactly_one_worker(tmp_path, backend, request):
    if backend == "postgres":
        url, name = request.getfixturevalue("postgres_url"), f"claims-{time.time_ns()}"
    else:
        (tmp_path / "s").mkdir()
        url, name = default_url(tmp_path / "s"), "claims"
    study = optuna.create_study(storage=open_storage(url), study_name=name)
    for i in range(45):
        study.enqueue_trial({}, user_attrs={"i": i})
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=claim_all, args=(url, name, out)) for _ in range(3)]
    for p in procs:
        p.start()
    won = [n for _ in procs for n in out.get(timeout=120)]
    for p in procs:
        p.join()
    assert sorted(won) == list(range(45))
    if backend == "postgres":
        optuna.delete_study(study_name=name, storage=open_storage(url))


@pytest.fixture
def postgres_url():
    import os

    url = os.environ.get("REGLAB_TEST_POSTGRES_URL")
    if not url:
        pytest.skip("REGLAB_TEST_POSTGRES_URL is not set")
    return url


def test_unreachable_storage_is_a_clear_error_within_ten_seconds(tmp_path):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()
    silent = socket.socket()  # accepts connections and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    for url in (f"postgresql+psycopg2://u:secret@127.0.0.1:{port}/db",
                f"postgresql+psycopg2://u:secret@127.0.0.1:{silent.getsockname()[1]}/db"):
        started = time.monotonic()
        with pytest.raises(UserError, match="cannot open storage") as err:
            open_storage(url)
        assert time.monotonic() - started < 10
        assert "secret" not in str(err.value) and "127.0.0.1" in str(err.value)
    silent.close()
    with pytest.raises(UserError, match="not a database URL"):
        open_storage("not a url")
    with pytest.raises(UserError, match="does not exist"):
        open_storage(f"sqlite:///{tmp_path}/missing/study.db")


def test_heartbeat_settings(monkeypatch):
    monkeypatch.setenv("REGLAB_HEARTBEAT", "2")
    monkeypatch.setenv("REGLAB_GRACE", "7")
    assert heartbeat_settings() == (2, 7)
    assert heartbeat_settings(1, 3) == (1, 3)
    with pytest.raises(UserError, match="longer than the heartbeat"):
        heartbeat_settings(5, 5)
    monkeypatch.setenv("REGLAB_GRACE", "soon")
    with pytest.raises(UserError, match="REGLAB_GRACE"):
        heartbeat_settings()


def run_sweep(tmp_path, grids, seeds="0-1", cv=None, **kw):
    lines = []
    result = sweep("ridge-gd", TINY, list(grids), seeds, cv, studies_dir=tmp_path / "studies",
                   echo=lines.append, **kw)
    return result.finished, lines


def test_a_diverging_trial_fails_with_its_reason_and_the_study_goes_on(tmp_path):
    finished, lines = run_sweep(tmp_path, ["optim.lr=0.1,1e3"], name="div")
    assert finished
    storage = open_storage(default_url(tmp_path / "studies" / "div"))
    trials = trials_of(storage, "div")
    failed = [t for t in trials if t.state == TrialState.FAIL]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(failed) == 2 and len(complete) == 2
    for t in failed:
        assert t.user_attrs["point"]["optim.lr"] == 1e3
        assert t.user_attrs["status"] == "failed" and "diverged" in t.user_attrs["reason"]
    for t in complete:
        assert t.values == [t.system_attrs["summary"]["val_loss"]]
    spec, records = load_study(tmp_path / "studies" / "div")
    assert sorted(r.status for r in records) == ["failed", "failed", "ok", "ok"]
    assert any("failed: " in line and "diverged" in line for line in lines)


def test_lambda_is_chosen_on_the_cv_mean_of_validation(tmp_path):
    finished, lines = run_sweep(tmp_path, ["reg.l2=1e-3,1e-1,10"], seeds="0", cv=3, name="cv")
    assert finished
    spec, records = load_study(tmp_path / "studies" / "cv")
    assert len(records) == 3 * 3 and {r.fold for r in records} == {0, 1, 2}
    for r in records:
        config = yaml.safe_load((open(f"{r.run_dir}/config.yaml")).read())
        assert (config["data"]["n_folds"], config["data"]["fold"], config["reg"]["lam"]) == (3, r.fold, r.lam)
        summary = json.loads(open(f"{r.run_dir}/summary.json").read())
        assert r.summary["val_loss"] == summary["val_loss"]
    means = {lam: statistics.mean(r.summary["val_loss"] for r in records if r.lam == lam) for lam in (1e-3, 1e-1, 10)}
    best_lam = min(means, key=means.get)
    choice = choose_point(spec, records)
    assert choice.seeds == 1 and choice.score == pytest.approx(means[best_lam])  # one seed, its 3 folds averaged
    label = choice.label
    assert label == next(r.label for r in records if r.lam == best_lam)
    # test metrics play no part: making the test loss of the best point awful changes nothing
    for r in records:
        r.summary["test_loss"] = 1e9 if r.lam == best_lam else 0.0
    assert choose_point(spec, records).label == label
    assert any(line.startswith("chosen on validation") and label in line for line in lines)


def test_tpe_search_reports_the_seed_mean_and_resumes(tmp_path):
    kw = dict(search="tpe", trials=3, name="tpe")
    finished, _ = run_sweep(tmp_path, ["reg.l2=1e-4:1:log:5"], **kw)
    assert finished
    storage = open_storage(default_url(tmp_path / "studies" / "tpe"))
    trials = trials_of(storage, "tpe")
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    for t in trials:
        lam = t.params["reg.l2"]
        assert 1e-4 <= lam <= 1
        runs = t.system_attrs["runs"]
        assert sorted(r["seed"] for r in runs) == [0, 1]
        assert t.value == pytest.approx(statistics.mean(r["summary"]["val_loss"] for r in runs))
        for r in runs:
            assert yaml.safe_load(open(f"{r['run_dir']}/config.yaml").read())["reg"]["lam"] == lam
    assert len({t.params["reg.l2"] for t in trials}) == 3
    finished, lines = run_sweep(tmp_path, ["reg.l2=1e-4:1:log:5"], **kw)
    assert finished and "resumed: 3/3" in lines[0]
    assert len(trials_of(storage, "tpe")) == 3
    spec, records = load_study(tmp_path / "studies" / "tpe")
    assert len(records) == 6 and all(r.status == "ok" for r in records)


def test_choose_point_uses_the_validation_mean_and_skips_points_that_failed():
    from reglab.study.records import TrialRecord

    def rec(label, seed, status="ok", **summary):
        return TrialRecord({}, label, "l2", None, seed, None, status, summary=summary)

    records = [rec("a", 0, val_acc=0.80, test_acc=0.10), rec("a", 1, val_acc=0.90, test_acc=0.10),
               rec("b", 0, val_acc=0.86, test_acc=0.99), rec("b", 1, val_acc=0.86, test_acc=0.99),
               rec("c", 0, val_acc=0.99), rec("c", 1, status="failed")]
    spec = {"metric": "val_acc", "direction": "maximize"}
    choice = choose_point(spec, records)  # a: 0.85; c failed on seed 1
    assert (choice.label, choice.score, choice.seeds) == ("b", pytest.approx(0.86), 2)
    loss = [rec("a", 0, val_loss=1.0), rec("a", 1, val_loss=3.0), rec("b", 0, val_loss=2.5)]
    choice = choose_point({"metric": "val_loss", "direction": "minimize"}, loss)
    assert (choice.label, choice.score, choice.seeds) == ("a", 2.0, 2)
    assert choose_point(spec, [rec("a", 0, status="running")]) is None


def credential(url: str) -> str:
    """``user:password@`` of a URL: what must never appear in anything written."""
    import sqlalchemy

    parsed = sqlalchemy.engine.make_url(url)
    assert parsed.password, "the test needs a URL with a password"
    return f"{parsed.username}:{parsed.password}@"


def test_redact_hides_every_url_password_and_nothing_else():
    from reglab.redact import redact

    assert redact("postgresql+psycopg2://me:s3cr:t@db.host:5432/x") == "postgresql+psycopg2://me:***@db.host:5432/x"
    assert redact("--storage=mysql://u:p%40ss@h/db and sqlite:///a.db") == "--storage=mysql://u:***@h/db and sqlite:///a.db"
    for plain in ("postgresql://me@host/db", "sqlite:////tmp/x:y@z.db", "reg.l2=1e-3", "a:b@c"):
        assert redact(plain) == plain


def test_a_run_folder_records_its_command_line_without_the_password(monkeypatch):
    import torch

    from reglab.config import load_config
    from reglab.runs import environment

    url = "postgresql+psycopg2://me:hunter2@db:5432/x"
    monkeypatch.setattr("sys.argv", ["reglab", "sweep", "ridge-gd", "--storage", url, f"--storage={url}"])
    command = environment(load_config("ridge-gd"), torch.device("cpu"))["command"]
    assert "hunter2" not in json.dumps(command)
    assert command[-2:] == ["postgresql+psycopg2://me:***@db:5432/x", "--storage=postgresql+psycopg2://me:***@db:5432/x"]


@pytest.mark.postgres
def test_the_postgres_password_is_never_written_in_clear(tmp_path, postgres_url, monkeypatch, capsys):
    """A sweep with two worker processes on PostgreSQL: no file it writes, no line it prints and no
    worker's command line holds the password; storage.json is private and password-free, and the
    report finds the password in PGPASSWORD or a .pgpass file."""
    import os
    import stat
    import uuid

    import sqlalchemy

    from reglab.study.launch import worker_command

    secret = credential(postgres_url)
    name = f"secret-{uuid.uuid4().hex[:8]}"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))
    try:
        code, out, err = cli(monkeypatch, capsys, "sweep", "ridge-gd", *TINY, "--grid", "reg.l2=1e-3,1e-1",
                             "--seeds", "0-1", "--storage", postgres_url, "--workers", "2", "--name", name)
        assert code == 0 and "4 trials done, 0 failed, of 4" in out, out + err
        assert secret not in out + err
        folder = tmp_path / "studies" / name
        written = [p for p in folder.rglob("*") if p.is_file()]
        assert len(list(folder.glob("runs/*/*/env.json"))) == 4
        for path in written:
            assert secret.encode() not in path.read_bytes(), path
        for env in folder.glob("runs/*/*/env.json"):
            command = json.loads(env.read_text())["command"]
            assert command[1:3] == ["worker", "--study"] and "--storage" not in command  # a worker's argv
        assert "--storage" not in worker_command(name, tmp_path, 16, 5, 20)
        location = folder / "storage.json"
        assert stat.S_IMODE(location.stat().st_mode) == 0o600
        password_free = postgres_url.replace(secret, secret.split(":")[0] + "@")
        assert json.loads(location.read_text()) == {"storage": password_free, "name": name}

        monkeypatch.delenv("PGPASSWORD", raising=False)
        monkeypatch.setenv("PGPASSFILE", str(tmp_path / "no-such-pgpass"))
        code, out, err = cli(monkeypatch, capsys, "report", str(folder), "--out", "report")
        assert code == 2 and "set PGPASSWORD or put it in ~/.pgpass" in err and secret not in err, err
        monkeypatch.setenv("PGPASSWORD", sqlalchemy.engine.make_url(postgres_url).password)
        code, out, err = cli(monkeypatch, capsys, "report", str(folder), "--out", "report")
        assert code == 0 and (tmp_path / "report" / "index.html").is_file(), err
        monkeypatch.delenv("PGPASSWORD")
        parsed = sqlalchemy.engine.make_url(postgres_url)
        pgpass = tmp_path / "pgpass"
        pgpass.write_text(f"{parsed.host}:{parsed.port or 5432}:{parsed.database}:{parsed.username}:{parsed.password}\n")
        os.chmod(pgpass, 0o600)
        monkeypatch.setenv("PGPASSFILE", str(pgpass))
        code, out, err = cli(monkeypatch, capsys, "studies", "--storage", password_free)
        assert code == 0 and name in out and secret not in out, err
    finally:
        optuna.delete_study(study_name=name, storage=open_storage(postgres_url))


def test_equal_grids_written_differently_resume_the_same_study(tmp_path):
    storage = sqlite_storage(tmp_path / "s")
    first = make_spec("ridge-gd", TINY, ["reg.l2=0.0001,1e-2", "reg.l1_ratio=0.5"], "0-1", None)
    create_or_resume(storage, "s", first)
    for grids in (["reg.l2 = 1e-4 , 0.01", "reg.l1_ratio=5e-1"], ["reg.l2=1e-4,1E-2", "reg.l1_ratio= .5"]):
        again = make_spec("ridge-gd", TINY, grids, "0-1", None)
        assert again == first
        assert create_or_resume(storage, "s", again)[1] is False
    with pytest.raises(UserError, match="grids differ"):
        create_or_resume(storage, "s", make_spec("ridge-gd", TINY, ["reg.l2=1e-4,0.02", "reg.l1_ratio=0.5"], "0-1", None))


def test_a_stored_spec_with_grids_as_typed_still_resumes(tmp_path):
    """A study created before grids were stored in canonical form compares by its parsed grids."""
    storage = sqlite_storage(tmp_path / "s")
    spec = make_spec("ridge-gd", TINY, ["reg.l2=1e-4:1e-2:log:3"], "0", None)
    study = optuna.create_study(storage=storage, study_name="s", direction=spec["direction"])
    for key, value in {"spec": {**spec, "grids": [" reg.l2=1e-4:0.01:log:3"]}, "total": 3, "enqueued": True}.items():
        study.set_user_attr(key, value)
    assert create_or_resume(storage, "s", spec)[1] is False
