"""Counter-based random numbers: the same for a model alone or in a batch, on any device.

Draw i of stream ``stream`` of a model at its step ``step`` is a pure function of (the model's
seed, step, stream) and the element's index i:

    key = h(h(seed ⊕ stream·φ) + step),   u_i = h(h(i·φ + key) ⊕ key) >> 8   (24 uniform bits),

with h a bijective 32-bit integer hash (xorshift-multiply rounds, wrapping int32 arithmetic, which
CPU and CUDA kernels compute alike) and φ = 0x9E3779B9 (the golden-ratio stride). No random
generator state is read or advanced, so K models' numbers are drawn in one call from a vector of K
seeds (:func:`counter_bits`), and a model alone (K = 1) gets exactly the numbers it gets in a batch.

Dropout layer ``layer`` uses stream ``layer`` ≥ 0 (``reglab.models.dropout``); the other draws of a
training step (the random starts of adversarial training's attacks) use negative streams through
:class:`CounterStream`, so they never meet a dropout layer's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

_GOLDEN = -0x61C88647  # 0x9E3779B9 as an int32
_MUL1, _MUL2 = 0x7FEB352D, -0x7B935975  # 0x846CA68B as an int32
BITS = 24  # the resolution of a draw: 2⁻²⁴


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


def counter_bits(seeds: Tensor, step: int, stream: int, n: int) -> Tensor:
    """The 24-bit draws u_0 … u_{n−1} of K models at ``step`` in ``stream``, int32 [K, n] with values
    in [0, 2²⁴): ``seeds`` are the models' seeds (int32, [K]) on the device of the result."""
    key = _hash_(_hash_(seeds ^ (stream * _GOLDEN)) + step).unsqueeze(1)
    x = torch.arange(n, dtype=torch.int32, device=seeds.device).mul_(_GOLDEN).unsqueeze(0) + key
    x = _hash_(_hash_(x) ^ key)
    return torch.bitwise_right_shift(x, 32 - BITS).bitwise_and_((1 << BITS) - 1)



@dataclass
class CounterStream:
    """The random numbers of K models at one training step, drawn from negative streams −1, −2, …
    in the order they are asked for (so a model alone and in a batch, asking in the same order,
    get the same numbers); model m's numbers are row m of each draw [K, ...], on the seeds'
    device. Each draw is computed in float64 and rounded once to the dtype asked for:

    * uniform on [low, high): low + (high − low)·(u + ½)·2⁻²⁴, u the 24 bits of :func:`counter_bits`;
    * standard normal (Box–Muller): z = √(−2 ln v₁)·cos(2π v₂), v = (u + ½)·2⁻²⁴ ∈ (0, 1) from the
      first and second half of one stream of 2n draws.
    """

    seeds: Tensor
    """the models' seeds, int32 [K], on the device of the draws"""
    step: int
    """the training step the draws belong to"""
    draws: int = 0
    """streams used so far"""

    def _unit(self, shape: tuple[int, ...], factor: int = 1) -> Tensor:
        """(u + ½)·2⁻²⁴ in float64, [K, factor·n] from the next stream, for ``shape`` = [K, *s] with
        n elements in s."""
        if shape[0] != len(self.seeds):
            raise ValueError(f"draws of shape {tuple(shape)} for {len(self.seeds)} models")
        self.draws += 1
        bits = counter_bits(self.seeds, self.step, -self.draws, factor * math.prod(shape[1:]))
        return bits.double().add_(0.5).mul_(2.0**-BITS)

    def uniform(self, shape: tuple[int, ...], low: float, high: float, like: Tensor) -> Tensor:
        """Uniform on [low, high), of ``shape`` = [K, ...] and ``like``'s dtype (class docstring)."""
        return self._unit(shape).mul_(high - low).add_(low).to(like.dtype).view(shape)

    def normal(self, shape: tuple[int, ...], like: Tensor) -> Tensor:
        """Standard normal, of ``shape`` = [K, ...] and ``like``'s dtype (class docstring)."""
        v1, v2 = self._unit(shape, 2).chunk(2, dim=1)
        z = v1.log_().mul_(-2).sqrt_().mul_(torch.cos(v2.mul_(2 * math.pi)))
        return z.to(like.dtype).reshape(shape)


def seed_of(model_seed: int) -> int:
    """A model's counter-based seed (an int32) from its run's seed: the seed of its dropout masks
    and of its adversarial training's random starts."""
    return (model_seed & 0xFFFFFFFF) - ((model_seed & 0x80000000) << 1)
