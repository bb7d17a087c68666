"""Train a study's configs and turn each run into an outcome stored with its trial.

Configs that can be trained together (same data and model shape, differing only in seed or
strength, as ``reglab.train.batched.vectorizable`` decides) are trained at once by
``reglab.train.batched.run_many``; the others one after another with ``reglab.train.run``. Either way
each run writes its usual run folder, left under its ``.partial`` name: the worker publishes it
once its outcome is stored (``runs.publish``).

An outcome is ``{"status": "ok"|"failed"|"pruned", "reason", "summary": numbers of summary.json,
"history": [{epoch, train_loss, val_loss, train_acc, val_acc}], "run_dir"}``. A run that fails
(diverges, or raises) gives a failed outcome with its reason; it never stops the study.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reglab.config import Config
from reglab.runs import Run, RunLabel, written
from reglab.train import run_or_fail
from reglab.train.batched import run_many
from reglab.train.halving import Halving, run_halving

HISTORY_KEYS = ("epoch", "train_loss", "val_loss", "train_acc", "val_acc")


def history_of(run_dir: Path | None) -> list[dict[str, float]]:
    path = written(run_dir) / "metrics.jsonl" if run_dir is not None else None
    if path is None or not path.is_file():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [{k: r[k] for k in HISTORY_KEYS if k in r} for r in records]


CURVE_KEYS = ("robust_curve",)  # besides the numbers, the summary's lists that the report plots ([ε, accuracy] pairs)


def outcome(result: Run) -> dict[str, Any]:
    summary = result.summary
    numbers = {k: v for k, v in summary.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
    numbers.update({k: summary[k] for k in CURVE_KEYS if k in summary})
    return {"status": summary.get("status", "failed"), "reason": summary.get("reason"), "summary": numbers,
            "history": history_of(result.path), "run_dir": str(result.path) if result.path else None}


def train_all(configs: list[Config], root: Path, vectorize: bool, labels: list[RunLabel | None] | None = None,
              halving: Halving | None = None, points: list[str] | None = None, batch: int = 16) -> list[dict[str, Any]]:
    """One outcome per config, in order, its run folder named by its label (else as a single run's);
    a failing run fails alone. With ``halving``, the configs (``points[i]``: the label of config i's
    point) train by successive halving (``reglab.train.halving``, stacks of at most ``batch``) and the
    pruned ones end as pruned."""
    labels = labels or [None] * len(configs)
    if halving is not None:
        results = run_halving(configs, points, halving, root, batch, publish=False, labels=labels)
    elif vectorize:
        results = run_many(configs, root, progress=False, publish=False, labels=labels)
    else:
        results = [run_or_fail(c, root, progress=False, publish=False, label=label) for c, label in zip(configs, labels)]
    return [outcome(r) for r in results]
