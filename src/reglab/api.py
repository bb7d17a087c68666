"""The lab from Python: ``reglab.run`` and ``reglab.sweep``, the same as the command line.

::

    import reglab as rl

    run = rl.run("mlp-l2", "reg.l2=1e-3", "train.epochs=5")      # one run folder
    run.summary["test_acc"], run.metrics()                          # its numbers, per epoch

    study = rl.sweep("mlp-l2", "train.epochs=5", grid={"reg": ["none", "l2"], "reg.lam": "1e-5:1e-1:log:5"},
                     seeds="0-4")
    study.trials()                    # a pandas table: one row per point × seed × fold
    study.report("report/")           # the HTML report; returns the path of index.html

A user's own model gets the whole lab through ``model.kind=custom model.factory=package.module:function``
(see :mod:`reglab.models.build`). Errors the user can fix raise :class:`reglab.UserError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pandas as pd

from reglab.config import load_config
from reglab.runs import Run
from reglab.study.choose import Choice, choose_point
from reglab.study.records import TrialRecord, load_study
from reglab.study.sweep import sweep as run_sweep
from reglab.train import run as run_config


def run(recipe_or_path: str | Path, *overrides: str, out: str | Path | None = None,
        progress: bool | None = False) -> Run:
    """Train one config (a built-in recipe or a YAML file, with ``key=value`` overrides) and
    write its run folder under ``out`` (default: the config's ``out``), as ``reglab run`` does."""
    return run_config(load_config(str(recipe_or_path), list(overrides)), root=out, progress=progress)


@dataclass
class Study:
    """A study in its storage, found through its folder ``studies/<name>``."""

    name: str
    folder: Path
    finished: bool

    def records(self) -> tuple[dict[str, Any], list[TrialRecord]]:
        return load_study(self.folder)

    def trials(self) -> pd.DataFrame:
        """One row per point × seed × fold: the point (label, family, λ), seed, fold, status,
        reason, run folder and the run's summary numbers."""
        _, records = self.records()
        rows = [{"label": r.label, "family": r.family, "lam": r.lam, "seed": r.seed, "fold": r.fold,
                 "status": r.status, "reason": r.reason, "run_dir": r.run_dir, **r.summary} for r in records]
        return pd.DataFrame(rows)

    def chosen(self) -> Choice | None:
        """The point chosen on validation data (:mod:`reglab.study.choose`): ``label``, ``point``,
        ``score`` (the mean over ``seeds`` seeds of the validation objective ``metric``), ``tie``,
        ``tied`` and ``broken_by``; None before any result."""
        spec, records = self.records()
        return choose_point(spec, records)

    def report(self, out: str | Path = "report") -> Path:
        """Write the HTML report (as ``reglab report``); the absolute path of its ``index.html``."""
        from reglab.report import build_report

        return build_report([self.folder], Path(out)).index.resolve()


def grid_flags(grid: Mapping[str, Any] | Iterable[str] | None) -> list[str]:
    """``--grid`` texts from ``{"reg.lam": [1e-3, 1e-2]}`` or ``{"reg.lam": "1e-5:1e-1:log:5"}``
    (or from such texts already)."""
    if grid is None:
        return []
    if not isinstance(grid, Mapping):
        return list(grid)

    def token(value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value)

    return [f"{key}={values}" if isinstance(values, str) else f"{key}={','.join(token(v) for v in values)}"
            for key, values in grid.items()]


def seeds_text(seeds: int | str | Iterable[int]) -> str:
    if isinstance(seeds, (int, str)):
        return str(seeds)
    return ",".join(str(int(s)) for s in seeds)


def sweep(recipe_or_path: str | Path, *overrides: str, grid: Mapping[str, Any] | Iterable[str] | None = None,
          seeds: int | str | Iterable[int] = 0, cv: int | None = None, search: str = "grid",
          trials: int | None = None, storage: str | None = None, workers: int = 1, name: str | None = None,
          studies_dir: str | Path = "studies", batch: int = 16,
          echo: Callable[[str], None] | None = print, prune: str | None = None, prune_eta: int = 3,
          prune_min_epochs: int = 1) -> Study:
    """Create (or resume) and run a study, as ``reglab sweep`` does; the :class:`Study`.

    ``grid`` maps keys to values (a list, or a range text ``START:STOP:log|lin:COUNT``); ``seeds``
    is a number, a list or a text such as ``"0-9"``; ``echo=None`` is silent; ``prune="halving"``
    is ``--prune halving`` (with ``prune_eta``, ``prune_min_epochs``)."""
    result = run_sweep(str(recipe_or_path), list(overrides), grid_flags(grid), seeds_text(seeds), cv, search, trials,
                       storage, workers, name, Path(studies_dir), batch, echo=echo or (lambda line: None),
                       prune=prune, prune_eta=prune_eta, prune_min_epochs=prune_min_epochs)
    return Study(result.name, result.folder, result.finished)
