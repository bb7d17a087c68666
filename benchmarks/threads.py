"""Thread collapse: one ``mlp-l2`` training epoch under each thread setting, beside busy processes.

OpenMP reads its wait policy once, when torch loads it, so each setting runs in a child process
(the children take turns, the order rotating every repeat); this process times them and prints
the median epoch time of each with its ratio to reglab's policy:

* ``torch default``  as many threads as cores, GNU OpenMP's active (spinning) wait policy;
* ``passive``        as many threads as cores, ``OMP_WAIT_POLICY=PASSIVE``;
* ``1 thread``       ``OMP_NUM_THREADS=1``;
* ``reglab``         what ``import reglab`` and ``reglab.train.run`` choose (passive, free cores).

    python benchmarks/threads.py --busy 1          # one extra process spinning on a core
    python benchmarks/threads.py --busy 0 --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

CHILD = """
import sys, time, torch
import reglab
from reglab.config import load_config
from reglab.train import Member, prepare
from reglab.train.engine import stack_of
from reglab.train.threads import use_free_cores
threads = sys.argv[1]
if threads == "policy":
    use_free_cores()
else:
    torch.set_num_threads(int(threads))
exp = prepare(load_config("mlp-l2", ["device=cpu"]))
stack = stack_of([Member.of(exp)])  # the engine's stack of one, as reglab.train.run trains it
stack.train_epoch()  # warm-up
started = time.perf_counter()
stack.train_epoch()
print(time.perf_counter() - started, torch.get_num_threads())
"""


def settings(cores: int) -> dict[str, tuple[str, dict[str, str | None]]]:
    clean: dict[str, str | None] = {"OMP_NUM_THREADS": None, "OMP_WAIT_POLICY": None}
    return {
        "torch default": (str(cores), {**clean, "OMP_WAIT_POLICY": "ACTIVE"}),
        "passive": (str(cores), {**clean, "OMP_WAIT_POLICY": "PASSIVE"}),
        "1 thread": ("1", {**clean, "OMP_NUM_THREADS": "1"}),
        "reglab": ("policy", clean),
    }


def epoch_seconds(threads: str, env: dict[str, str | None]) -> tuple[float, int]:
    changed = {**os.environ, **env}
    out = subprocess.run([sys.executable, "-c", CHILD, threads], env={k: v for k, v in changed.items() if v is not None},
                         capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), int(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=1, help="extra processes spinning during the measurements")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} cores; {args.busy} extra busy process(es); load average before: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        plan = settings(cores)
        names = list(plan)
        times: dict[str, list[float]] = {name: [] for name in names}
        used: dict[str, int] = {}
        for r in range(args.repeats):
            for name in names[r % len(names):] + names[: r % len(names)]:
                seconds, used[name] = epoch_seconds(*plan[name])
                times[name].append(seconds)
    finally:
        for p in busy:
            p.kill()
    med = {name: statistics.median(values) for name, values in times.items()}
    for name in names:
        print(f"{name:<14} {used[name]} thread(s)  {med[name]:7.3f} s/epoch  {med[name] / med['reglab']:6.2f}× reglab's")
    print("load average after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
