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
  the free cores (:func:`free_cores`: the CPUs this process may use less those other processes keep
  busy now), and never more than ``OMP_NUM_THREADS`` when that is set.
"""

from __future__ import annotations

import math
import os
import time

import psutil
import torch

SAMPLE_SECONDS = 0.2
"""How long :func:`busy_elsewhere` watches the CPUs."""
REUSE_SECONDS = 5.0
"""How long a measurement of the free cores stands for the next calls (runs started in a row)."""

_last: dict[str, float] = {"at": -math.inf, "free": 0}


def cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's or taskset's share)."""
    return len(os.sched_getaffinity(0))


def busy_elsewhere(seconds: float = SAMPLE_SECONDS) -> float:
    """The cores that other processes keep busy now: Σ over this process's CPUs of their busy
    fraction during ``seconds`` (psutil, from the kernel's per-CPU times), less the CPU time this
    process itself took in that window.

    A short sample of now, not the 1-minute load average: that average still counts, for a minute
    or more, a run that has just ended, so a run started right after another (a sweep after a
    sweep, the runs of a benchmark) would leave cores idle."""
    own = time.process_time()
    percents = psutil.cpu_percent(interval=seconds, percpu=True)
    own = (time.process_time() - own) / seconds
    mine = [percents[i] for i in os.sched_getaffinity(0) if i < len(percents)]
    return max(0.0, sum(mine) / 100 - own)


def free_cores() -> int:
    """The cores that other processes leave free, at least 1: ours minus those busy elsewhere
    (:func:`busy_elsewhere`, rounded), measured again when the last measurement is older than
    :data:`REUSE_SECONDS`."""
    now = time.monotonic()
    if now - _last["at"] > REUSE_SECONDS:
        _last.update(at=now, free=max(1, cores() - math.floor(busy_elsewhere() + 0.5)))
    return int(_last["free"])


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
