"""The stacked backend's two forms of reglab's own ``Net`` side by side: the hand-written batched
layers (``BatchedNet``) against ``functional_call`` under ``vmap`` (``FunctionalNet``, the form any
model takes), on the same stacked parameters and batches.

One call is a training step's forward and backward of K models (dropout masks drawn as the
engine draws them, batch normalization updating its running statistics), or an eval-mode forward;
interleaved repeats, medians. After timing it says whether the two forms gave the same outputs and
gradients bit for bit, and how far apart they are if not. Nets: ``mlp-l2`` (40-512-256-128-10 with
dropout 0.2) and ``cnn-l2`` on mnist1d (1-D, channels 32, 64, batch normalization).

Then a user's own models (``model.kind=custom``: an ``nn.Sequential`` MLP with ``nn.Dropout`` and a
small Transformer encoder, on mnist1d read as 10 tokens of 4) stacked by ``FunctionalNet`` against
the same K models stepped one after another by their own modules: a training step's forward and
backward of all K.

    OMP_NUM_THREADS=1 python benchmarks/stack_any_model.py --models 16 --repeats 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn
from torch.func import stack_module_state

from reglab.config import load_config
from reglab.counter_random import seed_of
from reglab.models.dropout import count_dropout_, dropout_masks
from reglab.train import prepare
from reglab.train.batched_net import BatchedNet
from reglab.train.functional_net import FunctionalNet

NETS = {
    "mlp-l2": ("mlp-l2", []),
    "cnn-l2 1-D, batchnorm": ("cnn-l2", ["data.name=mnist1d", "model.batchnorm=true", "model.dense=[64]"]),
}
BATCH = 128


def stacked(recipe: str, overrides: list[str], models: int):
    """``models`` models of one recipe (seeds 0, 1, …), their stacked parameters and buffers, and
    one batch of inputs [K, B, …] and labels [K, B]."""
    exps = [prepare(load_config(recipe, ["data.n_train=500", f"seed={s}", *overrides])) for s in range(models)]
    params, buffers = stack_module_state([e.model for e in exps])
    x, y = exps[0].tensors["train"]
    return exps[0].model, params, buffers, x[:BATCH].expand(models, *x[:BATCH].shape).contiguous(), y[:BATCH]


def masks_of(models: int, p: float):
    seeds = torch.tensor([seed_of(s) for s in range(models)], dtype=torch.int32)
    keep = torch.full((models,), 1 - p, dtype=torch.float64)
    return lambda layer, shape, dtype: dropout_masks(seeds, 0, layer.layer, shape, keep, dtype)


class Tokens(nn.Module):
    """mnist1d's 40 inputs as 10 tokens of 4 → width 32 → one encoder layer → mean → 10 classes."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Linear(4, 32)
        self.encoder = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.1, batch_first=True)
        self.encoder.self_attn.dropout = 0.0
        self.head = nn.Linear(32, 10)

    def forward(self, x):
        return self.head(self.encoder(self.embed(x.view(len(x), 10, 4))).mean(1))


USERS_MODELS = {
    "MLP 40-256-128-10, dropout 0.2": lambda: nn.Sequential(nn.Flatten(), nn.Linear(40, 256), nn.ReLU(), nn.Dropout(0.2),
                                                             nn.Linear(256, 128), nn.ReLU(), nn.Dropout(0.2),
                                                             nn.Linear(128, 10)),
    "Transformer encoder, width 32": Tokens,
}


def users_models(models: int, repeats: int) -> None:
    """A user's model stacked against the same models one after another (module docstring)."""
    print(f"\nusers' models, a training step of K = {models} (forward and backward):")
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(BATCH, 1, 40, generator=g), torch.randint(0, 10, (BATCH,), generator=g)
    for label, make in USERS_MODELS.items():
        modules = []
        for seed in range(models):
            torch.manual_seed(seed)
            modules.append(count_dropout_(make()).train())
        params, buffers = stack_module_state(modules)
        net, masks = FunctionalNet(modules[0]), masks_of(models, 0.2)
        xs = x.expand(models, *x.shape)
        stacked_times, alone_times = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            train_call(net, params, buffers, xs, y, masks)
            stacked_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            for module in modules:
                torch.autograd.grad(torch.nn.functional.cross_entropy(module(x), y), list(module.parameters()))
            alone_times.append(time.perf_counter() - start)
        stacked, alone = statistics.median(stacked_times) * 1e3, statistics.median(alone_times) * 1e3
        print(f"  {label}: stacked {stacked:.2f} ms, one after another {alone:.2f} ms, "
              f"one after another / stacked = {alone / stacked:.2f}")


def train_call(net, params, buffers, x, y, masks):
    out = net(params, buffers, x, masks)
    loss = torch.nn.functional.cross_entropy(out.flatten(0, 1), y.repeat(len(x)))
    return out, torch.autograd.grad(loss, list(params.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"K = {args.models} models, batch {BATCH}, {torch.get_num_threads()} thread, torch {torch.__version__}")
    for label, (recipe, overrides) in NETS.items():
        model, params, buffers, x, y = stacked(recipe, overrides, args.models)
        nets = {"hand-written": BatchedNet(model), "functional_call+vmap": FunctionalNet(model)}
        masks = masks_of(args.models, 0.2)
        times = {(n, w): [] for n in nets for w in ("train", "eval")}
        for _ in range(args.repeats):
            for name, net in nets.items():
                copies = {k: b.clone() for k, b in buffers.items()}
                start = time.perf_counter()
                train_call(net, params, copies, x, y, masks)
                times[name, "train"].append(time.perf_counter() - start)
                with torch.no_grad():
                    start = time.perf_counter()
                    net(params, copies, x)
                    times[name, "eval"].append(time.perf_counter() - start)
        results = {name: train_call(net, params, {k: b.clone() for k, b in buffers.items()}, x, y, masks)
                   for name, net in nets.items()}
        (out_a, grads_a), (out_b, grads_b) = results.values()
        same = torch.equal(out_a, out_b) and all(torch.equal(a, b) for a, b in zip(grads_a, grads_b))
        apart = max(float((a - b).abs().max() / b.abs().max()) for a, b in  # per tensor, of its largest value
                    zip([out_a.detach(), *grads_a], [out_b.detach(), *grads_b]))
        print(f"\n{label}:")
        for when in ("train", "eval"):
            medians = {name: statistics.median(times[name, when]) * 1e3 for name in nets}
            ratio = medians["functional_call+vmap"] / medians["hand-written"]
            print(f"  {when:5s} " + "  ".join(f"{n} {m:.2f} ms" for n, m in medians.items())
                  + f"  functional/hand-written = {ratio:.2f}")
        print(f"  outputs and gradients bit for bit the same: {same}" + ("" if same else f" (apart {apart:.1e} relative)"))
    users_models(args.models, args.repeats)


if __name__ == "__main__":
    main()
