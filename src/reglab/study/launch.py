"""``--workers N``: N local ``reglab worker`` processes on one study, and their progress.

Each worker runs with one CPU thread (``OMP_NUM_THREADS=1``) and writes its lines to
``studies/<name>/workers/worker-<i>.log``. The storage URL reaches it in the environment variable
``REGLAB_STORAGE``, never on its command line, where anyone on the machine could read a password
(``ps``); the environment of a process is readable by its owner only. The parent shows done/total
from the storage: a rich progress bar on a terminal, a plain line per change otherwise. Ctrl-C
stops the workers cleanly: each puts its running trials back in the queue, so the same command resumes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

from optuna.storages import RDBStorage

from reglab.envvars import STORAGE_VARIABLE
from reglab.study.records import progress

POLL_SECONDS = 2.0
SELF_STOP_WAIT = 2.0  # seconds for workers that saw the terminal's Ctrl-C to stop on their own
STOP_WAIT = 30.0  # seconds a worker gets to put its trials back after SIGINT


def worker_command(name: str, studies_dir: Path, batch: int, heartbeat: int, grace: int) -> list[str]:
    """A worker's command line; its storage comes from ``REGLAB_STORAGE`` (see :func:`run_workers`)."""
    return [sys.executable, "-m", "reglab.cli", "worker", "--study", name, "--dir", str(studies_dir),
            "--batch", str(batch), "--heartbeat", str(heartbeat), "--grace", str(grace)]


class Display:
    """done/total as a rich bar with the time left on a terminal (``terminal``; None: when stdout
    is one), else one plain line whenever the counts change."""

    def __init__(self, total: int, echo: Callable[[str], None], terminal: bool | None = None):
        self.echo, self.last, self.bar = echo, None, None
        if sys.stdout.isatty() if terminal is None else terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("trials"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                TextColumn("{task.fields[info]}"))
            self.bar.start()
            self.task = self.bar.add_task("trials", total=total, info="")

    def show(self, counts: dict[str, int]) -> None:
        finished = counts["done"] + counts["failed"]
        info = f"{counts['failed']} failed, {counts['running']} running"
        if self.bar is not None:
            self.bar.update(self.task, completed=finished, total=counts["total"], info=info)
        elif counts != self.last:
            self.echo(f"{finished}/{counts['total']} trials finished ({info})")
        self.last = counts

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def stop(procs: list[subprocess.Popen]) -> None:
    """Stop the workers: a terminal's Ctrl-C reached them already; the others get SIGINT now."""
    deadline = time.monotonic() + SELF_STOP_WAIT
    while time.monotonic() < deadline and any(p.poll() is None for p in procs):
        time.sleep(0.1)
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    deadline = time.monotonic() + STOP_WAIT
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def wait_for(procs: list[subprocess.Popen], seconds: float) -> None:
    """Wait until every process has exited or ``seconds`` have passed, whichever comes first: the
    progress loop's pause, which ends as soon as the last worker does (not up to a poll later)."""
    deadline = time.monotonic() + seconds
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return


def run_workers(n: int, command: list[str], log_dir: Path, storage: RDBStorage, study_id: int,
                spec: dict[str, Any], total: int, echo: Callable[[str], None]) -> list[tuple[int, Path]]:
    """Start n workers, show progress until all exit; ``(exit code, log)`` per worker."""
    log_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", STORAGE_VARIABLE: storage.url}
    logs = [log_dir / f"worker-{i}.log" for i in range(n)]
    procs = []
    for log in logs:
        with open(log, "a") as out:
            procs.append(subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env))
    display = Display(total, echo)
    try:
        while any(p.poll() is None for p in procs):
            display.show(progress(storage, study_id, spec, total))
            wait_for(procs, POLL_SECONDS)
        display.show(progress(storage, study_id, spec, total))
    except KeyboardInterrupt:
        stop(procs)
        raise
    finally:
        display.close()
    return [(p.returncode, log) for p, log in zip(procs, logs)]
