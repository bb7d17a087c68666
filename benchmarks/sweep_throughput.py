"""Sweep throughput: models trained per minute, vectorized vs one after another, in one process.

The sweep is 16 values of λ, log-spaced from 1e-6 to 1e-1, of the ``mlp-l2`` recipe (the mnist1d
MLP 40-512-256-128-10 with dropout 0.2, coupled L2, Adam, plateau LR, gradient clipping), with
``train.epochs=5`` and ``train.plots=false`` (plotting is the same per-run work on both sides).
Both sides write every run folder (config, metrics, summary, weights) to a temporary directory:

* ``sequential``  ``[reglab.train.run(c) for c in configs]``,
* ``vectorized``  ``reglab.vectorized.run_many(configs)``, all 16 models in one batched computation.

The two are interleaved repeat by repeat, so that drift in the machine's speed hits both alike; the
median time of each is reported with the ratio. Both give the same results (tests/test_vectorized.py).

    python benchmarks/sweep_throughput.py                 # torch's default threads
    python benchmarks/sweep_throughput.py --repeats 3 --threads 1
    python benchmarks/sweep_throughput.py --set model.dropout=0    # on CUDA: dropout is not vectorized there
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

import numpy as np
import torch

from reglab.config import load_config
from reglab.train import run
from reglab.vectorized import run_many, vectorizable

TARGET = {"cpu": 3.0, "cuda": 20.0}


def sweep(n: int, epochs: int, device: str, extra: list[str]):
    overrides = [f"train.epochs={epochs}", "train.plots=false", f"device={device}", *extra]
    return [load_config("mlp-l2", overrides + [f"reg.lam={lam:.3g}"]) for lam in np.logspace(-6, -1, n)]


def timed(train) -> float:
    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        results = train(root)
        seconds = time.perf_counter() - started
    assert all(r.ok for r in results), [r.summary.get("reason") for r in results if not r.ok]
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more config overrides")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    configs = sweep(args.models, args.epochs, args.device, args.set)
    reason = vectorizable(configs)
    if reason is not None:
        raise SystemExit(f"the sweep cannot be vectorized here: {reason}")
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device.split(":")[0]
    device = "cpu" if device == "auto" else device
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}"
          + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else ""))
    if hasattr(os, "getloadavg"):
        print("load average before: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"sweep: mlp-l2, {args.models} values of reg.lam in [1e-6, 1e-1], train.epochs={args.epochs}"
          + "".join(f" {o}" for o in args.set))
    times: dict[str, list[float]] = {"sequential": [], "vectorized": []}
    for _ in range(args.repeats):
        times["sequential"].append(timed(lambda root: [run(c, root, progress=False) for c in configs]))
        times["vectorized"].append(timed(lambda root: run_many(configs, root, progress=False)))
    rate = {k: args.models / statistics.median(v) * 60 for k, v in times.items()}
    for name, values in times.items():
        print(f"{name:<11} {statistics.median(values):8.1f} s   {rate[name]:8.1f} models/min")
    ratio = rate["vectorized"] / rate["sequential"]
    print(f"ratio       {ratio:8.2f}×   (target ≥ {TARGET.get(device, 3.0):g}× on {device})")
    if hasattr(os, "getloadavg"):
        print("load average after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
