"""Epoch time of adversarial training relative to clean training, side by side in one process.

On the ``adversarial-l2`` recipe's data and model (its L2 penalty attached), it times one training
epoch (the engine's stack of one, ``train_epoch``: attack + loss + backward + step for every batch) of

* ``clean``    standard training (the baseline),
* ``PGD-k``    Madry's PGD adversarial training with k = 3, 7, 10 steps,
* ``FGSM-RS``  fast FGSM with a random start (Wong et al. 2020).

A PGD-k step costs k input-gradient passes plus the training pass, so the ideal ratio is k + 1;
the targets are PGD-k ≤ 1.15·(k + 1) and FGSM-RS ≤ 2.3. Variants are interleaved epoch by epoch
(the order rotates every repeat) so that drift in the machine's speed hits all alike; the median
epoch time of each is reported with its ratio to clean.

    python benchmarks/adversarial_cost.py                 # 1 thread, 3 repeats
    python benchmarks/adversarial_cost.py --threads 2 --repeats 5 --n-train 1000
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

from reglab.config import load_config
from reglab.train import Member, prepare
from reglab.train.engine import stack_of

VARIANTS = {  # name → (overrides, target ratio to clean)
    "clean": (["adv.method=none"], None),
    "PGD-3": (["adv.method=pgd", "adv.steps=3"], 1.15 * 4),
    "PGD-7": (["adv.method=pgd", "adv.steps=7"], 1.15 * 8),
    "PGD-10": (["adv.method=pgd", "adv.steps=10"], 1.15 * 11),
    "FGSM-RS": (["adv.method=fgsm-rs"], 2.3),
}


def experiments(recipe: str, n_train: int | None) -> dict:
    extra = [f"data.n_train={n_train}"] if n_train else []
    return {name: prepare(load_config(recipe, overrides + extra)) for name, (overrides, _) in VARIANTS.items()}


def bench(exps: dict, repeats: int) -> dict[str, float]:
    names = list(exps)
    stacks = {name: stack_of([Member.of(exps[name])]) for name in names}  # as reglab.train.run trains them
    for name in names:  # warm-up: one epoch each
        stacks[name].train_epoch()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            t0 = time.perf_counter()
            stacks[name].train_epoch()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def table(med: dict[str, float]) -> str:
    base = med["clean"]
    lines = [f"{'variant':<8} {'s/epoch':>8} {'× clean':>8}  target"]
    for name, (_, target) in VARIANTS.items():
        ratio = med[name] / base
        verdict = "baseline" if target is None else f"≤ {target:.2f}×: {'ok' if ratio <= target else 'MISSED'}"
        lines.append(f"{name:<8} {med[name]:8.3f} {ratio:8.2f}  {verdict}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--recipe", default="adversarial-l2")
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs per variant")
    ap.add_argument("--n-train", type=int, default=None, help="train on this many examples (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    exps = experiments(args.recipe, args.n_train)
    exp = exps["clean"]
    cfg = exp.config
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads={args.threads}; "
        f"recipe {args.recipe}: {cfg.data.name}, {len(exp.tensors['train'][0])} training examples, "
        f"batch {cfg.train.batch_size}, {cfg.model.kind} {cfg.model.channels}+{cfg.model.dense}, "
        f"ε={cfg.adv.eps:g} {cfg.adv.norm}, reg {cfg.reg.penalty} λ={cfg.reg.lam:g}; "
        f"median of {args.repeats} interleaved epochs per variant"
    )
    print(table(bench(exps, args.repeats)))


if __name__ == "__main__":
    main()
