"""The batched engine's Adam against torch's own Adam functions on the same stacked tensors.

K models of ``mlp-l2`` (the mnist1d MLP 40-512-256-128-10) stacked as the batched engine holds
them ([K, …] per parameter), fixed random gradients, one optimizer step per call, no forward or
backward. The ways, side by side in one process (interleaved repeats, medians):

* ``engine, one lr``      ``StackedOptimizer`` when every model has the same lr (one ``addcdiv``);
* ``engine, lr per model`` ``StackedOptimizer`` with a different lr for each model (an lr sweep);
* ``torch single``        ``torch.optim.adam.adam`` (single-tensor) on the stacked tensors, one lr;
* ``torch foreach``       the same with ``foreach=True``, one lr;
* ``torch per model``     ``torch.optim.adam.adam`` called once per model on its rows, each with
  its own lr: what torch's functions need when the lrs differ.

After the timed steps it checks whether each torch way left the parameters bit for bit where the
engine's matching way left them.

    OMP_NUM_THREADS=1 python benchmarks/stacked_optimizer.py --models 16 --steps 200
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.optim.adam import adam

from reglab.config import load_config
from reglab.train import prepare
from reglab.train.stacked_optim import StackedOptimizer

BETAS, EPS = (0.9, 0.999), 1e-8


def stacked_tensors(models: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The stacked parameters of ``models`` mlp-l2 models, and fixed random gradients for them."""
    model = prepare(load_config("mlp-l2", ["data.n_train=200"])).model
    g = torch.Generator().manual_seed(0)
    params = {n: p.detach().unsqueeze(0).repeat(models, *[1] * p.dim()).clone() for n, p in model.named_parameters()}
    grads = {n: torch.randn(p.shape, generator=g) * 1e-2 for n, p in params.items()}
    return params, grads


class Engine:
    def __init__(self, models: int, lrs: list[float]):
        self.params, self.grads = stacked_tensors(models)
        self.opt = StackedOptimizer("adam", {"betas": BETAS, "eps": EPS})
        self.opt.shared_lr = lrs[0] if len(set(lrs)) == 1 else None
        self.lr = torch.tensor(lrs, dtype=torch.float64)

    def step(self):
        self.opt.step(self.params, self.grads, self.lr, None)


class Torch:
    def __init__(self, models: int, lrs: list[float], foreach: bool, per_model: bool):
        params, grads = stacked_tensors(models)
        self.params, self.grads = list(params.values()), list(grads.values())
        self.avgs = [torch.zeros_like(p) for p in self.params]
        self.sqs = [torch.zeros_like(p) for p in self.params]
        self.lrs, self.foreach, self.per_model = lrs, foreach, per_model
        # one step count per tensor that torch's adam updates (it increments them itself)
        self.steps = [[torch.zeros(()) for _ in self.params] for _ in range(models if per_model else 1)]

    def call(self, rows, lr, steps):
        adam([p[rows] for p in self.params], [g[rows] for g in self.grads], [a[rows] for a in self.avgs],
             [s[rows] for s in self.sqs], [], steps, foreach=self.foreach, amsgrad=False,
             beta1=BETAS[0], beta2=BETAS[1], lr=lr, weight_decay=0.0, eps=EPS, maximize=False)

    def step(self):
        if self.per_model:  # row views: adam updates them in place, in the stack
            for m, lr in enumerate(self.lrs):
                self.call(m, lr, self.steps[m])
        else:
            self.call(slice(None), self.lrs[0], self.steps[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=16)
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    k = args.models
    one, each = [1e-3] * k, [1e-3 * (1 + m / k) for m in range(k)]
    ways = {"engine, one lr": Engine(k, one), "engine, lr per model": Engine(k, each),
            "torch single": Torch(k, one, False, False), "torch foreach": Torch(k, one, True, False),
            "torch per model": Torch(k, each, False, True)}
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.steps):
        for name, way in ways.items():
            started = time.perf_counter()
            way.step()
            times[name].append(time.perf_counter() - started)
    base = statistics.median(times["engine, one lr"])
    print(f"{k} stacked mlp-l2 models, {args.steps} Adam steps each, {torch.get_num_threads()} thread(s)")
    for name, t in times.items():
        print(f"{name:22s} {statistics.median(t) * 1e3:8.3f} ms/step  {statistics.median(t) / base:5.2f}×")
    engine_one, engine_each = (list(ways[n].params.values()) for n in ("engine, one lr", "engine, lr per model"))
    for name, reference in (("torch single", engine_one), ("torch foreach", engine_one), ("torch per model", engine_each)):
        same = all(torch.equal(a, b) for a, b in zip(ways[name].params, reference))
        print(f"{name} == engine: {'bit for bit' if same else 'NOT bit for bit'}")


if __name__ == "__main__":
    main()
