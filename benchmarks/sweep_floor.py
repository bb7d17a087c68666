"""A sweep on CPU against the bare floor: models trained per minute, whole processes timed.

The work is K values of λ (log-spaced in [1e-6, 1e-1], seed 0) of the ``mlp-l2`` recipe: its
mnist1d data and its MLP 40-512-256-128-10 with dropout 0.2, coupled L2, Adam, plateau LR, gradient
clipping, batch 128, ``train.epochs`` epochs, each with an evaluation of train and validation (and
one of test at the end). The same work is done with a custom model (``model.kind=custom``, the
factory :func:`custom_net` of this file: a residual MLP with layer normalization and ``nn.Dropout``)
in place of the recipe's MLP. Ways, each a set of processes started together and timed from the
first start to the last exit (process start, imports, data, training, storage, run folders):

* ``floor``           the bare floor: P = cores processes with one thread each
  (``OMP_NUM_THREADS=1``), each a plain PyTorch loop over its share of the models, one model after
  another (torch and this file only; the data read from one ``.pt`` file written beforehand);
* ``sweep``           ``reglab sweep`` with its defaults (one worker in the process), including its
  Optuna storage and every run folder;
* ``sweep P workers`` ``reglab sweep --workers P``.

The ways are interleaved repeat by repeat (the order rotates), so that drift in the machine's speed
hits all alike; the median of each is reported with its ratio to the floor (target ≥ 0.9).

    python benchmarks/sweep_floor.py --models 16 48 --epochs 10 --repeats 1
    python benchmarks/sweep_floor.py --models 16 --kinds custom
    git archive COMMIT src | tar -x -C /tmp/before      # the same against an older commit's code:
    python benchmarks/sweep_floor.py --models 16 --ways sweep --baseline /tmp/before/src
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import torch
from processes import timed
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = {"mlp-l2": [], "custom": ["model.kind=custom", "model.factory=sweep_floor:custom_net", "model.dropout=0"]}
"""Each kind of model: the overrides of the ``mlp-l2`` recipe that make it."""
EVAL_CHUNK = 2048


class Residual(nn.Module):
    """x + f(LayerNorm(x)): a pre-norm residual block."""

    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.f = nn.Sequential(nn.Linear(width, width), nn.GELU(), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.f(self.norm(x))


def custom_net(input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    """The custom model: flatten → Linear(d, 256) → GELU → Dropout(0.2) → 2 residual blocks →
    LayerNorm → Linear(256, n_outputs); ``reglab`` builds it through ``model.factory``."""
    width, dropout = 256, 0.2
    inputs = 1
    for size in input_shape:
        inputs *= size
    return nn.Sequential(nn.Flatten(), nn.Linear(inputs, width), nn.GELU(), nn.Dropout(dropout),
                         Residual(width, dropout), Residual(width, dropout), nn.LayerNorm(width),
                         nn.Linear(width, n_outputs))


def recipe_mlp(inputs: int, n_outputs: int) -> nn.Module:
    """``mlp-l2``'s model as people write it: 40-512-256-128-10, ReLU, ``nn.Dropout(0.2)``."""
    widths = [inputs, 512, 256, 128]
    layers: list[nn.Module] = [nn.Flatten()]
    for w_in, w_out in zip(widths, widths[1:]):
        layers += [nn.Linear(w_in, w_out), nn.ReLU(), nn.Dropout(0.2)]
    return nn.Sequential(*layers, nn.Linear(widths[-1], n_outputs))


def lams(n: int) -> list[str]:
    return [f"{10 ** (-6 + 5 * i / max(n - 1, 1)):.3g}" for i in range(n)]


def overrides(kind: str, epochs: int) -> list[str]:
    return [f"train.epochs={epochs}", "train.plots=false", "device=cpu", *KINDS[kind]]


def write_data(path: str) -> None:
    """The recipe's train/val/test tensors, as reglab splits them, to ``path`` (for the floor)."""
    from reglab.config import load_config
    from reglab.train.experiment import prepare

    exp = prepare(load_config("mlp-l2", overrides("mlp-l2", 1)))
    torch.save({name: exp.tensors[name] for name in ("train", "val", "test")}, path)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Mean cross-entropy and accuracy, in chunks."""
    loss, correct = 0.0, 0
    for i in range(0, len(x), EVAL_CHUNK):
        out = model(x[i : i + EVAL_CHUNK])
        loss += float(nn.functional.cross_entropy(out, y[i : i + EVAL_CHUNK], reduction="sum"))
        correct += int((out.argmax(1) == y[i : i + EVAL_CHUNK]).sum())
    return loss / len(x), correct / len(x)


def bare_loop(kind: str, data: dict, lam: float, epochs: int) -> dict[str, float]:
    """One model as people write its training in plain PyTorch: the floor's work for one model."""
    torch.manual_seed(0)
    x, y = data["train"]
    n_outputs = int(y.max()) + 1
    model = recipe_mlp(x[0].numel(), n_outputs) if kind == "mlp-l2" else custom_net(tuple(x.shape[1:]), n_outputs)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=4)
    weights = [p for p in model.parameters() if p.dim() >= 2]
    metrics: dict[str, float] = {}
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x)).split(128):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            for w in weights:
                w.grad.add_(w, alpha=lam)  # coupled L2: the gradient of λ/2·‖w‖²
            opt.step()
        model.eval()
        with torch.no_grad():
            for split in ("train", "val"):
                metrics[f"{split}_loss"], metrics[f"{split}_acc"] = evaluate(model, *data[split])
        plateau.step(metrics["val_loss"])
    with torch.no_grad():
        metrics["test_loss"], metrics["test_acc"] = evaluate(model, *data["test"])
    return metrics


def floor_child(args) -> None:
    """Train models ``args.share`` of ``args.shares`` one after another (a floor process)."""
    data = torch.load(args.data)
    results = [bare_loop(args.kind, data, float(lam), args.epochs)
               for lam in lams(args.model_count)[args.share :: args.shares]]
    print(json.dumps(results))


def ways(kind: str, k: int, epochs: int, root: str, data: str, cores: int, baseline: str | None) -> dict:
    """The commands of each way for K = ``k`` models of ``kind``; with ``baseline`` (another source
    tree's ``src``), its sweeps too, as ``… (baseline)``."""
    me = [sys.executable, os.path.abspath(__file__), "--floor-child", "--kind", kind, "--model-count", str(k),
          "--epochs", str(epochs), "--data", data, "--shares", str(cores)]
    reglab = os.path.join(os.path.dirname(sys.executable), "reglab")
    env = {"OMP_NUM_THREADS": None, "OMP_WAIT_POLICY": None, "PYTHONPATH": HERE}
    sweep = [reglab, "sweep", "mlp-l2", *overrides(kind, epochs), "--grid", f"reg.lam={','.join(lams(k))}",
             "--dir", root]
    plan = {"floor": [(me + ["--share", str(i)], {**env, "OMP_NUM_THREADS": "1"}) for i in range(cores)]}
    for label, path in [("", HERE)] + ([(" (baseline)", f"{baseline}{os.pathsep}{HERE}")] if baseline else []):
        tree = {**env, "PYTHONPATH": path}
        plan[f"sweep{label}"] = [(sweep + ["--name", f"s{time.monotonic_ns()}"], tree)]
        plan[f"sweep {cores} workers{label}"] = [(sweep + ["--name", f"w{time.monotonic_ns()}", "--workers",
                                                           str(cores)], tree)]
    return plan


def measure(kind: str, k: int, args, cores: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {}
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as root:
            data = os.path.join(root, "data.pt")
            write_data(data)
            plan = ways(kind, k, args.epochs, root, data, cores, args.baseline)
            names = [name for name in plan if name == "floor" or args.ways is None
                     or name.removesuffix(" (baseline)").split()[-1] in args.ways]
            for name in names[r % len(names):] + names[: r % len(names)]:
                expect = "" if name == "floor" else f"{k} trials done, 0 failed"  # every model trained
                times.setdefault(name, []).append(timed(plan[name], expect))
                print(f"  {kind} K={k} repeat {r + 1}: {name} {times[name][-1]:.1f} s", flush=True)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, nargs="+", default=[16, 48], help="values of K")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(KINDS))
    parser.add_argument("--ways", nargs="+", choices=["sweep", "workers"], default=None,
                        help="only these sweeps beside the floor: the one-worker sweep, the --workers sweep")
    parser.add_argument("--baseline", metavar="SRC", default=None,
                        help="also time the sweeps of the reglab source tree SRC (e.g. an older commit's src)")
    parser.add_argument("--floor-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--kind", default="mlp-l2", help=argparse.SUPPRESS)
    parser.add_argument("--model-count", type=int, default=16, help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--share", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--shares", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor_child:
        floor_child(args)
        return
    cores = len(os.sched_getaffinity(0))
    print(f"machine: {platform.processor() or platform.machine()}, {cores} cores, torch {torch.__version__}, CPU; "
          f"load average before: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    rows = []
    for kind in args.kinds:
        for k in args.models:
            times = measure(kind, k, args, cores)
            rate = {name: k / statistics.median(ts) * 60 for name, ts in times.items()}
            rows += [(kind, k, name, statistics.median(times[name]), rate[name], rate[name] / rate["floor"])
                     for name in times]
    print(f"\n{'model':<8} {'K':>3}  {'way':<28} {'median s':>9} {'models/min':>11} {'/ floor':>8}   "
          f"({args.epochs} epochs, median of {args.repeats})")
    for kind, k, name, seconds, rate, ratio in rows:
        print(f"{kind:<8} {k:>3}  {name:<28} {seconds:9.1f} {rate:11.1f} {ratio:8.2f}")
    print("load average after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
