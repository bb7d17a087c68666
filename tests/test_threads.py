"""The thread policy: never more compute threads than free cores, idle OpenMP threads sleep."""

import os
import subprocess
import sys

import pytest
import torch

from reglab.train import threads


@pytest.fixture
def two_cores(monkeypatch):
    monkeypatch.setattr(threads.os, "sched_getaffinity", lambda pid: {0, 1})
    monkeypatch.setitem(threads._seen, "own", 0.0)
    monkeypatch.setitem(threads._seen, "wall", float("inf"))  # no new measurement of our own load
    yield
    torch.set_num_threads(1)


@pytest.mark.parametrize("load, free", [(0.0, 2), (0.4, 2), (0.6, 1), (1.0, 1), (7.0, 1)])
def test_free_cores_are_the_cores_others_leave(two_cores, monkeypatch, load, free):
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (load, load, load))
    assert threads.free_cores() == free


def test_the_load_this_process_made_is_not_counted_against_it(two_cores, monkeypatch):
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (2.0, 2.0, 2.0))
    monkeypatch.setitem(threads._seen, "own", 2.0)  # both cores busy with our own threads
    assert threads.free_cores() == 2


def test_use_free_cores_sets_torch_threads_capped_by_omp_num_threads(two_cores, monkeypatch):
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.use_free_cores() == 2 and torch.get_num_threads() == 2
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.use_free_cores() == 1 and torch.get_num_threads() == 1
    monkeypatch.setattr(threads.os, "getloadavg", lambda: (1.0, 1.0, 1.0))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert threads.use_free_cores() == 1 and torch.get_num_threads() == 1


def test_importing_reglab_makes_idle_openmp_threads_sleep_unless_the_user_chose():
    code = "import os, reglab; print(os.environ['OMP_WAIT_POLICY'])"
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PASSIVE"
    env["OMP_WAIT_POLICY"] = "ACTIVE"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ACTIVE"
