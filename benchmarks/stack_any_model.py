"""The stacked backend's two forms of reglab's own ``Net`` side by side: the hand-written batched
layers (``BatchedNet``) against ``functional_call`` under ``vmap`` (``FunctionalNet``, the form any
model takes), on the same stacked parameters and batches.

One call is a training step's forward and backward of K models (dropout masks drawn as the
engine draws them, batch normalization updating its running statistics), or an eval-mode forward;
interleaved repeats, medians. After timing it says whether the two forms gave the same outputs and
gradients bit for bit, and how far apart they are if not. Nets: ``mlp-l2`` (40-512-256-128-10 with
dropout 0.2) and ``cnn-l2`` on mnist1d (1-D, channels 32, 64, batch normalization).

    OMP_NUM_THREADS=1 python benchmarks/stack_any_model.py --models 16 --repeats 20
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.func import stack_module_state

from reglab.config import load_config
from reglab.counter_random import seed_of
from reglab.models.dropout import dropout_masks
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


if __name__ == "__main__":
    main()
