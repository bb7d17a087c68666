"""Sweep throughput on CPU: models trained per minute, three ways, side by side in one process.

The sweep is 16 values of λ, log-spaced from 1e-6 to 1e-1, of the ``mlp-l2`` recipe (the mnist1d
MLP 40-512-256-128-10 with dropout 0.2, coupled L2, Adam, plateau LR, gradient clipping), with
``train.epochs=5`` and ``train.plots=false``. Every way writes every run folder to a temporary
directory, and each runs as child processes of this one, so that each gets the environment it
names:

* ``sequential``  ``reglab.train.run`` one config after another with torch's defaults: as many
  threads as cores and GNU OpenMP's active (spinning) wait policy, no thread policy;
* ``P procs``     P = cores processes with one thread each (``OMP_NUM_THREADS=1``), each training
  its share of the configs one after another: the best a user does by hand;
* ``sweep``       ``reglab sweep`` with its defaults (one worker in the process, the batched
  engine, reglab's thread policy), including its Optuna storage;
* ``sweep P workers``  ``reglab sweep --workers P``: P worker processes, each training its share
  of the configs batched on the threads its policy gives it.

The ways are interleaved repeat by repeat (the order rotates), so that drift in the machine's speed
hits all alike; the median of each is reported with the ratios. ``--busy 1`` keeps one extra
process spinning on a core during all measurements (the shared-machine case).

    python benchmarks/sweep_throughput.py                  # 16 models, 5 epochs, 1 repeat
    python benchmarks/sweep_throughput.py --busy 1 --epochs 2 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
from processes import timed

BUSY_LOOP = "while True: pass"


def overrides(epochs: int, extra: list[str]) -> list[str]:
    return [f"train.epochs={epochs}", "train.plots=false", "device=cpu", *extra]


def lams(n: int) -> list[str]:
    return [f"{lam:.3g}" for lam in np.logspace(-6, -1, n)]


def child(args) -> None:
    """Train configs ``args.share`` of ``args.shares`` one after another (a child process)."""
    import reglab.train
    import reglab.train.engine
    from reglab.config import load_config

    if args.no_policy:
        reglab.train.engine.use_free_cores = lambda: None  # torch's own thread count, as before the policy
    for lam in lams(args.models)[args.share :: args.shares]:
        config = load_config("mlp-l2", overrides(args.epochs, args.set) + [f"reg.lam={lam}"])
        result = reglab.train.run(config, args.root, progress=False)
        if not result.ok:
            raise SystemExit(f"run failed: {result.summary.get('reason')}")


def ways(args, root: str, cores: int) -> dict[str, list[tuple[list[str], dict[str, str | None]]]]:
    me = [sys.executable, os.path.abspath(__file__), "--models", str(args.models), "--epochs", str(args.epochs),
          "--root", root, "--set", *args.set, "--child"]
    grid = f"reg.lam={','.join(lams(args.models))}"
    reglab = os.path.join(os.path.dirname(sys.executable), "reglab")
    clean = {"OMP_NUM_THREADS": None, "OMP_WAIT_POLICY": None}
    return {
        "sequential": [(me + ["--no-policy"], {**clean, "OMP_WAIT_POLICY": "ACTIVE"})],
        f"{cores} procs": [(me + ["--share", str(i), "--shares", str(cores)], {**clean, "OMP_NUM_THREADS": "1"})
                           for i in range(cores)],
        "sweep": [([reglab, "sweep", "mlp-l2", *overrides(args.epochs, args.set), "--grid", grid,
                    "--name", f"bench{time.monotonic_ns()}", "--dir", root], clean)],
        f"sweep {cores} workers": [([reglab, "sweep", "mlp-l2", *overrides(args.epochs, args.set), "--grid", grid,
                                     "--name", f"bench{time.monotonic_ns()}w", "--dir", root,
                                     "--workers", str(cores)], clean)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--busy", type=int, default=0, help="extra processes spinning during the measurements")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more config overrides")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-policy", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--share", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--shares", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--root", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    cores = len(os.sched_getaffinity(0))
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores, torch {torch.__version__}, "
          f"CPU; {args.busy} extra busy process(es); load average before: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"sweep: mlp-l2, {args.models} values of reg.lam in [1e-6, 1e-1], train.epochs={args.epochs}"
          + "".join(f" {o}" for o in args.set))
    busy = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(args.busy)]
    try:
        times: dict[str, list[float]] = {}
        for r in range(args.repeats):
            with tempfile.TemporaryDirectory() as root:
                plan = ways(args, root, cores)
                names = list(plan)
                for name in names[r % len(names):] + names[: r % len(names)]:
                    times.setdefault(name, []).append(timed(plan[name]))
                    print(f"  repeat {r + 1}: {name} {times[name][-1]:.1f} s", flush=True)
    finally:
        for p in busy:
            p.kill()
    rate = {name: args.models / statistics.median(values) * 60 for name, values in times.items()}
    for name, values in times.items():
        print(f"{name:<11} {statistics.median(values):8.1f} s   {rate[name]:8.1f} models/min")
    procs = next(name for name in rate if name.endswith("procs"))
    print(f"sweep / sequential  {rate['sweep'] / rate['sequential']:6.2f}×   (target ≥ 3)")
    print(f"sweep / {procs:<10}  {rate['sweep'] / rate[procs]:6.2f}×   (target ≥ 1)")
    workers = next(name for name in rate if name.endswith("workers"))
    print(f"{workers} / sweep  {rate[workers] / rate['sweep']:6.2f}×")
    print("load average after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
