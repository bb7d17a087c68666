"""What ``reglab sweep``, ``reglab worker`` and ``reglab studies`` do.

``sweep`` checks the input, creates the study (or resumes it: the same command gives the same
spec, hence the same name and storage), then trains its trials with ``--workers`` workers
(1: in this process; N > 1: N local processes; 0: none, for workers started elsewhere with
``reglab worker``) and reports the point chosen on validation data and where the study is.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import time
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from reglab.config import check_name
from reglab.errors import UserError
from reglab.formatting import counted
from reglab.runs import inside
from reglab.study.auto_grid import plan_lines
from reglab.study.launch import run_workers, worker_command
from reglab.study.points import grid_points
from reglab.study.choose import Choice, choose_point
from reglab.study.queue import create_or_resume, open_study
from reglab.study.records import progress, study_records
from reglab.study.spec import MAX_RUNS, config_for, default_name, fold_list, make_spec
from reglab.study.storage import default_url, heartbeat_settings, open_storage, shown_url, without_password
from reglab.study.tpe import distributions
from reglab.study.worker import Worker
from reglab.train.batched import vectorizable
from reglab.train.threads import cores

Echo = Callable[[str], None]
WORKERS_PER_CORE = 4  # --workers above this many per usable core needs --force-workers
STUDY_PARTS = ("runs", "workers", "study.db", "storage.json")  # each must stay inside the study folder


@dataclass
class SweepResult:
    """Where the study is (its folder holds the runs and the report's input) and whether every
    trial is finished."""

    name: str
    folder: Path
    finished: bool


def describe_plan(spec: dict[str, Any], total: int) -> str:
    seeds, folds = len(spec["seeds"]), spec["folds"]
    per = counted(seeds, "seed") + (f" × {folds} folds" if folds else "")
    if spec["search"] == "tpe":
        return f"{counted(total, 'TPE trial')}, each on {per}"
    return f"{counted(total, 'trial')}: {counted(total // (seeds * (folds or 1)), 'point')} × {per}"


def training_path(spec: dict[str, Any], batch: int) -> str:
    """How the first group of runs will be trained: at once, or one after another (and why)."""
    if spec["search"] == "grid":
        points = grid_points(spec)
        first = points[0].family
        values = [p.values for p in points if p.family == first]
        runs = [(v, s, f) for s in spec["seeds"] for v in values for f in fold_list(spec)[:1]]
    else:
        runs = [({}, s, f) for s in spec["seeds"] for f in fold_list(spec)]
    if batch == 1:
        return "one after another: --batch 1"
    configs = [config_for(spec, v, s, f) for v, s, f in runs][:batch]
    reason = vectorizable(configs)
    return f"training {len(configs)} models at once (vectorized)" if reason is None else f"one after another: {reason}"


def shared_batch(batch: int, total: int, workers: int) -> int:
    """The batch of each of ``workers`` local workers: at most an equal share of the trials, so
    that the first worker does not claim the whole study while the others wait."""
    return max(1, min(batch, math.ceil(total / workers)))


def sweep(recipe: str, overrides: list[str], grids: list[str], seeds: str = "0", cv: int | None = None,
          search: str = "grid", trials: int | None = None, storage_url: str | None = None, workers: int = 1,
          name: str | None = None, studies_dir: Path = Path("studies"), batch: int = 16,
          heartbeat: int | None = None, grace: int | None = None, echo: Echo = print,
          max_runs: int | None = None, force_workers: bool = False, prune: str | None = None,
          prune_eta: int = 3, prune_min_epochs: int = 1) -> SweepResult:
    """Create or resume the study and work on it; ``prune="halving"`` prunes each fold's points by
    successive halving (``reglab.train.halving``)."""
    started = time.monotonic()
    check_workers(workers, force_workers)
    if batch < 1:
        raise UserError(f"--batch must be at least 1, got {batch}")
    heartbeat, grace = heartbeat_settings(heartbeat, grace)
    if name is not None:
        check_name(name, "study name")
    if storage_url is not None and in_memory(storage_url) and workers != 1:
        raise UserError(f"storage '{shown_url(storage_url)}' lives in this process's memory only: it works with --workers 1, "
                        "not with other worker processes (use a file, e.g. sqlite:///study.db)")
    storage = open_storage(storage_url, heartbeat, grace) if storage_url else None  # fail fast
    spec = make_spec(recipe, overrides, grids, seeds, cv, search, trials, MAX_RUNS if max_runs is None else max_runs,
                     prune, prune_eta, prune_min_epochs)
    grid_points(spec)  # every point's config is valid
    if search == "tpe":
        distributions(spec)
    if name is None:
        name = check_name(default_name(spec), "study name (from the recipe's file name; pass --name)")
    folder = study_folder(Path(studies_dir), name)
    with removed_if_unfinished(folder):
        if storage is None:
            make_folder(folder)
            storage = open_storage(default_url(folder), heartbeat, grace)
        study, created = create_or_resume(storage, name, spec, echo)
        if storage_url is not None:
            write_location(folder, storage_url, name)
    study_id, total = storage.get_study_id_from_name(name), study.user_attrs["total"]
    counts = progress(storage, study_id, spec, total)
    echo(f"study '{name}' created: {describe_plan(spec, total)}" if created else
         f"study '{name}' resumed: {counts['done'] + counts['failed']}/{counts['total']} trials finished")
    for line in plan_lines(spec):
        echo(line)
    echo(f"storage: {shown_url(storage.url)}; runs in {folder / 'runs'}")
    if workers == 0:
        where = f"--storage '{without_password(storage_url)}'" if storage_url else f"--dir {studies_dir}"
        echo(f"no local workers; start them with: reglab worker {where} --study {name}")
        return SweepResult(name, folder, False)
    try:
        if workers == 1:
            Worker(storage, name, folder / "runs", batch, echo, since=started).run()
        else:
            batch = shared_batch(batch, total, workers)
            echo(training_path(spec, batch))
            command = worker_command(name, Path(studies_dir), batch, heartbeat, grace)
            exits = run_workers(workers, command, folder / "workers", storage, study_id, spec, total, echo)
            for i, (code, log) in enumerate(exits):
                if code != 0:
                    echo(f"worker {i} exited with code {code}; its log: {log}")
    except KeyboardInterrupt:
        echo("stopped; the running trials went back to the queue: rerun the same command to resume")
        raise
    return SweepResult(name, folder, report_end(storage, study, spec, folder, echo, started))


def check_workers(workers: int, force: bool) -> None:
    """``--workers`` is 0 or more, and at most :data:`WORKERS_PER_CORE` × the usable cores unless
    forced: each worker is a process holding its own models and data."""
    if workers < 0:
        raise UserError(f"--workers must be 0 or more, got {workers}")
    limit = WORKERS_PER_CORE * cores()
    if workers > limit and not force:
        raise UserError(f"--workers {workers} is more than {limit} ({WORKERS_PER_CORE} × the {cores()} usable "
                        "cores), and each worker is a process with its own models and data; pass --force-workers "
                        "to start them anyway")


def in_memory(url: str) -> bool:
    """An SQLite URL of an in-memory database (``sqlite://``, ``sqlite:///:memory:``)."""
    return url.startswith("sqlite:") and (url.rstrip("/") in ("sqlite:", "sqlite:/", "sqlite://")
                                          or url.endswith(":memory:") or "mode=memory" in url)


def study_folder(studies_dir: Path, name: str) -> Path:
    """``studies_dir/name``, refused when it or one of its parts (``runs``, ``workers``,
    ``study.db``, ``storage.json``) is a link that leads out of it."""
    folder = inside(studies_dir, name)
    for part in STUDY_PARTS:
        inside(folder, part)
    return folder


@contextmanager
def removed_if_unfinished(folder: Path):
    """Around the creation of a study: if it fails (a full disk, a read-only folder, a refused
    spec), the study folder, or the ``study.db`` and ``storage.json`` made inside an existing one,
    are removed, so nothing half-made is left behind. An existing study is never touched, and an
    interrupted creation (Ctrl-C) is kept: the same command completes its queue."""
    made_folder = not folder.exists()
    made = [folder / p for p in ("study.db", "storage.json") if not (folder / p).exists()]
    try:
        yield
    except Exception:
        if made_folder:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            for path in made:
                for leftover in (path, path.with_name(path.name + "-journal")):
                    with suppress(OSError):
                        leftover.unlink()
        raise


def make_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create the study folder '{folder}': {exc.strerror}") from None


def write_location(folder: Path, storage_url: str, name: str) -> None:
    """``storage.json``: where the study is, for ``reglab report``; without the password (it comes
    from ``PGPASSWORD`` or ``~/.pgpass``) and readable by its owner only."""
    make_folder(folder)
    path = folder / "storage.json"
    text = json.dumps({"storage": without_password(storage_url), "name": name}, indent=2)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(descriptor, 0o600)  # also when the file was there with other permissions
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def report_end(storage, study, spec: dict[str, Any], folder: Path, echo: Echo, started: float) -> bool:
    """Print the counts with the wall-clock time since ``started`` (``time.monotonic()``), the
    failures, the point chosen on validation and the study folder (the command line adds the next
    command, ``reglab report``)."""
    name = study.study_name
    counts = progress(storage, storage.get_study_id_from_name(name), spec, study.user_attrs["total"])
    records = study_records(study.get_trials(deepcopy=False), spec)
    pruned = f" ({counts['pruned']} of them pruned)" if counts["pruned"] else ""
    echo(f"{counted(counts['done'], 'trial')} done{pruned}, {counts['failed']} failed, of {counts['total']} "
         f"({time.monotonic() - started:.1f} s)")
    for record in records:
        if record.status == "failed":
            echo(f"  failed: {record.label} seed {record.seed}: {record.reason}")
    choice = choose_point(spec, records)
    if choice is not None:
        echo(chosen_line(spec, choice))
        for other in choice.passed_over:
            echo(f"  not chosen, as a run failed: {other.text()}")
    finished = counts["waiting"] == 0 and counts["running"] == 0 and counts["unqueued"] == 0
    if not finished:
        echo(f"study '{name}' is not finished; rerun the same command to resume it")
    echo(f"study folder: {folder}")
    return finished


def chosen_line(spec: dict[str, Any], choice: Choice) -> str:
    """``chosen on validation (mean val_acc over 10 seeds): dropout p=0.1 (0.5955) (tie with l1
    λ=0.0001, broken by the stronger regularization)``."""
    seeds = counted(choice.seeds, "seed") + (", folds averaged within each" if spec["folds"] else "")
    tie = f" ({choice.tie_text()})" if choice.tie else ""
    return f"chosen on validation (mean {choice.metric} over {seeds}): {choice.label} ({choice.score:.4g}){tie}"


def work(name: str, storage_url: str | None, studies_dir: Path, batch: int, heartbeat: int | None,
         grace: int | None, echo: Echo = print) -> int:
    """``reglab worker``: join the study and train until nothing is left; trials finished here."""
    check_name(name, "study name")
    folder = study_folder(Path(studies_dir), name)
    url = storage_url or default_url(folder)
    storage = open_storage(url, heartbeat, grace, must_exist=storage_url is None)
    signal.signal(signal.SIGTERM, interrupt)
    done = Worker(storage, name, folder / "runs", batch, echo).run()
    echo(f"worker finished: {counted(done, 'trial')} trained here; nothing left to do in '{name}'")
    return done


def interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def list_studies(storage_url: str | None, studies_dir: Path) -> list[dict[str, Any]]:
    """One row per study: name, recipe, search, done/failed/running/waiting/total, where. A study
    deleted while it is listed is left out."""
    if storage_url is not None:
        places = [(storage_url, None)]
    else:
        places = [(default_url(db.parent), db.parent) for db in sorted(Path(studies_dir).glob("*/study.db"))]
    rows = []
    for url, folder in places:
        storage = open_storage(url, must_exist=True)
        for summary in storage.get_all_studies():
            if folder is not None and summary.study_name != folder.name:
                continue
            if "spec" not in summary.user_attrs:
                continue
            try:
                study, spec = open_study(storage, summary.study_name)
                study_id = storage.get_study_id_from_name(summary.study_name)
                counts = progress(storage, study_id, spec, study.user_attrs.get("total", 0))
            except (KeyError, UserError):  # deleted (by another user of the storage) while it was listed
                continue
            rows.append({"name": summary.study_name, "recipe": spec["recipe"], "search": spec["search"],
                         **counts, "where": str(folder) if folder else shown_url(url)})
    return rows
