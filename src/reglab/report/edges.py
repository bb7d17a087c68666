"""A warning when λ_min or λ_1se sits at an end of its family's grid, naming the range to try next.

A best value at the end of the grid may not be a best at all: the metric may still improve past
it. The next range continues the grid two decades beyond that end (λ…100·λ above the largest,
λ/100…λ below the smallest) on a log scale; a dropout rate p (linear, below 1) moves by the
grid's span instead, staying within [0, 0.9]. λ = 0 has nothing below it, and a family run at
one λ is at both ends.
"""

from __future__ import annotations

from reglab.formatting import fmt_lam
from reglab.study.points import SYMBOLS

DECADES = 2  # how far the next range reaches beyond the end, on a log grid
MAX_RATE = 0.9  # the highest dropout rate the next range proposes


def symbol(strength: str | None) -> str:
    """The strength's letter: λ, p for a dropout rate, wd, γ."""
    return SYMBOLS.get(strength or "", "λ")


def next_range(end: float, lams: list[float], above: bool, rate: bool) -> tuple[float, float] | None:
    """The range beyond ``end`` of the grid ``lams``, on the side ``above`` or below; None where
    nothing lies beyond (λ = 0 below, a rate at its ceiling above)."""
    if rate:
        span = (max(lams) - min(lams)) or 0.2
        low, high = (end, min(MAX_RATE, end + span)) if above else (max(0.0, end - span), end)
    elif end <= 0:
        return None
    else:
        low, high = (end, end * 10**DECADES) if above else (end / 10**DECADES, end)
    return (low, high) if high > low else None


def edge_warnings(family: str, lams: list[float], lam_min: float, lam_1se: float, strength: str | None) -> list[str]:
    """``l2: λ_min = 1e-3 is the largest λ tried; try 1e-3…0.1`` for each end of ``lams`` that
    λ_min or λ_1se sits at (λ_1se ≥ λ_min, so the largest end may hold either or both)."""
    s, rate, grid = symbol(strength), strength == "model.dropout", sorted(set(lams))
    out = []
    for end, above in ((grid[-1], True), (grid[0], False)):
        at = [name for name, lam in ((f"{s}_min", lam_min), (f"{s}_1se", lam_1se)) if lam == end]
        if not at:
            continue
        where = f"the only {s} tried" if len(grid) == 1 else f"the {'largest' if above else 'smallest'} {s} tried"
        beyond = next_range(end, grid, above, rate)
        if len(grid) == 1:
            below = next_range(end, grid, False, rate)
            beyond = (below[0] if below else end, beyond[1] if beyond else end)
        text = f"{family}: {' = '.join(at)} = {fmt_lam(end)} is {where}"
        if beyond is not None and beyond[1] > beyond[0]:
            text += f"; try {fmt_lam(beyond[0])}…{fmt_lam(beyond[1])}"
        out.append(text)
        if len(grid) == 1:
            break
    return out
