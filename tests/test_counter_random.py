"""The counter-based stream against its formula, computed here elementwise in unsigned 32-bit numpy
arithmetic (logical shifts, wrapping products), independently of the torch kernels that compute it."""

import numpy as np
import torch

from reglab.counter_random import BITS, counter_bits
from reglab.models.dropout import dropout_masks

PHI = np.uint32(0x9E3779B9)


def h(x: np.ndarray) -> np.ndarray:
    """x ^= x >> 16; x *= 0x7FEB352D; x ^= x >> 15; x *= 0x846CA68B; x ^= x >> 16, on uint32."""
    x = x ^ (x >> np.uint32(16))
    x = x * np.uint32(0x7FEB352D)
    x = x ^ (x >> np.uint32(15))
    x = x * np.uint32(0x846CA68B)
    return x ^ (x >> np.uint32(16))


def reference_bits(seed: int, step: int, stream: int, n: int) -> np.ndarray:
    """u_i = h(h(i·φ + key) ⊕ key) >> 8, key = h(h(seed ⊕ stream·φ) + step), all mod 2³²."""
    def wrap(v: int) -> np.ndarray:
        return np.array([v % 2**32], dtype=np.uint32)

    with np.errstate(over="ignore"):
        key = h(h(wrap(seed) ^ wrap(stream * int(PHI))) + wrap(step))
        i = np.arange(n, dtype=np.uint32)
        return (h(h(i * PHI + key) ^ key) >> np.uint32(32 - BITS)).astype(np.int64)


SEEDS = [0, 7, -1, -(2**31), 2**31 - 1, 123456789]


def test_the_draws_are_the_formula_for_any_seed_step_and_stream():
    seeds = torch.tensor(SEEDS, dtype=torch.int32)
    for step, stream, n in ((0, 0, 1), (5, 2, 1000), (2**20 + 3, -4, 4097)):
        bits = counter_bits(seeds, step, stream, n)
        for row, seed in enumerate(SEEDS):
            assert np.array_equal(bits[row].numpy(), reference_bits(seed, step, stream, n))


def test_the_dropout_masks_keep_exactly_the_draws_below_the_threshold():
    seeds = torch.tensor(SEEDS, dtype=torch.int32)
    keep = torch.tensor([0.8, 0.5, 0.9, 0.1, 0.999, 2.0**-24 + 2**-30], dtype=torch.float64)
    shape = torch.Size([33, 97])
    masks = dropout_masks(seeds, 11, 3, shape, keep, torch.float32)
    for row, seed in enumerate(SEEDS):
        threshold = int(np.floor(keep[row].item() * 2**BITS))
        kept = reference_bits(seed, 11, 3, shape.numel()) < threshold
        scale = torch.tensor(1.0, dtype=torch.float32) / keep[row].float()
        expected = torch.where(torch.from_numpy(kept), scale, torch.tensor(0.0)).view(shape)
        assert torch.equal(masks[row], expected)
    # a threshold at each end of the draws' range: t = 2²⁴ keeps every draw, t = 1 only u = 0
    ends = dropout_masks(seeds[:2], 0, 0, shape, torch.tensor([1.0, 2.0**-24], dtype=torch.float64), torch.float32)
    assert bool((ends[0] == 1).all())
    assert torch.equal(ends[1] > 0, torch.from_numpy(reference_bits(SEEDS[1], 0, 0, shape.numel()) == 0).view(shape))
