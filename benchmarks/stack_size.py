"""Training time per model-epoch of the stacked backend against the stack size K, side by side in
one process: ``mlp-l2`` (the mnist1d MLP 40-512-256-128-10, coupled L2, Adam, clipping) with its
dropout 0.2 and without (``model.dropout=0``), K = 1, 4, 16 models of different λ, best of 3
epochs after one warm-up epoch (training only: no evaluation, no run folders).

    python benchmarks/stack_size.py --threads 2
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from reglab.config import load_config
from reglab.train.engine import stack_of
from reglab.train.experiment import prepare
from reglab.train.tracker import Member


def members(k: int, extra: list[str]) -> list[Member]:
    lams = [f"{lam:.3g}" for lam in np.logspace(-6, -1, k)]
    return [Member.of(prepare(load_config("mlp-l2", ["train.plots=false", "device=cpu", f"reg.lam={lam}", *extra])))
            for lam in lams]


def per_model_epoch(k: int, extra: list[str], repeats: int) -> float:
    """Seconds per model-epoch of a stack of k."""
    stack = stack_of(members(k, extra))
    stack.train_epoch()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        stack.train_epoch()
        times.append(time.perf_counter() - started)
    return min(times) / k


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{args.threads} thread(s); load average before: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    for label, extra in (("dropout 0.2", []), ("no dropout", ["model.dropout=0"])):
        base = None
        for k in args.sizes:
            seconds = per_model_epoch(k, extra, args.repeats)
            base = base or seconds
            print(f"{label:<12} K = {k:<3} {seconds * 1e3:7.1f} ms per model-epoch   K = {args.sizes[0]} / this: "
                  f"{base / seconds:5.2f}×")
    print("load average after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
