"""Grid specs and seed specs, as typed on the command line.

A grid is ``KEY=TOKEN,TOKEN,…``. A token is a YAML scalar (``0``, ``1e-3``, ``l2``, ``none``), a
flow list (``[64,32]``: commas inside brackets do not split), or a range
``START:STOP:log|lin:COUNT`` with COUNT values from START to STOP inclusive:

* ``lin``: START + i·(STOP − START)/(COUNT − 1), i = 0 … COUNT − 1;
* ``log``: START·(STOP/START)^(i/(COUNT − 1)) (geometric; START and STOP must be positive).

So ``reg.l2=0,1e-5:1e-1:log:5`` is 0, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1. Several grids make a
Cartesian product. Keys are config keys or the shorthands ``reg``, ``reg.l1``, ``reg.l2``,
``reg.elastic``, ``reg.group``.

``reg.lam=auto:N`` (or ``auto:N:RATIO``, RATIO 1e-4 unless given) lets the study choose λ: N values
λ_max·RATIO^(i/(N − 1)), from λ_max down to λ_max·RATIO, with λ_max estimated from the data loss's
gradient at initialization for each family of the grid (:mod:`reglab.study.auto_grid`); each
family's values then stand in the product. It is the only value of its grid, and only ``reg.lam``
takes it.

Seeds: ``5`` is the single seed 5, ``0-9`` the ten seeds 0 … 9, ``0,3,7`` a list; parts combine
(``0-4,10``).

Grids written differently but equal (``1e-4`` and ``0.0001``, ``1e-5:1e-1:log:5`` and
``0.00001:0.1:log:5``, spaces) have the same :meth:`Grid.canonical` text, which is what a study
stores and compares.

Ranges are checked before they are expanded: START and STOP must be finite, and a grid's size can
be known (:meth:`Grid.size`) without building its values, so an oversized study is refused at once.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution

from reglab.config import MAX_SEED, closest_key, parse_value, valid_keys
from reglab.shorthands import shorthand_keys
from reglab.errors import UserError

RANGE_FORM = "START:STOP:log|lin:COUNT"
AUTO_FORM = "auto:N or auto:N:RATIO"
AUTO_KEY = "reg.lam"
AUTO_RATIO = 1e-4  # λ_min/λ_max: glmnet's lambda.min.ratio when n > p (scikit-learn's eps is 1e-3)
RESERVED_KEYS = {"seed": "--seeds", "data.fold": "--cv", "data.n_folds": "--cv"}


@dataclass(frozen=True)
class Range:
    """``START:STOP:log|lin:COUNT``, inclusive of both ends."""

    start: float
    stop: float
    scale: str
    count: int

    def values(self) -> list[float]:
        space = np.geomspace if self.scale == "log" else np.linspace
        return [float(f"{v:.12g}") for v in space(self.start, self.stop, self.count)]


@dataclass(frozen=True)
class Auto:
    """``auto:N:RATIO``: N values from λ_max down to λ_max·RATIO, log-spaced, once λ_max is known."""

    count: int
    ratio: float

    def values(self, lam_max: float) -> list[float]:
        """λ_max·RATIO^(i/(N − 1)), i = 0 … N − 1 (λ_max alone for N = 1)."""
        return Range(lam_max, lam_max * self.ratio, "log", self.count).values()


@dataclass(frozen=True)
class Grid:
    key: str
    tokens: tuple[Any, ...]  # plain values and Range objects in the order written, or one Auto
    text: str

    @property
    def auto(self) -> Auto | None:
        """The grid's ``auto`` token (then its only one), or None."""
        return self.tokens[0] if isinstance(self.tokens[0], Auto) else None

    def values(self) -> list[Any]:
        if self.auto is not None:
            raise ValueError(f"--grid '{self.text}': its values depend on the point (study.auto_grid)")
        out: list[Any] = []
        seen: set[Any] = set()
        for token in self.tokens:
            for value in token.values() if isinstance(token, Range) else [token]:
                marker = json.dumps(value) if isinstance(value, (list, dict)) else value  # 1 == 1.0 as before
                if marker not in seen:
                    seen.add(marker)
                    out.append(value)
        return out

    def distribution(self) -> BaseDistribution:
        """The grid as an Optuna distribution: a single range is a float on its scale (log or
        linear) between its ends; anything else a choice among the values (see :func:`param_value`)."""
        if len(self.tokens) == 1 and isinstance(self.tokens[0], Range):
            r = self.tokens[0]
            return FloatDistribution(min(r.start, r.stop), max(r.start, r.stop), log=r.scale == "log")
        return CategoricalDistribution(list(dict.fromkeys(param_value(v) for v in self.values())))

    def size(self) -> int:
        """At most this many values (duplicates counted), known without expanding the ranges."""
        return sum(token.count if isinstance(token, (Range, Auto)) else 1 for token in self.tokens)

    def canonical(self) -> str:
        """``KEY=TOKEN,TOKEN,…`` with every token written one way; it parses back to this grid."""
        return f"{self.key}=" + ",".join(canonical_token(t) for t in self.tokens)


def param_value(value: Any) -> Any:
    """A grid value as an Optuna param value: scalars as they are, lists and mappings as JSON text."""
    return json.dumps(value, separators=(",", ":")) if isinstance(value, (list, dict)) else value


def canonical_token(value: Any) -> str:
    """A token written one way: a range as ``START:STOP:scale:COUNT`` with Python's shortest float
    text, a word as itself when it reads back as itself, anything else as JSON."""
    if isinstance(value, Range):
        return f"{value.start!r}:{value.stop!r}:{value.scale}:{value.count}"
    if isinstance(value, Auto):
        return f"auto:{value.count}:{value.ratio!r}"
    if isinstance(value, str) and not value.startswith(("[", "{", "'", '"')) and ":" not in value \
            and "," not in value and scalar(value) == value:
        return value
    return json.dumps(value, separators=(",", ":"))


def split_tokens(text: str) -> list[str]:
    """Split on commas outside brackets, so ``[64,32],[16]`` is two tokens."""
    tokens, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "{": 1, "]": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            tokens.append(current)
            current = ""
        else:
            current += char
    tokens.append(current)
    return [t.strip() for t in tokens]


def check_key(key: str, text: str) -> None:
    if key in RESERVED_KEYS:
        raise UserError(f"--grid '{text}': set '{key}' with {RESERVED_KEYS[key]}, not with a grid")
    if key in shorthand_keys() or key in valid_keys():
        return
    suggestion = closest_key(key)
    hint = f"; did you mean '{suggestion}'?" if suggestion else ""
    raise UserError(f"unknown config key '{key}' in --grid '{text}'{hint}")


def parse_range(token: str, position: int, text: str) -> Range:
    def bad(why: str) -> UserError:
        return UserError(f"bad grid token '{token}' (value {position}) in --grid '{text}': "
                         f"expected {RANGE_FORM}; {why}")

    parts = token.split(":")
    if len(parts) != 4:
        raise bad(f"it has {len(parts)} parts, not 4")
    start_text, stop_text, scale, count_text = parts
    try:
        start, stop = float(start_text), float(stop_text)
    except ValueError:
        raise bad("START and STOP must be numbers") from None
    if not (np.isfinite(start) and np.isfinite(stop)):
        raise bad("START and STOP must be finite")
    if scale not in ("log", "lin"):
        raise bad(f"'{scale}' is neither log nor lin")
    try:
        count = int(count_text)
    except ValueError:
        raise bad(f"COUNT '{count_text}' is not a whole number") from None
    if count < 1:
        raise bad("COUNT must be at least 1")
    if scale == "log" and (start <= 0 or stop <= 0):
        raise bad("a log range needs START and STOP above 0")
    return Range(start, stop, scale, count)


def parse_auto(token: str, key: str, tokens: list[str], text: str) -> Auto:
    def bad(why: str) -> UserError:
        return UserError(f"bad grid token '{token}' in --grid '{text}': expected {AUTO_FORM}; {why}")

    parts = token.split(":")
    if parts[0] != "auto" or len(parts) not in (2, 3):
        raise bad(f"it has {len(parts)} parts, not 2 or 3")
    if key != AUTO_KEY:
        raise UserError(f"--grid '{text}': auto chooses {AUTO_KEY} only, not '{key}' (e.g. --grid reg=l1 "
                        f"--grid {AUTO_KEY}=auto:10)")
    if len(tokens) > 1:
        raise UserError(f"--grid '{text}': auto must be the grid's only value")
    try:
        count = int(parts[1])
    except ValueError:
        raise bad(f"N '{parts[1]}' is not a whole number") from None
    if count < 1:
        raise bad("N must be at least 1")
    try:
        ratio = float(parts[2]) if len(parts) == 3 else AUTO_RATIO
    except ValueError:
        raise bad(f"RATIO '{parts[2]}' is not a number") from None
    if not 0 < ratio < 1:
        raise bad("RATIO (λ_min/λ_max) must be between 0 and 1")
    return Auto(count, ratio)


def parse_grid(text: str) -> Grid:
    """Parse one ``--grid`` value; errors quote the bad token and its position (1-based)."""
    key, sep, rest = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UserError(f"bad --grid '{text}': expected KEY=VALUE,VALUE,… (e.g. 'reg.l2=1e-5:1e-1:log:9')")
    check_key(key, text)
    tokens: list[Any] = []
    texts = split_tokens(rest)
    for position, token in enumerate(texts, start=1):
        if not token:
            raise UserError(f"bad grid token '' (value {position}) in --grid '{text}': empty value")
        if token.startswith("auto:") or token == "auto":
            tokens.append(parse_auto(token, key, texts, text))
        elif ":" in token and not token.startswith(("[", "{", "'", '"')):
            tokens.append(parse_range(token, position, text))
        else:
            tokens.append(scalar(token))
    return Grid(key, tuple(tokens), text)


def scalar(token: str) -> Any:
    """A token's value as YAML reads it, except that numbers YAML 1.1 leaves as strings (``1e-3``)
    become floats."""
    value = parse_value(token)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def check_distinct(grids: list[Grid]) -> None:
    """Each key in one grid only."""
    keys = [g.key for g in grids]
    repeated = {k for k in keys if keys.count(k) > 1}
    if repeated:
        raise UserError(f"key '{sorted(repeated)[0]}' is in two --grid flags; put its values in one")


def product(grids: list[Grid]) -> list[dict[str, Any]]:
    """The Cartesian product of the grids' values, as ``{key: value}`` points in grid order."""
    check_distinct(grids)
    keys = [g.key for g in grids]
    return [dict(zip(keys, combo)) for combo in itertools.product(*(g.values() for g in grids))]


def parse_seeds(text: str, limit: int | None = None) -> list[int]:
    """``5`` → [5]; ``0-9`` → [0 … 9]; ``0,3,7`` → [0, 3, 7]; parts combine, order kept.

    More than ``limit`` seeds is refused before they are listed."""
    def bad() -> UserError:
        return UserError(f"bad --seeds '{text}': expected a seed (5), a range (0-9) or a list (0,3,7)")

    ranges = []
    for part in text.split(","):
        first, dash, last = part.strip().partition("-")
        if not (first.isascii() and first.isdigit()) or (dash and not (last.isascii() and last.isdigit())):
            raise bad()
        lo, hi = int(first), int(last) if dash else int(first)
        if hi < lo:
            raise bad()
        if hi > MAX_SEED:
            raise UserError(f"bad --seeds '{text}': a seed must be at most {MAX_SEED}")
        ranges.append((lo, hi))
    count = sum(hi - lo + 1 for lo, hi in ranges)
    if limit is not None and count > limit:
        raise UserError(f"--seeds '{text}' names {count} seeds, more than the study size limit {limit}")
    return list(dict.fromkeys(s for lo, hi in ranges for s in range(lo, hi + 1)))
