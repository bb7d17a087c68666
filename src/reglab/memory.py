"""Memory estimates made before anything large is allocated: a model or a dataset that could not
fit is refused with its estimate, instead of an allocation error (or the kernel's OOM killer).

* A model needs ``4 bytes × parameters × 4``: its weights, their gradients and the two moments
  Adam keeps (:data:`TRAINING_COPIES`).
* A generated dataset of ``n`` examples of shape ``s`` needs ``4 bytes × n × ∏s × 3``: the
  float32 arrays plus the float64 ones a generator draws first (:data:`GENERATION_COPIES`).

Either is refused when it exceeds the memory available now (``psutil``'s ``available``: free memory
plus what the kernel can reclaim at once).
"""

from __future__ import annotations

import math

import psutil

from reglab.errors import UserError

FLOAT_BYTES = 4
TRAINING_COPIES = 4  # weights, gradients, Adam's two moments
GENERATION_COPIES = 3  # float64 draws (2 × 4 bytes) then the float32 array


def size_text(n: float) -> str:
    """``3.2 GB``, ``512 MB``, ``20 kB``: decimal units, two or three figures."""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{int(n)} bytes"


def available() -> int:
    """Bytes of memory available now."""
    return psutil.virtual_memory().available


def check_fits(needed: float, what: str, hint: str) -> None:
    """Refuse ``what`` (e.g. ``model.hidden=[10**9]``) when ``needed`` bytes exceed the memory
    available; the message gives both figures and ``hint``."""
    free = available()
    if needed > free:
        raise UserError(f"{what} needs about {size_text(needed)} of memory, more than the {size_text(free)} "
                        f"available; {hint}")


def model_bytes(parameters: int) -> int:
    """Bytes to train a model of ``parameters`` numbers."""
    return parameters * FLOAT_BYTES * TRAINING_COPIES


def dataset_bytes(n_examples: int, shape: tuple[int, ...]) -> int:
    """Bytes to generate ``n_examples`` examples of ``shape``."""
    return n_examples * math.prod(shape) * FLOAT_BYTES * GENERATION_COPIES
