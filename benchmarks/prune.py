"""Successive halving (``--prune halving``) against the full grid, on the demo's grid.

Each repeat is two real studies (SQLite, in a scratch folder) on the same seeds, one with
``--prune halving`` and one without; repeat i uses the seeds i·S … i·S + S − 1, so the repeats are
different seed sets. For each it prints the config chosen on validation by the full grid and by the
pruned study, whether they are the same, the model-epochs of each (the sum of every run's
``epochs_run``, early stopping included) and their ratio, the wall time, and ``miss``: how much
lower the pruned study's choice scored in the full grid than the full grid's choice (mean
validation value over the seeds), beside ``SE``, the standard error of that choice's seed mean.
The target: the same chosen config in ≥ 9 of 10 repeats at ≤ 40% of the full grid's model-epochs.

The grid and settings are the Makefile's ``DEMO_GRID`` and ``DEMO_SET`` (10 points: none, l2 and
l1 at three λ, dropout at three rates; an MLP 256-128 on mnist1d), with fewer epochs and seeds by
default so that a study fits a loaded 2-core machine (``--epochs 30 --seeds 10`` is the demo).

    OMP_NUM_THREADS=1 python benchmarks/prune.py                       # 10 repeats, 3 seeds, 15 epochs
    OMP_NUM_THREADS=1 python benchmarks/prune.py --first 4 --repeats 2 # repeats 4 and 5 only
    python benchmarks/prune.py --seeds 10 --epochs 30 --min-epochs 10  # the demo, first rung at epoch 10
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

import reglab as rl

GRID = {"reg": ["none", "l2", "l1", "dropout"], "reg.lam": "1e-5:1e-3:log:3", "reg.dropout": [0.1, 0.3, 0.5]}
DEMO_SET = ["model.dropout=0", "model.hidden=[256,128]"]
QUIET = ["train.plots=false", "train.save_weights=false"]


def study(folder: Path, name: str, seeds: list[int], epochs: int, prune: str | None, eta: int, min_epochs: int = 1):
    """One study; (chosen label, model-epochs, seconds, label → its runs' validation values)."""
    started = time.perf_counter()
    result = rl.sweep("mlp-l2", *DEMO_SET, f"train.epochs={epochs}", *QUIET, grid=GRID,
                      seeds=",".join(map(str, seeds)), name=name, studies_dir=folder, echo=None,
                      prune=prune, prune_eta=eta, prune_min_epochs=min_epochs)
    seconds = time.perf_counter() - started
    spec, records = result.records()
    values: dict[str, list[float]] = {}
    for r in records:
        if r.status == "ok":
            values.setdefault(r.label, []).append(r.summary[spec["metric"]])
    return result.chosen().label, sum(r.summary["epochs_run"] for r in records), seconds, values


def miss(values: dict[str, list[float]], best: str, other: str) -> float:
    """How much worse, in the full grid, the pruned study's choice scored than the full grid's own
    (mean validation value over the seeds; 0 when they are the same)."""
    return abs(statistics.fmean(values[best]) - statistics.fmean(values[other]))


def standard_error(values: list[float]) -> float:
    """The standard error of the full grid's choice's seed mean: the scale of a miss that is noise."""
    return statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--first", type=int, default=0, help="index of the first repeat (its seed set)")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per study (S)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--eta", type=int, default=3)
    parser.add_argument("--min-epochs", type=int, default=1, help="no rung before this epoch (--prune-min-epochs)")
    args = parser.parse_args()
    print(f"{platform.machine()}, torch {torch.__version__}, Python {platform.python_version()}; "
          f"demo grid, {args.seeds} seeds, {args.epochs} epochs, η={args.eta}, first rung from epoch {args.min_epochs}")
    print(f"{'repeat':>6} {'seeds':>9}  {'chosen (full grid)':<22} {'chosen (pruned)':<22} same "
          f"{'model-epochs full':>17} {'pruned':>7} {'ratio':>6} {'s full':>7} {'s pruned':>8} "
          f"{'miss':>7} {'SE':>6}")
    same, ratios = 0, []
    with tempfile.TemporaryDirectory() as scratch:
        for i in range(args.first, args.first + args.repeats):
            seeds = list(range(i * args.seeds, (i + 1) * args.seeds))
            full = study(Path(scratch), f"full-{i}", seeds, args.epochs, None, args.eta)
            pruned = study(Path(scratch), f"pruned-{i}", seeds, args.epochs, "halving", args.eta, args.min_epochs)
            agree = full[0] == pruned[0]
            same += agree
            ratios.append(pruned[1] / full[1])
            print(f"{i:>6} {f'{seeds[0]}-{seeds[-1]}':>9}  {full[0]:<22} {pruned[0]:<22} {'yes' if agree else 'NO':<4}"
                  f"{full[1]:>17} {pruned[1]:>7} {ratios[-1]:>6.3f} {full[2]:>7.1f} {pruned[2]:>8.1f} "
                  f"{miss(full[3], full[0], pruned[0]):>7.4f} {standard_error(full[3][full[0]]):>6.4f}", flush=True)
    print(f"same chosen config in {same} of {args.repeats}; model-epochs pruned/full: "
          f"median {sorted(ratios)[len(ratios) // 2]:.3f}, max {max(ratios):.3f} "
          f"(target: ≥ 9 of 10 at ≤ 0.40)")


if __name__ == "__main__":
    main()
