"""How numbers read in the report and the command line: λ as ``1e-3``, p as ``0.002``, signed
differences with a true minus sign (and never ``−0.0``), counts with their noun's plural."""

from __future__ import annotations

import math
import re

MINUS = "\u2212"


def counted(n: int, noun: str) -> str:
    """``1 run``, ``2 runs``, ``0 runs``: a count with its noun, plural unless it is one."""
    return f"{n} {noun}{'s' * (n != 1)}"


def fmt_lam(lam: float | None) -> str:
    """The one form of a strength (λ, a rate p, γ) in every text and figure: three significant
    digits, plain for 0.01 ≤ |λ| < 1000 (``0.01``, ``0.25``, ``31.6``), else ``m·10^k`` written
    ``1e-3``, ``3.16e-4``, ``1e3``."""
    if lam is None:
        return "–"
    lam = float(f"{lam:.3g}") + 0.0  # + 0.0: no −0
    if lam == 0 or 1e-2 <= abs(lam) < 1e3:
        return f"{lam:g}"
    exponent = math.floor(math.log10(abs(lam)))
    return f"{float(f'{lam / 10**exponent:.3g}'):g}e{exponent}"


STRENGTH = re.compile(r"(?<!\S)(λ|p|wd|γ)=(\d[\d.]*(?:e[+-]?\d+)?)(?=\s|\)|,|;|$)")
"""A strength as a point's label writes it (``λ=0.001``, ``p=0.3``, ``wd=0.01``, ``γ=0.3``)."""


def fmt_strengths(text: str) -> str:
    """``text`` with every strength of a point's label in the :func:`fmt_lam` form: ``l2 λ=0.001`` →
    ``l2 λ=1e-3``; a setting (``optim.lr=0.001``) stays as it is. Labels stay as stored (they name
    points); only what the report shows reads this way."""
    return STRENGTH.sub(lambda m: f"{m[1]}={fmt_lam(float(m[2]))}", text)


def signed(value: float, digits: str) -> str:
    """A number with a typographic minus, e.g. ``−0.3``; a value that rounds to zero reads ``0.0``,
    never ``−0.0``."""
    text = format(value, digits)
    if float(text) == 0:
        text = format(0.0, digits)
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
