"""Trial records from plain run folders, so ``reglab report RUN_DIR…`` works without a study.

The runs must be of one experiment (recipe, task and data); runs of several are refused. Each run
becomes one trial. Its *point* is what sets it apart from the other runs given: the
config keys whose values differ between them (seed and fold excluded, and keys its penalty makes
irrelevant, such as ``reg.lam`` of an unregularized run). Its family is ``reg.penalty`` followed
by the point's other settings (``l2``, ``none``, ``l1 reg.mode=proximal``), its λ is ``reg.lam``
(``reg.dropout`` for dropout, none for ``none``), its seed and fold come from the config and its
history from ``metrics.jsonl``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from reglab.config import flat_keys
from reglab.errors import UserError
from reglab.report.formatting import fmt_lam
from reglab.runs import read_run
from reglab.study.records import TrialRecord

NOT_A_POINT = {"seed", "data.fold", "out", "description", "device"}


def is_run_folder(path: Path) -> bool:
    return (path / "summary.json").is_file() and (path / "config.yaml").is_file()


def run_folders(targets: Iterable[str | Path]) -> list[Path]:
    """The run folders named, or found below the folders named, in order and without repeats."""
    found: dict[Path, None] = {}
    for target in targets:
        path = Path(target)
        if not path.exists():
            raise UserError(f"'{path}' does not exist")
        if is_run_folder(path):
            found[path] = None
            continue
        below = sorted(p.parent for p in path.glob("**/summary.json") if is_run_folder(p.parent))
        if not below:
            raise UserError(f"'{path}' is neither a run folder nor a folder holding run folders")
        found.update(dict.fromkeys(below))
    return list(found)


def flatten(config: dict[str, Any]) -> dict[str, str]:
    """A run's config as dotted keys with JSON-text leaves, so that lists compare."""
    return {key: json.dumps(value) for key, value in flat_keys(config).items()}


def penalty_and_lam(config: dict[str, Any]) -> tuple[str, float | None]:
    reg = config.get("reg", {})
    penalty = reg.get("penalty", "none")
    if penalty == "none":
        return penalty, None
    return penalty, float(reg.get("dropout" if penalty == "dropout" else "lam", 0.0))


def irrelevant(key: str, penalty: str) -> bool:
    """Keys that do not describe a run with this penalty: reg.* without a penalty, and so on."""
    if key in NOT_A_POINT:
        return True
    if penalty == "none":
        return key.startswith("reg.")
    if penalty == "dropout":
        return key in ("reg.lam", "reg.mode", "reg.on", "reg.l1_ratio", "model.dropout")
    return key == "reg.dropout"


def label_value(value: Any) -> str:
    if isinstance(value, float):
        return fmt_lam(value)
    return json.dumps(value, separators=(",", ":")) if isinstance(value, (list, dict)) else str(value)


def family_and_label(penalty: str, lam: float | None, point: dict[str, Any]) -> tuple[str, str]:
    """``("l2 optim.lr=0.01", "l2 optim.lr=0.01 λ=1e-3")``"""
    others = [f"{k}={label_value(v)}" for k, v in point.items() if k not in ("reg.penalty", "reg.lam", "reg.dropout")]
    family = " ".join([penalty, *others])
    return family, family if lam is None else f"{family} {'p' if penalty == 'dropout' else 'λ'}={fmt_lam(lam)}"


def fold_of(config: dict[str, Any]) -> int | None:
    data = config.get("data", {})
    return None if data.get("n_folds") is None else int(data.get("fold") or 0)


def record_of(run: dict[str, Any], varying: set[str]) -> TrialRecord:
    config, summary = run["config"], run["summary"]
    penalty, lam = penalty_and_lam(config)
    flat = flatten(config)
    point = {k: json.loads(flat[k]) for k in sorted(varying) if k in flat and not irrelevant(k, penalty)}
    family, label = family_and_label(penalty, lam, point)
    status = summary.get("status", "running")
    return TrialRecord(
        point=point, label=label, family=family, lam=lam, seed=int(config.get("seed", 0)),
        fold=fold_of(config), status=status if status in ("ok", "failed") else "running",
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


def records_from_runs(targets: Iterable[str | Path]) -> tuple[dict[str, Any], list[TrialRecord]]:
    """A study-like ``(spec, records)`` pair from run folders (or folders of them)."""
    runs = [read_run(path) for path in run_folders(targets)]
    require_one_experiment(runs)
    flats = [flatten(run["config"]) for run in runs]
    penalties = [penalty_and_lam(run["config"])[0] for run in runs]
    keys = set().union(*flats)
    varying = {k for k in keys
               if len({flat.get(k) for flat, penalty in zip(flats, penalties) if not irrelevant(k, penalty)}) > 1}
    records = [record_of(run, varying) for run in runs]
    names = sorted({str(run["config"].get("name", "run")) for run in runs})
    folds = {run["config"].get("data", {}).get("n_folds") for run in runs} - {None}
    spec = {
        "source": "run folders", "recipe": ", ".join(names), "name": ", ".join(names),
        "seeds": sorted({r.seed for r in records}), "folds": max(folds) if folds else None,
        "published": runs[0]["config"].get("published") if runs else None,
        "grids": [f"{k}={','.join(label_value(json.loads(v)) for v in sorted({flat[k] for flat in flats if k in flat}))}"
                  for k in sorted(varying - NOT_A_POINT)],
    }
    return spec, records
