"""Grid points: normalized, labelled, and planned as one trial per point × seed × fold.

Normalization drops the values a point does not use, so duplicates collapse: with
``reg.penalty`` none or dropout the λ keys are dropped (``reg=none`` × a λ grid is one point),
``reg.dropout`` is dropped unless the penalty is dropout, and none drops every ``reg.*`` setting.

Each point has

* ``lam``: its strength, the value of the last strength key it sets (``reg.lam``, ``reg.l1``,
  ``reg.l2``, ``reg.elastic``, ``reg.group``, ``optim.weight_decay``, ``reg.dropout``), else the
  config's own λ (or dropout p); ``None`` for none;
* ``family``: the point without its strength, e.g. ``l2``, ``none``, ``adamw weight_decay``;
* ``label``: family and strength, e.g. ``l2 λ=0.001``, ``dropout p=0.2``, ``none``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from reglab.config import Config
from reglab.study.grid import SHORTHAND_KEYS, parse_grid, product
from reglab.study.spec import config_for, fold_list

STRENGTH_KEYS = ("reg.lam", "reg.l1", "reg.l2", "reg.elastic", "reg.group", "optim.weight_decay", "reg.dropout")
SYMBOLS = {"reg.dropout": "p", "optim.weight_decay": "wd"}
PENALTY_SETTINGS = ("reg.lam", "reg.l1_ratio", "reg.mode", "reg.on", "reg.warmup_epochs")


@dataclass(frozen=True)
class Point:
    values: dict[str, Any]
    label: str
    family: str
    lam: float | None

    @property
    def key(self) -> str:
        return json.dumps(self.values, sort_keys=True)


def fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def unused_keys(values: dict[str, Any], config: Config) -> set[str]:
    penalty = config.reg.penalty
    unused = set()
    for key in values:
        sets_lam = key in PENALTY_SETTINGS or key in SHORTHAND_KEYS[1:]
        if penalty in ("none", "dropout") and sets_lam:
            unused.add(key)
        if penalty == "none" and key.startswith("reg.") and key != "reg":
            unused.add(key)
        if penalty != "dropout" and key == "reg.dropout":
            unused.add(key)
    return unused


def describe(values: dict[str, Any], config: Config) -> Point:
    """Normalize a point's values and name it; ``config`` is the point's config."""
    kept = {k: v for k, v in values.items() if k not in unused_keys(values, config)}
    penalty = config.reg.penalty
    strength = [k for k in kept if k in STRENGTH_KEYS]
    lam_key = strength[-1] if strength else None
    if lam_key is not None:
        lam = float(kept[lam_key])
    elif penalty == "dropout":
        lam = config.reg.dropout
    elif penalty != "none":
        lam = config.reg.lam
    else:
        lam = None
    if lam_key == "optim.weight_decay":
        decay = f"{config.optim.name} weight_decay"
        base = decay if penalty == "none" else f"{penalty} + {decay}"
    else:
        base = penalty
    others = [f"{k}={fmt(v)}" for k, v in kept.items()
              if k not in SHORTHAND_KEYS and k not in (lam_key, "reg.penalty")]
    family = " ".join([base, *others])
    symbol = SYMBOLS.get(lam_key or ("reg.dropout" if penalty == "dropout" else ""), "λ")
    label = family if lam is None else f"{family} {symbol}={fmt(lam)}"
    return Point(kept, label, family, lam)


def grid_points(spec: dict[str, Any]) -> list[Point]:
    """The grid's distinct normalized points, in grid order; each one's config is validated."""
    seed, fold = spec["seeds"][0], fold_list(spec)[0]
    points: dict[str, Point] = {}
    for values in product([parse_grid(g) for g in spec["grids"]]):
        point = describe(values, config_for(spec, values, seed, fold))
        points.setdefault(point.key, point)
    return list(points.values())


def trial_plan(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry (the trial's user attributes) per point × seed × fold, seed-major so that the
    first finished trials already cover every point."""
    plan, points = [], grid_points(spec)
    for seed in spec["seeds"]:
        for point in points:
            for fold in fold_list(spec):
                plan.append({
                    "key": json.dumps([point.values, seed, fold], sort_keys=True),
                    "point": point.values, "label": point.label, "family": point.family,
                    "lam": point.lam, "seed": seed, "fold": fold,
                    "group": json.dumps([point.family, fold]),
                })  # fmt: skip
    return plan
