"""The dropout mask stream's cost in a stacked step: the masks of one ``mlp-l2`` training step (its
three dropout layers, batch 128, widths 512, 256, 128) for K models, drawn as the stacked backend
draws them (``reglab.models.dropout.dropout_masks``), against one whole stacked training step of
the same K models with dropout (forward, backward, clipping, L2, Adam), one thread, medians.

To compare two versions of reglab, run this file with each source tree first on the path, in turns:

    OMP_NUM_THREADS=1 python benchmarks/mask_stream.py --models 16
    OMP_NUM_THREADS=1 PYTHONPATH=/path/to/other/src python benchmarks/mask_stream.py --models 16
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import reglab
from reglab.config import load_config
from reglab.models.dropout import dropout_masks
from reglab.train.engine import stack_of
from reglab.train.experiment import prepare
from reglab.train.tracker import Member

WIDTHS, BATCH = (512, 256, 128), 128


def masks_of_a_step(seeds: torch.Tensor, keep: torch.Tensor, step: int) -> None:
    for layer, width in enumerate(WIDTHS):
        dropout_masks(seeds, step, layer, torch.Size([BATCH, width]), keep, torch.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=16)
    parser.add_argument("--steps", type=int, default=60)
    args = parser.parse_args()
    k = args.models
    seeds = torch.arange(k, dtype=torch.int32)
    keep = torch.full((k,), 0.8, dtype=torch.float64)
    mask_times = []
    for step in range(args.steps):
        started = time.perf_counter()
        masks_of_a_step(seeds, keep, step)
        mask_times.append(time.perf_counter() - started)
    members = [Member.of(prepare(load_config("mlp-l2", ["device=cpu", f"reg.lam={10 ** -(1 + i % 5)}"])))
               for i in range(k)]
    stack = stack_of(members)
    x, y = members[0].exp.tensors["train"]
    lr, lam = stack.vector(lambda m: 1e-3), stack.vector(lambda m: 1e-4)
    step_times = []
    for step in range(args.steps):
        idx = torch.randint(len(x), (k, BATCH), generator=torch.Generator().manual_seed(step))
        started = time.perf_counter()
        stack.train_step(x[idx], y[idx], lr, lam, None)
        step_times.append(time.perf_counter() - started)
    masks, whole = statistics.median(mask_times[5:]), statistics.median(step_times[5:])
    print(f"reglab from {reglab.__file__.rsplit('/reglab/', 1)[0]}, K={k}, {torch.get_num_threads()} thread(s): "
          f"masks {1e3 * masks:.2f} ms per step, whole stacked step {1e3 * whole:.2f} ms, "
          f"masks / step {masks / whole:.2f}")


if __name__ == "__main__":
    main()
