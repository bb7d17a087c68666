"""Grid points: normalized, labelled, and planned as one trial per point × seed × fold.

A point's identity is its *settings*: the resolved config without seed, fold and bookkeeping,
normalized so that configs that train the same model are equal (:func:`settings`). Points with
equal settings are one point: ``reg=none`` × a λ grid is one point, ``--grid 'reg=none,l2' --grid
'reg.l2=1e-4,1e-2'`` gives ``l2 λ=0.0001`` once (``reg.l2`` sets the penalty after ``reg=none``),
and ``gan.regularizer=none`` or ``sn`` × a ``gan.strength`` grid is one point each.

Each point has

* ``lam``: its strength, read from the config key that holds it (:func:`strength_key`): ``reg.lam``
  for a penalty, ``model.dropout`` for dropout, ``optim.weight_decay`` when the point sets it,
  ``gan.gp``/``gan.r1``/``reg.lam`` for a GAN preset; ``None`` for none and for spectral norm;
* ``family``: the point without its strength, e.g. ``l2``, ``none``, ``adamw weight_decay``, ``gp``;
* ``label``: family and strength, e.g. ``l2 λ=0.001``, ``dropout p=0.2``, ``r1 γ=0.3``, ``none``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from reglab.config import Config, flat_keys, shorthand_keys
from reglab.study.grid import parse_grid, product
from reglab.study.spec import config_for, fold_list

STRENGTH_KEYS = ("reg.lam", "reg.l1", "reg.l2", "reg.elastic", "reg.group", "optim.weight_decay", "reg.dropout")
HELD_IN = {"reg.dropout": "model.dropout", "optim.weight_decay": "optim.weight_decay"}  # else reg.lam
GAN_STRENGTH = {"none": None, "l1": "reg.lam", "l2": "reg.lam", "gp": "gan.gp", "r1": "gan.r1",
                "sn": "gan.spectral_norm"}
SYMBOLS = {"model.dropout": "p", "optim.weight_decay": "wd", "gan.r1": "γ"}
PENALTY_SETTINGS = ("reg.lam", "reg.l1_ratio", "reg.mode", "reg.on", "reg.warmup_epochs")
NOT_SETTINGS = ("name", "description", "seed", "data.fold", "out", "device", "gan.regularizer", "gan.strength")


@dataclass(frozen=True)
class Point:
    values: dict[str, Any]
    label: str
    family: str
    lam: float | None

    @property
    def key(self) -> str:
        return json.dumps(self.values, sort_keys=True)


def setting_text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def normalized(flat: dict[str, Any]) -> dict[str, Any]:
    """Dotted settings with the regularizer in one canonical form: a penalty with λ = 0 and
    dropout with p = 0 are ``none``; ``none`` and dropout keep of ``reg.*`` only ``reg.penalty``
    and ``reg.lam = 0`` (dropout's rate is ``model.dropout``); a penalty drops ``reg.dropout``."""
    penalty = flat.get("reg.penalty", "none")
    if (penalty == "dropout" and not flat.get("model.dropout")) or \
            (penalty not in ("none", "dropout") and not flat.get("reg.lam")):
        penalty = "none"
    kept = {k: v for k, v in flat.items() if not k.startswith("reg.")}
    if penalty in ("none", "dropout"):
        kept["reg.lam"] = 0.0
    else:
        kept.update({k: v for k, v in flat.items() if k.startswith("reg.") and k != "reg.dropout"})
    kept["reg.penalty"] = penalty
    return kept


def settings(config: Config | dict[str, Any]) -> dict[str, Any]:
    """What decides a run's training, as dotted keys: the resolved config without its seed, fold,
    name, output folder and device, and without the GAN preset keys (their effect is in the keys
    they set), :func:`normalized`. Two runs with equal settings differ only in seed and fold."""
    tree = config.to_dict() if isinstance(config, Config) else config
    flat = {k: v for k, v in flat_keys(tree).items() if k not in NOT_SETTINGS and not k.startswith("published.")}
    return normalized(flat)


def switched_off(values: dict[str, Any], key: str) -> dict[str, Any]:
    """``settings`` with the regularizer held in ``key`` off (0, or False for a switch)."""
    return normalized({**values, key: False if isinstance(values.get(key), bool) else 0.0})


def unused_keys(values: dict[str, Any], config: Config) -> set[str]:
    penalty = config.reg.penalty
    unused = set()
    for key in values:
        sets_lam = key in PENALTY_SETTINGS or key in shorthand_keys()[1:]
        if penalty in ("none", "dropout") and sets_lam:
            unused.add(key)
        if penalty == "none" and key.startswith("reg.") and key != "reg":
            unused.add(key)
        if penalty != "dropout" and key == "reg.dropout":
            unused.add(key)
        if key == "gan.strength" and GAN_STRENGTH.get(config.gan.regularizer, "custom") in (None, "gan.spectral_norm"):
            unused.add(key)
    return unused


def gan_preset(config: Config) -> str | None:
    return config.gan.regularizer if config.task == "gan" and config.gan.regularizer != "custom" else None


def strength_key(values: dict[str, Any], config: Config) -> str | None:
    """The config key that holds the strength of the point ``values`` (its last strength key,
    else the one its penalty or GAN preset uses); None when it has no regularizer to vary."""
    preset = gan_preset(config)
    if preset is not None:
        return GAN_STRENGTH[preset]
    given = [k for k in values if k in STRENGTH_KEYS and k not in unused_keys(values, config)]
    if given:
        return HELD_IN.get(given[-1], "reg.lam")
    penalty = config.reg.penalty
    return None if penalty == "none" else "model.dropout" if penalty == "dropout" else "reg.lam"


def describe(values: dict[str, Any], config: Config) -> Point:
    """Normalize a point's values and name it; ``config`` is the point's config."""
    kept = {k: v for k, v in values.items() if k not in unused_keys(values, config)}
    key = strength_key(kept, config)
    flat = flat_keys(config.to_dict())
    lam = None if key is None or isinstance(flat[key], bool) else float(flat[key])
    own = [k for k in kept if k in STRENGTH_KEYS]
    preset = gan_preset(config)
    if preset is not None:
        base = preset
    elif key == "optim.weight_decay":
        decay = f"{config.optim.name} weight_decay"
        base = decay if config.reg.penalty == "none" else f"{config.reg.penalty} + {decay}"
    else:
        base = config.reg.penalty
    skip = (*shorthand_keys(), "reg.penalty", "gan.regularizer", "gan.strength", *own[-1:])
    family = " ".join([base, *(f"{k}={setting_text(v)}" for k, v in kept.items() if k not in skip)])
    label = family if lam is None else f"{family} {SYMBOLS.get(key, 'λ')}={setting_text(lam)}"
    return Point(kept, label, family, lam)


def grid_points(spec: dict[str, Any]) -> list[Point]:
    """The grid's distinct points (by their :func:`settings`), in grid order; each one's config
    is validated."""
    seed, fold = spec["seeds"][0], fold_list(spec)[0]
    points: dict[str, Point] = {}
    for values in product([parse_grid(g) for g in spec["grids"]]):
        config = config_for(spec, values, seed, fold)
        points.setdefault(json.dumps(settings(config), sort_keys=True), describe(values, config))
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
