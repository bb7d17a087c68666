"""Trial records from plain run folders, so ``reglab report RUN_DIR…`` works without a study.

The runs must be of one experiment (recipe, task and data); runs of several are refused. Each run
becomes one trial. Its *point* is what sets it apart from the other runs given: the config keys
whose values differ between them (:func:`point_keys`: seed and fold excluded, and the weight
penalty's settings of a run without one). The point is named as a study's grid points are
(``study.points.name_point``): ``l2 λ=0.001``, ``none``, ``l1 reg.mode=proximal λ=0.01``, and
``dropout p=0.3`` for a run without a weight penalty among runs whose dropout rates differ. Its
seed and fold come from the config and its history from ``metrics.jsonl``. Folders written by an
older reglab (``reg.penalty: dropout``) read the same way (``shorthands.upgraded``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from reglab.config import RECIPE_DIR, Config, flat_keys, is_bookkeeping, validate
from reglab.errors import UserError
from reglab.runs import read_run, run_folders
from reglab.study.points import describe, setting_text
from reglab.study.records import TrialRecord

NOT_A_POINT = {"seed", "data.fold"}  # and the bookkeeping keys (config.is_bookkeeping)


def resolved(run: dict[str, Any]) -> Config:
    """A run's config, validated."""
    try:
        return validate(run["config"])
    except UserError as exc:
        raise UserError(f"{run['path']}/config.yaml: {exc}") from None


def relevant(key: str, flat: dict[str, Any]) -> bool:
    """Keys that describe a run: not its seed, fold or bookkeeping (output, logging), nor reg.* without a penalty."""
    return key not in NOT_A_POINT and not is_bookkeeping(key) and not (flat["reg.penalty"] == "none" and key.startswith("reg."))


def differs(flats: list[dict[str, Any]], key: str) -> bool:
    return len({json.dumps(flat.get(key)) for flat in flats if relevant(key, flat)}) > 1


def point_keys(flats: list[dict[str, Any]]) -> list[list[str]]:
    """Each run's point: the keys relevant to it whose values differ among the runs. Where dropout
    rates differ, a run without a weight penalty and with p > 0 has its rate as its strength (it is
    dropout); for the other runs ``model.dropout`` is a setting, in their point where it differs
    among them."""
    varying = sorted(k for k in set().union(*flats) if differs(flats, k))
    dropout = ["model.dropout" in varying and f["reg.penalty"] == "none" and f["model.dropout"] > 0 for f in flats]
    dropout_differs = differs([f for f, d in zip(flats, dropout) if not d], "model.dropout")
    return [[k for k in varying if relevant(k, flat) and (k != "model.dropout" or d or dropout_differs)]
            for flat, d in zip(flats, dropout)]


def fold_of(config: dict[str, Any]) -> int | None:
    data = config.get("data", {})
    return None if data.get("n_folds") is None else int(data.get("fold") or 0)


def record_of(run: dict[str, Any], resolved_config: Config, keys: list[str]) -> TrialRecord:
    config, summary = run["config"], run["summary"]
    flat = flat_keys(resolved_config.to_dict())
    named = describe({k: flat[k] for k in keys}, resolved_config)
    status = summary.get("status", "running")
    return TrialRecord(
        point=named.values, label=named.label, family=named.family, lam=named.lam, seed=int(config.get("seed", 0)),
        fold=fold_of(config), status=status if status in ("ok", "failed", "pruned") else "running",
        reason=summary.get("reason"), summary=summary, history=run["metrics"], run_dir=str(run["path"]),
        config=config,
    )


def experiment_of(config: dict[str, Any]) -> str:
    """What must be equal for runs to be compared: recipe, task and data."""
    data = config.get("data", {})
    return f"{config.get('name', 'run')} ({config.get('task', 'supervised')} on {data.get('name')})"


def require_one_experiment(runs: list[dict[str, Any]]) -> None:
    """Runs of different recipes, tasks or data answer different questions: refuse to rank them."""
    kinds = sorted({experiment_of(run["config"]) for run in runs})
    if len(kinds) > 1:
        raise UserError(f"the run folders hold {len(kinds)} different experiments ({'; '.join(kinds)}): "
                        "report each one's folders separately")


def builtin_recipe(names: list[str]) -> str | None:
    """The text of the built-in recipe the run folders are named after (one name), else None: the
    report quotes a recipe's published figure only for a config equal to that recipe's own."""
    path = RECIPE_DIR / f"{names[0]}.yaml" if len(names) == 1 else None
    return path.read_text() if path is not None and path.is_file() else None


def records_from_runs(targets: Iterable[str | Path]) -> tuple[dict[str, Any], list[TrialRecord]]:
    """A study-like ``(spec, records)`` pair from run folders (or folders of them)."""
    runs = [read_run(path) for path in run_folders(targets)]
    require_one_experiment(runs)
    configs = [resolved(run) for run in runs]
    flats = [flat_keys(config.to_dict()) for config in configs]
    keys = point_keys(flats)
    records = [record_of(run, config, k) for run, config, k in zip(runs, configs, keys)]
    names = sorted({str(run["config"].get("name", "run")) for run in runs})
    folds = {run["config"].get("data", {}).get("n_folds") for run in runs} - {None}
    spec = {
        "source": "run folders", "recipe": ", ".join(names), "name": ", ".join(names),
        "seeds": sorted({r.seed for r in records}), "folds": max(folds) if folds else None,
        "published": runs[0]["config"].get("published") if runs else None,
        "recipe_yaml": builtin_recipe(names), "overrides": [],
        "grids": [f"{k}={','.join(sorted({setting_text(flat[k]) for flat in flats if k in flat}))}"
                  for k in sorted(set().union(*keys))],
    }
    return spec, records
