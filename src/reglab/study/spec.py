"""A study's spec: everything that decides which runs it holds, and its hash.

The spec is the recipe (its YAML text, so a worker on another machine needs no file), the base
overrides, the grids, the seeds, the number of CV folds, the search (``grid`` or ``tpe`` with its
number of trials), the pruning (``prune``, present only when asked for), the objective and, for
``reg.lam=auto:N``, the λ values chosen for each family (``auto``, :mod:`reglab.study.auto_grid`).
It is stored in the study; running ``reglab sweep`` again with the same spec resumes the study, and
a different spec under the same name is refused.

The objective is measured on validation data, never on test (``tasks.objective``): ``val_acc``
(maximized) for classification, ``val_loss`` (minimized) for regression, ``robust_val_acc`` for
adversarial runs, a GAN's ``reverse_kl``; with ``--cv K`` it is the mean over the K folds.

A study holds at most ``max_runs`` runs (points × seeds × folds; TPE trials × seeds × folds),
``MAX_RUNS`` unless ``--max-runs`` says otherwise; a larger one is refused before anything is
built, as filling its queue alone would take minutes. Grids are stored in their canonical form
(:meth:`Grid.canonical`), so equal grids written differently give the same spec.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

from reglab.bounded import load_yaml
from reglab.config import Config, apply_overrides, parse_override, read_yaml, recipe_path, validate
from reglab.errors import UserError
from reglab.study.auto_grid import auto_grid, resolve
from reglab.formatting import counted
from reglab.study.grid import RESERVED_KEYS, parse_grid, parse_seeds
from reglab.tasks.objective import objective

SEARCHES = ("grid", "tpe")
PRUNERS = ("halving",)
MAX_RUNS = 10_000


def make_spec(recipe: str, overrides: list[str], grids: list[str], seeds: str, folds: int | None,
              search: str = "grid", trials: int | None = None, max_runs: int = MAX_RUNS,
              prune: str | None = None, prune_eta: int = 3, prune_min_epochs: int = 1) -> dict[str, Any]:
    """Check the command's input and build its spec. Every mistake is a :class:`UserError`."""
    if max_runs < 1:
        raise UserError(f"--max-runs must be at least 1, got {max_runs}")
    if search not in SEARCHES:
        raise UserError(f"--search must be grid or tpe, got '{search}'")
    if search == "tpe" and not trials:
        raise UserError("--search tpe needs --trials N (the number of points to try)")
    if search == "grid" and trials is not None:
        raise UserError("--trials applies to --search tpe only; a grid runs every point")
    if trials is not None and trials < 1:
        raise UserError(f"--trials must be at least 1, got {trials}")
    if folds is not None and folds < 2:
        raise UserError(f"--cv needs at least 2 folds, got {folds}")
    for text in overrides:
        key = parse_override(text)[0]
        if key in RESERVED_KEYS:
            raise UserError(f"set '{key}' with {RESERVED_KEYS[key]} in a sweep, not as an override")
    parsed = [parse_grid(g) for g in grids]
    auto = auto_grid(parsed)
    if auto is not None and search == "tpe":
        raise UserError(f"--grid '{auto.text}': auto chooses a grid's values; --search tpe takes a range "
                        "such as 1e-6:1e-1:log:10")
    seed_list = parse_seeds(seeds, max_runs)
    points = trials if search == "tpe" else math.prod(g.size() for g in parsed)
    spec_size = points * len(seed_list) * (folds or 1)
    if spec_size > max_runs:
        raise UserError(f"this study would hold {counted(spec_size, 'run')} ({counted(points, 'point')} × "
                        f"{counted(len(seed_list), 'seed')}"
                        f"{f' × {folds} folds' if folds else ''}), more than the limit of {max_runs}; "
                        "make it smaller, or raise the limit with --max-runs")
    path = recipe_path(recipe)
    read_yaml(path)
    spec: dict[str, Any] = {
        "recipe": Path(recipe).stem,
        "recipe_yaml": path.read_text(),
        "overrides": list(overrides),
        "grids": [g.canonical() for g in parsed],
        "seeds": seed_list,
        "folds": folds,
        "search": search,
        "trials": trials,
    }
    config = config_for(spec, {}, spec["seeds"][0], 0 if folds else None)
    spec["metric"], spec["direction"] = objective(config, data_kind(config) == "classification")
    if prune not in (None, "none"):
        spec["prune"] = prune_spec(prune, prune_eta, prune_min_epochs, spec, parsed)
    if auto is not None:
        spec["auto"] = resolve(parsed, lambda values: config_for(spec, values, seed_list[0], 0 if folds else None))
    return spec


def prune_spec(method: str, eta: int, min_epochs: int, spec: dict[str, Any], grids: list) -> dict[str, Any]:
    """The spec's ``prune`` entry (absent without pruning, so older studies keep their names):
    successive halving (``reglab.train.halving``) with factor ``eta`` and no rung before epoch
    ``min_epochs``; checked against the study it prunes."""
    if method not in PRUNERS:
        raise UserError(f"--prune must be none or halving, got '{method}'")
    if eta < 2:
        raise UserError(f"--prune-eta must be at least 2, got {eta}")
    if min_epochs < 1:
        raise UserError(f"--prune-min-epochs must be at least 1, got {min_epochs}")
    if spec["search"] != "grid":
        raise UserError("--prune halving applies to --search grid: a TPE trial trains one point")
    if spec["metric"] not in ("val_acc", "val_loss"):
        raise UserError(f"--prune halving ranks points by a metric of every epoch; this study's objective "
                        f"{spec['metric']} is measured only at the end of a run")
    if any(g.key == "train.epochs" for g in grids):
        raise UserError("--prune halving needs one train.epochs for every point (it sets the rungs); "
                        "do not put train.epochs in a --grid")
    return {"method": method, "eta": eta, "min_epochs": min_epochs}


def data_kind(config: Config) -> str:
    if config.data.kind != "auto":
        return config.data.kind
    from reglab.data import load_dataset

    return load_dataset(config.data).kind


def spec_hash(spec: dict[str, Any]) -> str:
    text = json.dumps(spec, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def default_name(spec: dict[str, Any]) -> str:
    """``<recipe>-<hash of the spec>``: the same command gives the same study."""
    return f"{spec['recipe']}-{spec_hash(spec)}"


def fold_list(spec: dict[str, Any]) -> list[int | None]:
    return list(range(spec["folds"])) if spec["folds"] else [None]


def config_for(spec: dict[str, Any], values: dict[str, Any], seed: int, fold: int | None) -> Config:
    """The config of one run: recipe, then base overrides, then the point's values, then the
    seed and (with CV) ``data.n_folds``/``data.fold``."""
    tree = load_yaml(spec["recipe_yaml"], "the study's recipe") or {}
    tree.setdefault("name", spec["recipe"])
    pairs = [parse_override(o) for o in spec["overrides"]] + list(values.items()) + [("seed", seed)]
    if fold is not None:
        pairs += [("data.n_folds", spec["folds"]), ("data.fold", fold)]
    return validate(apply_overrides(tree, pairs))


def canonical(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with its grids in canonical form (a spec stored by an older reglab may hold them
    as typed)."""
    return {**spec, "grids": [parse_grid(g).canonical() for g in spec["grids"]]}


def differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The spec fields that differ, for the refusal message."""
    fields = {"recipe_yaml": "recipe file"}
    return [fields.get(k, k) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
