"""Many models on one GPU against the bare vmap floor: models trained per minute, side by side.

The work: K values of λ (log-spaced in [1e-6, 1e-1], seed 0) of the ``mlp-l2`` recipe on its
mnist1d data, ``--epochs`` epochs of batches of 128, each epoch with an evaluation of train and
validation; three models:

* ``mlp-l2``            the recipe's MLP 40-512-256-128-10 with dropout 0.2;
* ``mlp-l2 no dropout`` the same with ``model.dropout=0``;
* ``custom``            a user's own model (``model.kind=custom``, the factory
  ``sweep_floor.custom_net``: a residual MLP with layer normalization and ``nn.Dropout``).

Two ways, timed in this process (CUDA synchronized), after one untimed warm-up round of each:

* ``floor``   the bare floor: the K models' parameters stacked (``torch.func.stack_module_state``),
  one forward and backward of all of them per step as ``torch.func.vmap`` of ``functional_call``
  (``randomness="different"``: each model its own dropout masks), each model its own shuffle,
  the per-model gradient clipping (norm 1) and coupled L2 (g ← g + λ_m·w) written on the stacked
  gradients, and **one** ``torch.optim.Adam`` (fused on CUDA) over the stacked tensors;
* ``reglab``  ``reglab.train.batched.run_many`` of the K configs (``train.epochs=E``,
  ``train.early_stopping=null``, no plots): the engine, the models built from their configs,
  every run folder written. A group that the engine cannot stack (see
  ``reglab.train.batched.vectorizable``) trains one model after another: then only the first
  ``--alone`` models are trained and the rate is theirs (the line says so).

The floor leaves out what the engine does besides (per-model LR schedules, early stopping and
restore-best, the final test evaluation, run folders), so a ratio below 1 is partly that work.

    python benchmarks/gpu_floor.py                               # CUDA: K = 16, 128, 512, 3 epochs
    python benchmarks/gpu_floor.py --device cpu --models 2 --epochs 1 --alone 1   # the code path, tiny
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import tempfile
import time

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sweep_floor import custom_net, lams, recipe_mlp

KINDS = {
    "mlp-l2": [],
    "mlp-l2 no dropout": ["model.dropout=0"],
    "custom": ["model.kind=custom", "model.factory=sweep_floor:custom_net", "model.dropout=0"],
}
BATCH, EVAL_CHUNK = 128, 2048


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(kind: str, inputs: tuple[int, ...], n_outputs: int) -> nn.Module:
    if kind == "custom":
        return custom_net(inputs, n_outputs)
    model = recipe_mlp(int(torch.tensor(inputs).prod()), n_outputs)
    if kind == "mlp-l2 no dropout":
        model = nn.Sequential(*[m for m in model if not isinstance(m, nn.Dropout)])
    return model


def floor(kind: str, k: int, epochs: int, data: dict, device: torch.device) -> dict[str, list[float]]:
    """K models trained as one vmap computation with one Adam (the module's docstring); the last
    epoch's mean loss and accuracy of each model on train and validation."""
    x, y = data["train"]
    n, n_outputs = len(x), int(y.max()) + 1
    torch.manual_seed(0)
    models = [build(kind, tuple(x.shape[1:]), n_outputs).to(device) for _ in range(k)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    forward = vmap(lambda p, b, xb: functional_call(base, (p, b), (xb,)), randomness="different")
    shared_x = vmap(lambda p, b, xb: functional_call(base, (p, b), (xb,)), in_dims=(0, 0, None))
    tensors = list(params.values())
    weights = [p for name, p in params.items() if p.dim() >= 3]  # [K, out, in]: each model's matrices
    lam = torch.tensor([float(v) for v in lams(k)], device=device)
    opt = torch.optim.Adam(tensors, lr=1e-3, fused=device.type == "cuda")
    metrics: dict[str, list[float]] = {}
    for _ in range(epochs):
        base.train()
        orders = torch.argsort(torch.rand(k, n, device=device), dim=1)
        for start in range(0, n, BATCH):
            idx = orders[:, start : start + BATCH]
            out = forward(params, buffers, x[idx])
            loss = nn.functional.cross_entropy(out.flatten(0, 1), y[idx].flatten(), reduction="none")
            opt.zero_grad(set_to_none=True)
            loss.view(k, -1).mean(1).sum().backward()
            with torch.no_grad():
                norm = torch.stack([p.grad.flatten(1).pow(2).sum(1) for p in tensors]).sum(0).sqrt()
                scale = (1.0 / (norm + 1e-6)).clamp_(max=1.0)
                for p in tensors:
                    p.grad.mul_(scale.view(-1, *[1] * (p.dim() - 1)))
                for w in weights:
                    w.grad.add_(w * lam.view(-1, 1, 1))
            opt.step()
        base.eval()
        with torch.no_grad():
            for split in ("train", "val"):
                xs, ys = data[split]
                totals = torch.zeros(k, device=device)
                correct = torch.zeros(k, device=device)
                for i in range(0, len(xs), EVAL_CHUNK):
                    out = shared_x(params, buffers, xs[i : i + EVAL_CHUNK])
                    target = ys[i : i + EVAL_CHUNK].expand(k, -1)
                    totals += nn.functional.cross_entropy(out.flatten(0, 1), target.flatten(),
                                                          reduction="none").view(k, -1).sum(1)
                    correct += (out.argmax(2) == target).sum(1)
                metrics[f"{split}_loss"] = (totals / len(xs)).tolist()  # each epoch's metrics reach the host
                metrics[f"{split}_acc"] = (correct / len(xs)).tolist()
    return metrics


def configs(kind: str, k: int, epochs: int, device: torch.device) -> list:
    from reglab.config import load_config

    common = [f"train.epochs={epochs}", "train.plots=false", "train.early_stopping=null", f"device={device}",
              *KINDS[kind]]
    return [load_config("mlp-l2", common + [f"reg.lam={lam}"]) for lam in lams(k)]


def reglab_way(kind: str, k: int, epochs: int, device: torch.device, alone: int) -> tuple[int, str]:
    """Train the K configs with ``run_many`` (or the first ``alone`` of them one by one when the
    engine cannot stack them); the number trained and how."""
    from reglab.train.batched import run_many, vectorizable

    group = configs(kind, k, epochs, device)
    why = vectorizable(group) if k > 1 else None
    if why is not None:
        group = group[:alone]
    with tempfile.TemporaryDirectory() as root:
        results = run_many(group, root, progress=False)
    failed = [r.summary.get("reason") for r in results if not r.ok]
    if failed:
        raise SystemExit(f"reglab: {len(failed)} runs failed: {failed[0]}")
    return len(group), "stacked" if why is None else f"one by one ({why}): {len(group)} of {k} timed"


def timed(fn, device: torch.device) -> float:
    sync(device)
    started = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", type=int, nargs="+", default=[16, 128, 512], help="values of K")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--kinds", nargs="+", choices=list(KINDS), default=list(KINDS))
    parser.add_argument("--alone", type=int, default=8, help="models timed when a group trains one by one")
    args = parser.parse_args()
    device = torch.device(args.device)
    from reglab.config import load_config
    from reglab.train.experiment import prepare

    exp = prepare(load_config("mlp-l2", [f"device={device}"]))
    data = {name: exp.tensors[name] for name in ("train", "val")}
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    print(f"device: {device} ({name}), torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
          f"{args.epochs} epochs, median of {args.repeats}")
    print(f"{'model':<18} {'K':>4}  {'floor models/min':>17} {'reglab models/min':>18} {'reglab / floor':>15}  how")
    for kind in args.kinds:
        for k in args.models:
            floor(kind, k, 1, data, device)  # warm-up: kernels, allocator, lazy imports
            reglab_way(kind, min(k, 2), 1, device, 1)
            seconds: dict[str, list[float]] = {"floor": [], "reglab": []}
            trained, how = k, ""
            for r in range(args.repeats):
                for way in (("floor", "reglab") if r % 2 == 0 else ("reglab", "floor")):
                    if way == "floor":
                        seconds[way].append(timed(lambda kind=kind, k=k: floor(kind, k, args.epochs, data, device), device))
                    else:
                        started = time.perf_counter()
                        trained, how = reglab_way(kind, k, args.epochs, device, args.alone)
                        sync(device)
                        seconds[way].append(time.perf_counter() - started)
            rate_floor = k / statistics.median(seconds["floor"]) * 60
            rate = trained / statistics.median(seconds["reglab"]) * 60
            print(f"{kind:<18} {k:>4}  {rate_floor:17.1f} {rate:18.1f} {rate / rate_floor:15.2f}  {how}", flush=True)


if __name__ == "__main__":
    main()
