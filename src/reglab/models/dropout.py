"""Dropout whose masks come from a counter-based stream: the same for a model alone or in a batch,
on any device.

The mask of dropout layer ``layer`` of a model at its training step ``step`` is a pure function of
(the model's dropout seed, step, layer) and the element's index i:

    key = h(h(seed ⊕ layer·φ) + step),   u_i = h(h(i·φ + key) ⊕ key) >> 8   (24 uniform bits),
    m_i = [u_i < ⌊(1 − p)·2²⁴⌋] / (1 − p),   dropout(x) = x · m,

with h a bijective 32-bit integer hash (xorshift-multiply rounds, wrapping int32 arithmetic, which
CPU and CUDA kernels compute alike) and φ = 0x9E3779B9 (the golden-ratio stride). No random
generator state is read or advanced, so K models' masks are drawn in one call per layer from a
vector of K seeds (:func:`dropout_masks`), and a model trained alone (K = 1, the module below)
gets exactly the masks it gets in a batch.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

_GOLDEN = -0x61C88647  # 0x9E3779B9 as an int32
_MUL1, _MUL2 = 0x7FEB352D, -0x7B935975  # 0x846CA68B as an int32
_BITS = 24  # the resolution of the keep probability: 2⁻²⁴


def _hash_(x: Tensor) -> Tensor:
    """x ← h(x) in place on int32: x ^= x >>> 16; x *= c₁; x ^= x >>> 15; x *= c₂; x ^= x >>> 16
    (>>> the logical shift, as an arithmetic shift with the sign bits masked off)."""
    shifted = torch.empty_like(x)
    for shift, multiplier in ((16, _MUL1), (15, _MUL2), (16, None)):
        torch.bitwise_right_shift(x, shift, out=shifted)
        shifted &= (1 << (32 - shift)) - 1
        x ^= shifted
        if multiplier is not None:
            x.mul_(multiplier)
    return x


def dropout_masks(seeds: Tensor, step: int, layer: int, shape: torch.Size, keep: Tensor,
                  dtype: torch.dtype) -> Tensor:
    """The scaled masks m/(1 − p) of K models, shaped [K, *shape]: ``seeds`` are the models' dropout
    seeds (int32, [K]) and ``keep`` their keep probabilities 1 − p (float64, [K]), on one device."""
    n = shape.numel()
    key = _hash_(_hash_(seeds ^ (layer * _GOLDEN)) + step).unsqueeze(1)
    x = torch.arange(n, dtype=torch.int32, device=seeds.device).mul_(_GOLDEN).unsqueeze(0) + key
    x = _hash_(_hash_(x) ^ key)
    threshold = (keep * 2**_BITS).floor().to(torch.int32).unsqueeze(1)
    kept = torch.bitwise_right_shift(x, 32 - _BITS).bitwise_and_((1 << _BITS) - 1) < threshold
    return kept.to(dtype).div_(keep.to(dtype).unsqueeze(1)).view(len(seeds), *shape)


def seed_of(model_seed: int) -> int:
    """A model's dropout seed (an int32) from its run's seed."""
    return (model_seed & 0xFFFFFFFF) - ((model_seed & 0x80000000) << 1)


class CountedDropout(nn.Module):
    """``nn.Dropout(p)`` with masks from :func:`dropout_masks`: layer ``layer`` of a model whose
    dropout seed is that of torch's seed when it was built (``torch.initial_seed()``, the run's
    seed), counting its training steps (one forward in training mode is one step)."""

    def __init__(self, p: float, layer: int):
        super().__init__()
        self.p, self.layer = p, layer
        self.seed = seed_of(torch.initial_seed())
        self.step = 0

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        seeds = torch.tensor([self.seed], dtype=torch.int32, device=x.device)
        keep = torch.tensor([1 - self.p], dtype=torch.float64, device=x.device)
        mask = dropout_masks(seeds, self.step, self.layer, x.shape, keep, x.dtype)[0]
        self.step += 1
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}, layer={self.layer}"
