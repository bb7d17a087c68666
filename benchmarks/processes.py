"""Whole processes started together and timed, for the benchmarks that time a sweep end to end
(``sweep_throughput.py``, ``sweep_floor.py``)."""

from __future__ import annotations

import os
import subprocess
import time


def spawn(argv: list[str], env: dict[str, str | None]) -> subprocess.Popen:
    """Start ``argv`` with this environment changed by ``env`` (None: the variable is removed)."""
    changed = {**os.environ, **env}
    return subprocess.Popen(argv, env={k: v for k, v in changed.items() if v is not None},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def timed(commands: list[tuple[list[str], dict[str, str | None]]], expect: str | None = None) -> float:
    """Seconds until every command (started together) has finished; each must succeed, and the
    output of the last one contain ``expect`` when it is given."""
    started = time.perf_counter()
    procs = [spawn(argv, env) for argv, env in commands]
    outputs = [p.communicate()[0].decode() for p in procs]
    seconds = time.perf_counter() - started
    for p, out in zip(procs, outputs):
        if p.returncode != 0:
            raise SystemExit(f"a child failed (exit {p.returncode}):\n{out}")
    if expect is not None and expect not in outputs[-1]:
        raise SystemExit(f"'{expect}' is not in the output of {commands[-1][0][:3]}:\n{outputs[-1]}")
    return seconds
