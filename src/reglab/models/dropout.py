"""Dropout whose masks come from counter-based random numbers (``reglab.counter_random``): the same
for a model alone or in a batch, on any device.

Dropout layer ``layer`` of a model at its dropout step ``step`` uses stream ``layer`` (≥ 0) of the
model's counter-based draws u_i (24 uniform bits each):

    m_i = [u_i < ⌊(1 − p)·2²⁴⌋] / (1 − p),   dropout(x) = x · m,

one draw per element, or per channel for ``nn.Dropout1d``/``nn.Dropout2d``'s form (a mask shaped
(N, C, 1, …) zeroes whole channels). A user's model has its ``nn.Dropout``, ``nn.Dropout1d`` and
``nn.Dropout2d`` layers swapped for these at build time (:func:`count_dropout_`), each keeping its
own rate p.
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

    def __init__(self, p: float, layer: int, channelwise: bool = False):
        super().__init__()
        self.p, self.layer, self.channelwise = p, layer, channelwise
        self.seed = seed_of(torch.initial_seed())
        self.step = 0

    def mask_shape(self, shape: torch.Size) -> torch.Size:
        """The shape of one model's mask for inputs of ``shape``: the inputs' own, or (N, C, 1, …)
        for channel-wise dropout."""
        if not self.channelwise:
            return shape
        return torch.Size([*shape[:2], *[1] * (len(shape) - 2)])

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        seeds = torch.tensor([self.seed], dtype=torch.int32, device=x.device)
        keep = torch.tensor([1 - self.p], dtype=torch.float64, device=x.device)
        mask = dropout_masks(seeds, self.step, self.layer, self.mask_shape(x.shape), keep, x.dtype)[0]
        self.step += 1
        return x * mask

    def extra_repr(self) -> str:
        return f"p={self.p}, layer={self.layer}" + (", channelwise" if self.channelwise else "")


SWAPPED = {nn.Dropout: False, nn.Dropout1d: True, nn.Dropout2d: True}
"""The torch dropout layers :func:`count_dropout_` swaps, and whether each drops whole channels."""


def count_dropout_(model: nn.Module) -> nn.Module:
    """Swap, in place, each ``nn.Dropout`` (``Dropout1d``, ``Dropout2d``) of ``model`` for a
    :class:`CountedDropout` of the same rate p, numbered 0, 1, … in ``model.modules()`` order;
    returns ``model``. Built under the run's seed, its masks are then the same alone and stacked."""
    layer = 0
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) in SWAPPED:
                setattr(parent, name, CountedDropout(child.p, layer, SWAPPED[type(child)]))
                layer += 1
    return model
