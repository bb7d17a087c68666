"""Adversarial training throughput: K models trained at once against one after another, side by side
in one process.

The models are the ``adversarial-l2`` recipe shrunk to an MLP (784-256-128-10 on its 5,000 MNIST
digits, dropout 0.2, coupled L2, Adam, PGD-5 L∞ adversarial training at ε = 0.2), K values of
``reg.lam`` log-spaced in [1e-5, 1e-2], each with its own seed. The per-epoch robust monitor and the
final robust evaluation run per model in both ways, so they are kept small (``adv.monitor_*``,
``adv.eval_*`` below) to let the training dominate, as in a sweep. Two ways, in this process, on the
threads reglab's thread policy gives it:

* ``one by one``  ``reglab.train.run`` for each config (a single run: a batch of one);
* ``batched``     ``reglab.train.batched.run_many`` on all K configs (one batched computation).

Run folders go to a temporary directory. The ways alternate repeat by repeat (the order rotates) so
that drift in the machine's speed hits both alike; the median of each is printed as models/min, and
the ratio batched / one by one.

    python benchmarks/adversarial_throughput.py                        # K = 8 and 16, CPU
    python benchmarks/adversarial_throughput.py --models 16 64 --device cuda --epochs 3
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
from reglab.train.batched import run_many, vectorizable

SHRUNK = [
    "model.kind=mlp", "model.hidden=[256,128]", "model.dropout=0.2", "train.plots=false", "train.save_weights=false",
    "adv.method=pgd", "adv.steps=5", "adv.monitor_examples=64", "adv.monitor_steps=5", "adv.eval_eps=[]",
    "adv.eval_steps=5", "adv.eval_restarts=1", "adv.eval_examples=64",
]  # fmt: skip


def configs(k: int, epochs: int, device: str, extra: list[str]):
    lams = np.logspace(-5, -2, k)
    return [load_config("adversarial-l2", SHRUNK + [f"train.epochs={epochs}", f"device={device}", *extra,
                                                    f"reg.lam={lam:.3g}", f"seed={i}"])
            for i, lam in enumerate(lams)]


def one_by_one(cfgs, root) -> None:
    for config in cfgs:
        if not run(config, root, progress=False).ok:
            raise SystemExit(f"a run failed: {config.name}")


def batched(cfgs, root) -> None:
    if not all(r.ok and r.summary.get("vectorized") for r in run_many(cfgs, root, progress=False)):
        raise SystemExit("a batched run failed or did not train batched")


def timed(way, cfgs, device: str) -> float:
    with tempfile.TemporaryDirectory() as root:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        started = time.perf_counter()
        way(cfgs, root)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[8, 16], help="K, the models of each sweep")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more config overrides")
    args = parser.parse_args()
    machine = torch.cuda.get_device_name() if args.device.startswith("cuda") else \
        f"{platform.processor() or platform.machine()}, {len(os.sched_getaffinity(0))} cores"
    print(f"machine: {machine}, torch {torch.__version__}, device {args.device}; load average before: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    print(f"adversarial-l2 as an MLP, PGD-5 training, train.epochs={args.epochs}" + "".join(f" {o}" for o in args.set))
    ways = {"one by one": one_by_one, "batched": batched}
    timed(batched, configs(2, 1, args.device, args.set), args.device)  # warm-up: data loading, kernels
    for k in args.models:
        cfgs = configs(k, args.epochs, args.device, args.set)
        assert vectorizable(cfgs) is None, vectorizable(cfgs)
        times: dict[str, list[float]] = {name: [] for name in ways}
        for r in range(args.repeats):
            names = list(ways)[r % 2:] + list(ways)[: r % 2]
            for name in names:
                times[name].append(timed(ways[name], cfgs, args.device))
                print(f"  K = {k}, repeat {r + 1}: {name} {times[name][-1]:.1f} s", flush=True)
        rate = {name: k / statistics.median(values) * 60 for name, values in times.items()}
        for name in ways:
            print(f"K = {k:<4} {name:<11} {statistics.median(times[name]):8.1f} s   {rate[name]:8.1f} models/min")
        print(f"K = {k:<4} batched / one by one  {rate['batched'] / rate['one by one']:6.2f}×")
    print("load average after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
