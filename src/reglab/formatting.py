"""How numbers read in the report and the command line: λ as ``1e-3``, p as ``0.002``, signed
differences with a true minus sign, counts with their noun's plural."""

from __future__ import annotations

import math

MINUS = "\u2212"


def counted(n: int, noun: str) -> str:
    """``1 run``, ``2 runs``, ``0 runs``: a count with its noun, plural unless it is one."""
    return f"{n} {noun}{'s' * (n != 1)}"


def fmt_lam(lam: float | None) -> str:
    """``1e-3``, ``5e-4``, ``0.1``, ``0.25``: the exponent form once |log10 λ| ≥ 3."""
    if lam is None:
        return "–"
    if lam == 0 or 1e-3 < abs(lam) < 1e3:
        return f"{lam:g}"
    exponent = math.floor(math.log10(abs(lam)))
    mantissa = float(f"{lam / 10**exponent:.3g}")
    if mantissa >= 10:
        mantissa, exponent = mantissa / 10, exponent + 1
    return f"{mantissa:g}e{exponent}"


def signed(value: float, digits: str) -> str:
    """A number with a typographic minus, e.g. ``−0.3``."""
    text = format(value, digits)
    return text.replace("-", MINUS) if text.startswith("-") else text


def fmt_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"={p:.2g}"


def fmt_value(value: float | None, scale: float = 1.0) -> str:
    """A metric value: accuracies (scale 100) with one decimal, losses with 4 significant digits."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return signed(value * scale, ".1f" if scale == 100 else ".4g")


def fmt_ci(mean: float, low: float, high: float, scale: float = 1.0) -> str:
    """``82.1 [80.3, 83.9]``"""
    return f"{fmt_value(mean, scale)} [{fmt_value(low, scale)}, {fmt_value(high, scale)}]"
