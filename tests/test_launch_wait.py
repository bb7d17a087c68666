"""The progress loop of ``--workers N`` ends when the last worker does, not up to a poll later."""

import subprocess
import sys
import time

from reglab.study import launch


def test_the_pause_ends_as_soon_as_every_process_has_exited():
    procs = [subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({s})"]) for s in (0.2, 0.4)]
    started = time.monotonic()
    launch.wait_for(procs, 30.0)
    assert all(p.poll() is not None for p in procs)
    assert time.monotonic() - started < 10.0  # far from the 30 s given: it returned when both exited


def test_the_pause_lasts_at_most_its_seconds_while_a_process_runs():
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        started = time.monotonic()
        launch.wait_for([proc], 0.3)
        assert 0.25 < time.monotonic() - started < 5.0 and proc.poll() is None
    finally:
        proc.kill()
        proc.wait()
