"""Per-step overhead of the Regularizer's hooks, side by side in one process.

For an MLP on mnist1d-shaped data (40 → 256 → 128 → 10) and a small CNN on scikit-learn's digits
(1×8×8), it times one training step (forward + backward + Adam step, batch 128) for:

* ``plain``        no penalty (the baseline),
* ``coupled L2``   ``Regularizer(model, L2(λ))`` attached to Adam,
* ``decoupled L2`` the same with ``mode="decoupled"`` (= AdamW),
* ``proximal L1``  ``Regularizer(model, L1(λ), mode="proximal")``,
* ``hand-written`` ``loss + λ * sum(p.pow(2).sum() for p in model.parameters())``,
* ``torch wd``     torch's own coupled L2: ``Adam`` with ``weight_decay=λ`` on the same tensors
  (a param group for the weights, one without decay for the rest), the line coupled L2 is
  compared with (target ≤ 1.02× of it).

A last table times ``optimizer.step()`` alone (fixed random gradients, no forward/backward) for
``plain``, ``coupled L2`` and ``torch wd``: the hooks' own cost, without the noise of the rest.

Then a whole run: ``reglab.train.run`` of ``mlp-l2`` (40-512-256-128-10, dropout 0.2, coupled L2,
Adam, clipping by norm 1, plateau LR, per-epoch evaluation of train and validation, run folder
without plots) against a bare PyTorch loop doing the same training and per-epoch evaluation on the
same tensors with ``nn.Dropout``, and no run folder (target ≤ 1.5×; runs alternate, medians).
``reglab.train.run`` trains it as a stack of one on stacked parameters; the same run through the
engine's other backend (a stack of one by the task's own step on its ``nn.Module``,
``reglab.train.module_stack``, which GAN, adversarial and batch-normalized runs take) is timed
beside it.

Variants are interleaved step by step (round robin, the order rotating), so that drift and load
from other processes hit all of them alike; the median of each variant's single-step times is
reported with its ratio to ``plain``.

    python benchmarks/overhead.py               # 1 thread
    python benchmarks/overhead.py --threads 2 --repeats 40
    python benchmarks/overhead.py --run-epochs 10 --run-repeats 5
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time

import numpy as np
import torch
from torch import nn

import reglab as rl

TARGETS = {"coupled L2": 1.05, "decoupled L2": 1.05, "proximal L1": 1.10}
TORCH_WD_TARGET = 1.02  # coupled L2 against torch's own weight_decay
LAM = 1e-4


def mnist1d_data(random: bool) -> tuple[torch.Tensor, torch.Tensor]:
    if random:
        g = torch.Generator().manual_seed(0)
        return torch.randn(4000, 40, generator=g), torch.randint(0, 10, (4000,), generator=g)
    from mnist1d.data import get_dataset_args, make_dataset  # generated locally, no download

    ds = make_dataset(get_dataset_args())
    return torch.tensor(ds["x"], dtype=torch.float32), torch.tensor(ds["y"], dtype=torch.long)


def digits_data() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    return x, torch.tensor(d.target, dtype=torch.long)


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(40, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10),
    )  # fmt: skip


def make_optimizer(name: str, model: nn.Module) -> torch.optim.Optimizer:
    """Adam for this variant, with the regularizer attached (or torch's weight_decay)."""
    if name == "torch wd":
        decayed = {id(p) for _, p in rl.weights().resolve(model)}
        groups = [
            {"params": [p for p in model.parameters() if id(p) in decayed], "weight_decay": LAM},
            {"params": [p for p in model.parameters() if id(p) not in decayed], "weight_decay": 0.0},
        ]
        opt = torch.optim.Adam(groups, lr=1e-3)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    if name == "coupled L2":
        rl.Regularizer(model, rl.L2(LAM)).attach(opt)
    elif name == "decoupled L2":
        rl.Regularizer(model, rl.L2(LAM), mode="decoupled").attach(opt)
    elif name == "proximal L1":
        rl.Regularizer(model, rl.L1(LAM), mode="proximal").attach(opt)
    return opt


def make_variant(name: str, base: nn.Module):
    """A closure doing one training step on (x, y) for this variant, with its own model copy."""
    model = copy.deepcopy(base)
    opt = make_optimizer(name, model)
    hand = name == "hand-written"
    loss_fn = nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        if hand:
            loss = loss + LAM * sum(p.pow(2).sum() for p in model.parameters())
        loss.backward()
        opt.step()

    return step


VARIANTS = ["plain", "coupled L2", "decoupled L2", "proximal L1", "hand-written", "torch wd"]


def bench(base: nn.Module, x: torch.Tensor, y: torch.Tensor, repeats: int, block: int, batch: int):
    g = torch.Generator().manual_seed(0)
    batches = [(x[i], y[i]) for i in (torch.randint(0, len(x), (batch,), generator=g) for _ in range(block))]
    steps = {v: make_variant(v, base) for v in VARIANTS}
    for v in VARIANTS:  # warm-up
        for xb, yb in batches[:5]:
            steps[v](xb, yb)
    times: dict[str, list[float]] = {v: [] for v in VARIANTS}
    clock = time.perf_counter
    for r in range(repeats):
        for i, (xb, yb) in enumerate(batches):
            k = (r + i) % len(VARIANTS)  # rotate which variant goes first
            for v in VARIANTS[k:] + VARIANTS[:k]:
                t0 = clock()
                steps[v](xb, yb)
                times[v].append(clock() - t0)
    return {v: statistics.median(ts) for v, ts in times.items()}


def bench_step_only(base: nn.Module, steps: int = 3000) -> dict[str, float]:
    """Median time of ``optimizer.step()`` alone, with fixed gradients, interleaved."""
    names = ["plain", "coupled L2", "torch wd"]
    optimizers = {}
    for name in names:
        model = copy.deepcopy(base)
        for p in model.parameters():
            p.grad = torch.randn_like(p)
        optimizers[name] = make_optimizer(name, model)
    times: dict[str, list[float]] = {v: [] for v in names}
    clock = time.perf_counter
    for r in range(steps):
        k = r % len(names)
        for name in names[k:] + names[:k]:
            t0 = clock()
            optimizers[name].step()
            times[name].append(clock() - t0)
    return {v: statistics.median(ts) for v, ts in times.items()}


def table(title: str, med: dict[str, float]) -> str:
    base = med["plain"]
    lines = [title, f"{'variant':<14} {'ms/step':>8} {'× plain':>8}  target"]
    for v in VARIANTS:
        ratio = med[v] / base
        if v in TARGETS:
            ok = ratio <= TARGETS[v] and med[v] < med["hand-written"]
            target = f"≤ {TARGETS[v]:.2f}× and < hand-written: {'ok' if ok else 'MISSED'}"
        else:
            target = "baseline" if v == "plain" else ""
        lines.append(f"{v:<14} {1e3 * med[v]:8.3f} {ratio:8.3f}  {target}")
    ratio = med["coupled L2"] / med["torch wd"]
    ok = "ok" if ratio <= TORCH_WD_TARGET else "MISSED"
    lines.append(f"coupled L2 / torch wd = {ratio:.3f}  target ≤ {TORCH_WD_TARGET:.2f}×: {ok}")
    return "\n".join(lines)


def bare_mlp_l2_loop(exp, epochs: int) -> None:
    """``mlp-l2`` as people write it in PyTorch, on ``exp``'s tensors: the loop the engine is held to."""
    cfg = exp.config
    widths = [exp.tensors["train"][0][0].numel(), *cfg.model.hidden]
    layers: list[nn.Module] = [nn.Flatten()]
    for w_in, w_out in zip(widths, widths[1:]):
        layers += [nn.Linear(w_in, w_out), nn.ReLU(), nn.Dropout(cfg.model.dropout)]
    model = nn.Sequential(*layers, nn.Linear(widths[-1], 10))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.optim.lr)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=cfg.train.plateau_patience)
    weights = [p for p in model.parameters() if p.dim() >= 2]
    x, y = exp.tensors["train"]
    loss_fn = nn.CrossEntropyLoss()
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x)).split(cfg.train.batch_size):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(x[idx]), y[idx]).backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip_norm)
            for w in weights:
                w.grad.add_(w, alpha=cfg.reg.lam)  # coupled L2
            opt.step()
        model.eval()
        with torch.no_grad():
            metrics = {}
            for split in ("train", "val"):
                xs, ys = exp.tensors[split]
                out = torch.cat([model(xs[i : i + 2048]) for i in range(0, len(xs), 2048)])
                metrics[split] = (float(loss_fn(out, ys)), float((out.argmax(1) == ys).float().mean()))
        plateau.step(metrics["val"][0])


def run_vs_bare_loop(epochs: int, repeats: int) -> str:
    """Seconds of a whole ``mlp-l2`` run and of the bare loop, alternating; their ratio."""
    import tempfile

    from reglab.config import load_config
    from reglab.runs import RunFolder
    from reglab.train import Member, prepare, run
    from reglab.train.engine import train_stack
    from reglab.train.module_stack import ModuleStack

    config = load_config("mlp-l2", [f"train.epochs={epochs}", "train.plots=false", "train.early_stopping=null",
                                    "device=cpu"])
    exp = prepare(config)
    times: dict[str, list[float]] = {"reglab run": [], "module backend": [], "bare loop": []}

    def module_backend_run(root):
        alone = prepare(config)
        member = Member.of(alone, RunFolder.create(config, alone.device, root))
        train_stack(ModuleStack(member), progress=False)

    with tempfile.TemporaryDirectory() as root:
        ways = {"reglab run": lambda: run(config, root, progress=False), "module backend": lambda: module_backend_run(root),
                "bare loop": lambda: bare_mlp_l2_loop(exp, epochs)}
        for r in range(repeats + 1):  # the first round warms up
            for name in (list(times) if r % 2 else list(times)[::-1]):
                t0 = time.perf_counter()
                ways[name]()
                if r:
                    times[name].append(time.perf_counter() - t0)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    ratio = med["reglab run"] / med["bare loop"]
    return (f"mlp-l2, {epochs} epochs, threads={torch.get_num_threads()}, median of {repeats}: "
            f"reglab run {med['reglab run']:.2f} s, bare loop {med['bare loop']:.2f} s, "
            f"ratio {ratio:.2f}× (target ≤ 1.5: {'ok' if ratio <= 1.5 else 'MISSED'}); "
            f"module backend {med['module backend']:.2f} s, "
            f"{med['module backend'] / med['bare loop']:.2f}× the bare loop")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch.set_num_threads (default 1)")
    ap.add_argument("--repeats", type=int, default=20, help="passes over the batches")
    ap.add_argument("--block", type=int, default=30, help="batches per pass")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--random-data", action="store_true", help="random data of mnist1d's shape")
    ap.add_argument("--run-epochs", type=int, default=5, help="epochs of the whole-run comparison")
    ap.add_argument("--run-repeats", type=int, default=3, help="whole runs per side")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads={args.threads}, "
        f"Adam, batch {args.batch}, median of {args.repeats * args.block} interleaved steps per variant, λ={LAM:g}"
    )
    x, y = mnist1d_data(args.random_data)
    print()
    print(table("MLP 40-256-128-10 on mnist1d", bench(mlp(), x, y, args.repeats, args.block, args.batch)))
    x, y = digits_data()
    print()
    print(table("CNN conv16-conv32-fc64 on digits 1×8×8", bench(cnn(), x, y, args.repeats, args.block, args.batch)))
    print()
    print("optimizer.step() alone (Adam, fixed gradients), µs")
    for title, base in [("MLP", mlp()), ("CNN", cnn())]:
        med = bench_step_only(base)
        ratio = med["coupled L2"] / med["torch wd"]
        print(
            f"{title}: plain {1e6 * med['plain']:.1f}, coupled L2 {1e6 * med['coupled L2']:.1f}, "
            f"torch wd {1e6 * med['torch wd']:.1f}; coupled L2 / torch wd = {ratio:.3f}"
        )
    print()
    print(run_vs_bare_loop(args.run_epochs, args.run_repeats))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
