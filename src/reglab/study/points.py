"""Grid points: normalized, labelled, and planned as one trial per point × seed × fold.

A point's identity is its *settings*: the resolved config without seed, fold and bookkeeping,
normalized so that configs that train the same model are equal (:func:`settings`). Points with
equal settings are one point: ``reg=none`` × a λ grid is one point, ``--grid 'reg=none,l2' --grid
'reg.l2=1e-4,1e-2'`` gives ``l2 λ=0.0001`` once (``reg.l2`` sets the penalty after ``reg=none``),
and ``gan.regularizer=none`` or ``sn`` × a ``gan.strength`` grid is one point each.

:func:`name_point` is the one place a point is named, for a study's grid points and for run folders
alike. Its regularizer is derived from the resolved config and the keys that set the point apart
from the others (a grid point's values; the keys in which run folders differ):

* its *strength key* (:func:`strength_key`): a GAN preset's key (``gan.gp``, ``gan.r1``,
  ``reg.lam``); else the last of the point's keys that holds a strength: ``reg.lam`` under a
  penalty, ``model.dropout`` without one (dropout is a model setting: a point without a weight
  penalty whose dropout rate p > 0 is among its keys is the *dropout* family), or
  ``optim.weight_decay``; else ``reg.lam`` under a penalty; None for none and for spectral norm;
* ``lam``: the strength's value;
* ``family``: the point without its strength, e.g. ``l2``, ``dropout``, ``none``, ``adamw
  weight_decay``, ``gp``, ``l2 optim.lr=0.01``;
* ``label``: family and strength, e.g. ``l2 λ=0.001``, ``dropout p=0.2``, ``r1 γ=0.3``, ``none``.

:func:`run_label` names a point's run folders from the same parts, in ASCII and with the strength as
``formatting.fmt_lam`` writes it: ``l2_lam=1e-3``, ``dropout_p=0.2``, ``r1_gamma=0.3``, ``none``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from reglab.config import Config, flat_keys, is_bookkeeping, setting_names
from reglab.formatting import fmt_lam
from reglab.runs import RunLabel
from reglab.shorthands import plain_overrides
from reglab.study.auto_grid import points_values
from reglab.study.grid import parse_grid
from reglab.study.spec import config_for, fold_list

GAN_STRENGTH = {"none": None, "l1": "reg.lam", "l2": "reg.lam", "gp": "gan.gp", "r1": "gan.r1",
                "sn": "gan.spectral_norm"}
SYMBOLS = {"model.dropout": "p", "optim.weight_decay": "wd", "gan.r1": "γ"}
FOLDER_SYMBOLS = {**SYMBOLS, "gan.r1": "gamma"}  # the strength's name in a folder name (ASCII; λ is lam)
NOT_SETTINGS = ("seed", "data.fold", "gan.regularizer", "gan.strength")  # and the bookkeeping keys
NOT_NAMED = ("reg.penalty", "gan.regularizer", "gan.strength")  # the family's own name says them


@dataclass(frozen=True)
class Point:
    values: dict[str, Any]
    label: str
    family: str
    lam: float | None
    strength: str | None = None

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
    """Dotted settings with the weight penalty in one canonical form: a penalty with λ = 0 is
    ``none``, and ``none`` keeps of ``reg.*`` only ``reg.penalty`` and ``reg.lam = 0``."""
    penalty = flat.get("reg.penalty", "none") if flat.get("reg.lam") else "none"
    kept = {k: v for k, v in flat.items() if not k.startswith("reg.")}
    if penalty == "none":
        kept["reg.lam"] = 0.0
    else:
        kept.update({k: v for k, v in flat.items() if k.startswith("reg.")})
    kept["reg.penalty"] = penalty
    return kept


def settings(config: Config | dict[str, Any]) -> dict[str, Any]:
    """What decides a run's training, as dotted keys: the resolved config without its seed, fold and
    bookkeeping keys (name, output folder, device, logging: ``config.is_bookkeeping``), and without the GAN preset keys (their effect is in the keys
    they set), :func:`normalized`. Two runs with equal settings differ only in seed and fold."""
    tree = config.to_dict() if isinstance(config, Config) else config
    flat = {k: v for k, v in flat_keys(tree).items() if k not in NOT_SETTINGS and not is_bookkeeping(k)}
    return normalized(flat)


def switched_off(values: dict[str, Any], key: str) -> dict[str, Any]:
    """``settings`` with the regularizer held in ``key`` off (0, or False for a switch)."""
    return normalized({**values, key: False if isinstance(values.get(key), bool) else 0.0})


def unused_keys(values: dict[str, Any], config: Config) -> set[str]:
    """The keys of a grid point that do nothing in its config: penalty settings without a penalty,
    a setting of another penalty than the point's (``reg.l1_ratio`` of an ``l2`` point),
    ``reg.dropout`` unless ``reg=dropout`` took its rate, a strength for a preset that has none."""
    unused = set()
    own = config.reg.penalty_settings()
    for key, value in values.items():
        if config.reg.penalty == "none" and key.startswith("reg.") and key != "reg.dropout":
            unused.add(key)
        if key.removeprefix("reg.") in setting_names() and key.removeprefix("reg.") not in own:
            unused.add(key)
        took = str(values.get("reg", "dropout")).lower() == "dropout" and config.model.dropout == value
        if key == "reg.dropout" and (config.reg.penalty != "none" or not took):
            unused.add(key)
        if key == "gan.strength" and GAN_STRENGTH.get(config.gan.regularizer, "custom") in (None, "gan.spectral_norm"):
            unused.add(key)
    return unused


def gan_preset(flat: dict[str, Any]) -> str | None:
    preset = flat.get("gan.regularizer", "custom")
    return preset if flat.get("task") == "gan" and preset != "custom" else None


def strength_key(flat: dict[str, Any], keys: list[str]) -> str | None:
    """The key that holds the strength of the point set apart by the plain config ``keys`` (in
    order), in the resolved config ``flat``; None when it has no regularizer to vary."""
    preset = gan_preset(flat)
    if preset is not None:
        return GAN_STRENGTH[preset]
    penalty = flat.get("reg.penalty", "none")
    own = "reg.lam" if penalty != "none" else "model.dropout" if flat.get("model.dropout") else None
    held = [k for k in keys if k in ("optim.weight_decay", own)]
    return held[-1] if held else None if penalty == "none" else "reg.lam"


def name_point(flat: dict[str, Any], point: dict[str, Any]) -> tuple[str, str, float | None, str | None]:
    """``(family, label, lam, strength key)`` of the point set apart by the plain config keys
    ``point`` (key → value, in order) in the resolved config ``flat``, e.g. ``("l2 optim.lr=0.01",
    "l2 optim.lr=0.01 λ=0.001", 0.001, "reg.lam")``: the one naming of points (module docstring)."""
    key = strength_key(flat, list(point))
    lam = None if key is None or isinstance(flat[key], bool) else float(flat[key])
    penalty = flat.get("reg.penalty", "none")
    if gan_preset(flat) is not None:
        base = gan_preset(flat)
    elif key == "optim.weight_decay":
        decay = f"{flat['optim.name']} weight_decay"
        base = decay if penalty == "none" else f"{penalty} + {decay}"
    else:
        base = "dropout" if key == "model.dropout" else penalty
    hidden = {*NOT_NAMED, key, *(["model.dropout"] if base == "none" else [])}
    family = " ".join([base, *(f"{k}={setting_text(v)}" for k, v in point.items()
                               if k not in hidden and not is_bookkeeping(k))])
    label = family if lam is None else f"{family} {SYMBOLS.get(key, 'λ')}={setting_text(lam)}"
    return family, label, lam, key


def study_keys(spec: dict[str, Any]) -> tuple[str, ...]:
    """The plain config keys that vary in the study: its grids' keys (shorthands written out, as
    ``reg.l2`` → ``reg.penalty``, ``reg.lam``), the seed when it has several, the fold under CV."""
    keys: list[str] = []
    for grid in (parse_grid(g) for g in spec["grids"]):
        first = None if grid.auto is not None else grid.values()[0]  # an auto grid is on reg.lam, a plain key
        keys += [k for k, _ in plain_overrides([(grid.key, first)])]
    keys += ["seed"] * (len(spec["seeds"]) > 1) + ["data.fold"] * bool(spec["folds"])
    return tuple(dict.fromkeys(keys))


def run_label(point: Point, spec: dict[str, Any]) -> RunLabel:
    """How the runs of ``point`` are named and logged (:class:`reglab.runs.RunLabel`): the family
    and its strength (module docstring), the study's keys (:func:`study_keys`) and its metric."""
    strength = "" if point.lam is None else f" {FOLDER_SYMBOLS.get(point.strength, 'lam')}={fmt_lam(point.lam)}"
    return RunLabel(point.family + strength, study_keys(spec), spec["metric"])


def describe(values: dict[str, Any], config: Config) -> Point:
    """A grid point's values (shorthands allowed) without those that do nothing, named by
    :func:`name_point`; ``config`` is the point's config."""
    kept = {k: v for k, v in values.items() if k not in unused_keys(values, config)}
    keys: list[str] = []
    for key, value in kept.items():
        keys += ["model.dropout"] if key == "reg.dropout" else [k for k, _ in plain_overrides([(key, value)])]
    flat = flat_keys(config.to_dict())
    family, label, lam, strength = name_point(flat, {k: flat[k] for k in dict.fromkeys(keys)})
    return Point(kept, label, family, lam, strength)


def grid_points(spec: dict[str, Any]) -> list[Point]:
    """The grid's distinct points (by their :func:`settings`), in grid order; each one's config
    is validated."""
    seed, fold = spec["seeds"][0], fold_list(spec)[0]
    points: dict[str, Point] = {}
    for values in points_values(spec, [parse_grid(g) for g in spec["grids"]]):
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
