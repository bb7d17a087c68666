"""How many compute threads the engine runs: never more than the cores that are free.

Why: torch's CPU kernels run on OpenMP threads. A thread that finishes its share of a parallel
region waits for the others, and with GNU OpenMP's default (active) wait policy it waits by
spinning. With more threads than free cores (another busy process, or several runs side by side),
a spinning thread holds a core that the thread everyone waits for needs, so every parallel region
waits for a time slice: on a loaded 2-core machine an ``mlp-l2`` epoch took 2.2 s with 2 threads
against 0.13 s with 1 (``benchmarks/threads.py`` measures it). Two remedies, both applied:

* ``OMP_WAIT_POLICY=PASSIVE``: waiting threads sleep instead of spinning. ``import reglab`` sets it
  (unless it is set already) before torch loads OpenMP, which reads it once, when it loads;
* :func:`use_free_cores` before each run and each batch of runs: ``torch.set_num_threads(n)`` with n
  the free cores (:func:`free_cores`), and never more than ``OMP_NUM_THREADS`` when that is set.
"""

from __future__ import annotations

import math
import os
import time

import torch

_seen = {"wall": time.monotonic(), "cpu": time.process_time(), "own": 0.0}
"""When this process last measured its own load, its CPU time then, and that load (cores busy)."""


def cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's or taskset's share)."""
    return len(os.sched_getaffinity(0))


def own_load() -> float:
    """The cores this process kept busy since it last measured (CPU time over wall time), measured
    again once a second has passed (the 1-minute load average moves slower than that anyway)."""
    wall, cpu = time.monotonic(), time.process_time()
    if wall - _seen["wall"] > 1.0:
        _seen.update(own=(cpu - _seen["cpu"]) / (wall - _seen["wall"]), wall=wall, cpu=cpu)
    return _seen["own"]


def free_cores() -> int:
    """The cores that other processes leave free, at least 1: ours minus the 1-minute load average,
    that load less the part this process made itself (:func:`own_load`)."""
    others = max(0.0, os.getloadavg()[0] - own_load())
    return max(1, cores() - math.floor(others + 0.5))


def threads_limit() -> int | None:
    """``OMP_NUM_THREADS`` when the user set it to a number."""
    limit = os.environ.get("OMP_NUM_THREADS", "")
    return int(limit) if limit.isdigit() and int(limit) > 0 else None


def use_free_cores() -> int:
    """Set torch's compute threads to the free cores (no more than ``OMP_NUM_THREADS`` when set);
    returns that number."""
    n = min(free_cores(), threads_limit() or cores())
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
