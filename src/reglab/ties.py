"""When a score counts as reaching another: the one tie rule of the chooser (``reglab.study.choose``)
and of successive halving's rungs (``reglab.train.halving``)."""

from __future__ import annotations

import math

TIE_TOLERANCE = 1e-9  # relative: scores this close are tied


def reaches(value: float, bar: float) -> bool:
    """value ≥ bar, or equal to it within a relative :data:`TIE_TOLERANCE` (both signed so that
    larger is better)."""
    return value >= bar or math.isclose(value, bar, rel_tol=TIE_TOLERANCE)
