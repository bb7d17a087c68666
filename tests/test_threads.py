"""The thread policy: never more compute threads than free cores, idle OpenMP threads sleep."""

import os
import subprocess
import sys
import threading
import time

import pytest
import torch

from reglab.train import threads


@pytest.fixture
def two_cores(monkeypatch):
    """Two CPUs for this process; what is busy elsewhere is set by each test, measured anew."""
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setitem(threads._last, "at", -float("inf"))
    yield
    threads._last["at"] = -float("inf")
    torch.set_num_threads(1)


def busy_elsewhere_is(monkeypatch, cores_busy: float) -> None:
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: cores_busy)
    monkeypatch.setitem(threads._last, "at", -float("inf"))


@pytest.mark.parametrize("busy, free", [(0.0, 2), (0.4, 2), (0.6, 1), (1.0, 1), (7.0, 1)])
def test_free_cores_are_the_cores_others_leave(two_cores, monkeypatch, busy, free):
    busy_elsewhere_is(monkeypatch, busy)
    assert threads.free_cores() == free


def test_use_free_cores_sets_torch_threads_capped_by_omp_num_threads(two_cores, monkeypatch):
    busy_elsewhere_is(monkeypatch, 0.0)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.use_free_cores() == 2 and torch.get_num_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.use_free_cores() == 1 and torch.get_num_threads() == 1
    busy_elsewhere_is(monkeypatch, 1.0)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.use_free_cores() == 1 and torch.get_num_threads() == 1


def test_a_measurement_stands_for_runs_started_in_a_row(two_cores, monkeypatch):
    busy_elsewhere_is(monkeypatch, 0.0)
    assert threads.free_cores() == 2
    monkeypatch.setattr(threads, "busy_elsewhere", lambda: 2.0)  # not asked again within REUSE_SECONDS
    assert threads.free_cores() == 2


def spinning() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


@pytest.mark.alone
def test_a_busy_process_counts_while_it_runs_and_not_once_it_has_ended():
    """The 1-minute load average would still count the ended process for a minute; the sample
    of now does not. Measured as a difference, so that other load on the machine cancels."""
    spinner = spinning()
    try:
        time.sleep(0.3)
        while_running = threads.busy_elsewhere()
    finally:
        spinner.kill()
        spinner.wait()
    after = threads.busy_elsewhere()
    assert while_running - after >= 0.5, (while_running, after)


@pytest.mark.alone
def test_this_process_own_work_is_not_counted():
    """CPU time this process takes during the sample (a torch thread computing) is its own."""
    stop = threading.Event()

    def compute():
        a = torch.randn(256, 256)
        while not stop.is_set():
            a = torch.tanh(a @ a)

    worker = threading.Thread(target=compute)
    worker.start()
    try:
        time.sleep(0.1)
        busy = threads.busy_elsewhere(0.5)
    finally:
        stop.set()
        worker.join()
    idle = threads.busy_elsewhere(0.5)
    assert busy - idle < 0.5, (busy, idle)


def test_importing_reglab_makes_idle_openmp_threads_sleep_unless_the_user_chose():
    code = "import os, reglab; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ACTIVE"
