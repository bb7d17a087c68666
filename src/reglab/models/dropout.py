"""Dropout whose masks come from counter-based random numbers (``reglab.counter_random``): the same
for a model alone or in a batch, on any device.

Dropout layer ``layer`` of a model at its dropout step ``step`` uses stream ``layer`` (≥ 0) of the
model's counter-based draws u_i (24 uniform bits each):

    m_i = [u_i < ⌊(1 − p)·2²⁴⌋] / (1 − p),   dropout(x) = x · m.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from reglab.counter_random import BITS, counter_bits, seed_of


def dropout_masks(seeds: Tensor, step: int, layer: int, shape: torch.Size, keep: Tensor,
                  dtype: torch.dtype) -> Tensor:
    """The scaled masks m/(1 − p) of K models, shaped [K, *shape]: ``seeds`` are the models' dropout
    seeds (int32, [K]) and ``keep`` their keep probabilities 1 − p (float64, [K]), on one device."""
    threshold = (keep * 2**BITS).floor().to(torch.int32).unsqueeze(1)
    kept = counter_bits(seeds, step, layer, shape.numel()) < threshold
    return kept.to(dtype).div_(keep.to(dtype).unsqueeze(1)).view(len(seeds), *shape)


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
