"""The lab from Python: ``reglab.run`` and ``reglab.sweep``, the same as the command line.

::

    import reglab as rl

    run = rl.run("mlp-l2", "reg.l2=1e-3", "train.epochs=5")      # one run folder
    run.summary["test_acc"], run.metrics()                          # its numbers, per epoch

    study = rl.sweep("mlp-l2", "train.epochs=5", grid={"reg": ["none", "l2"], "reg.lam": "1e-5:1e-1:log:5"},
                     seeds="0-4")
    study.trials()                    # a pandas table: one row per point × seed × fold
    study.summary()                   # one row per config: seed mean, CI, n, status
    study.chosen()                    # the config chosen on validation: best_params, score, ci, n
    study.report("report/")           # the HTML report; returns the path of index.html
    rl.Study.open("studies/<name>")   # a study made earlier (or elsewhere)

A user's own model gets the whole lab through ``model.kind=custom model.factory=package.module:function``
(see :mod:`reglab.models.build`). Errors the user can fix raise :class:`reglab.UserError`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pandas as pd

from reglab.config import load_config
from reglab.formatting import counted
from reglab.runs import Run
from reglab.stats import MIN_SEEDS, summary_over_seeds
from reglab.study.choose import Choice, candidates, choose_point, score, seed_means
from reglab.study.records import ENDED, TrialRecord, load_study, locate
from reglab.study.sweep import sweep as run_sweep
from reglab.train import run as run_config


def run(recipe_or_path: str | Path, *overrides: str, out: str | Path | None = None,
        progress: bool | None = False) -> Run:
    """Train one config (a built-in recipe or a YAML file, with ``key=value`` overrides) and
    write its run folder under ``out`` (default: the config's ``out``), as ``reglab run`` does."""
    return run_config(load_config(str(recipe_or_path), list(overrides)), root=out, progress=progress)


@dataclass(frozen=True)
class Chosen:
    """The config chosen on validation (:mod:`reglab.study.choose`), as a small record.

    ``best_params`` are the config's overrides that set it apart in the study (the grid values or
    TPE params, as Optuna and scikit-learn name them); ``score`` is the mean over its ``n`` seeds of
    each seed's validation ``metric`` (folds averaged within a seed); ``ci`` is the 95% percentile
    bootstrap interval of that mean (:func:`reglab.stats.bootstrap_ci`, as the report computes it),
    None with fewer than :data:`reglab.stats.MIN_SEEDS` seeds. ``choice`` holds the
    rest of the chooser's answer: the tie and how it was broken, the configs passed over."""

    label: str
    family: str
    lam: float | None
    best_params: dict[str, Any]
    metric: str
    score: float
    ci: tuple[float, float] | None
    n: int
    choice: Choice


def interval(records: list[TrialRecord], metric: str) -> tuple[float, float] | None:
    """The bootstrap CI over seeds of ``metric`` on the finished ``records`` of one config; None
    below :data:`~reglab.stats.MIN_SEEDS` seeds."""
    summary = summary_over_seeds([r for r in records if r.status == "ok"], metric)
    if summary is None or summary.n < MIN_SEEDS:
        return None
    return summary.low, summary.high


def config_status(records: list[TrialRecord]) -> str:
    """``ok`` (every run finished), ``failed`` (a run failed), ``pruned`` (a run was pruned by
    successive halving; either is never chosen) or ``unfinished``."""
    statuses = {r.status for r in records}
    return next((s for s in ("failed", "pruned") if s in statuses), "ok" if statuses == {"ok"} else "unfinished")


@dataclass
class Study:
    """A study in its storage, found through its folder ``studies/<name>``."""

    name: str
    folder: Path
    finished: bool

    @classmethod
    def open(cls, folder: str | Path) -> "Study":
        """The study of an existing study folder (``studies/<name>``, which holds its ``study.db``
        or the ``storage.json`` that names its database); :class:`UserError` if it is none."""
        _, name = locate(Path(folder))
        _, records = load_study(Path(folder))
        return cls(name, Path(folder), all(r.status in ENDED for r in records))

    def records(self) -> tuple[dict[str, Any], list[TrialRecord]]:
        return load_study(self.folder)

    def trials(self) -> pd.DataFrame:
        """One row per trial (point × seed × fold): its label, one column per grid key with the
        point's value (empty where the point does not set it), seed, fold, status, reason, the
        run's summary numbers and its run folder."""
        _, records = self.records()
        keys = list(dict.fromkeys(key for r in records for key in r.point))
        rows = [{"label": r.label, **{key: r.point.get(key) for key in keys}, "seed": r.seed, "fold": r.fold,
                 "status": r.status, "reason": r.reason, **r.summary, "run_dir": r.run_dir} for r in records]
        return pd.DataFrame(rows)

    def summary(self) -> pd.DataFrame:
        """One row per config: label, family, λ, the seed mean of the validation objective
        (``mean``, as the chooser computes it), its bootstrap CI (``ci_low``, ``ci_high``; empty
        below :data:`~reglab.stats.MIN_SEEDS` seeds), ``n`` (seeds with a result) and
        ``status`` (:func:`config_status`); the chosen config is marked in ``chosen``."""
        spec, records = self.records()
        chosen = choose_point(spec, records)
        rows = []
        for c in candidates(records):
            means = seed_means(c.records, spec["metric"])
            low, high = interval(list(c.records), spec["metric"]) or (None, None)
            rows.append({"label": c.label, "family": c.family, "lam": c.lam,
                         "mean": score(means) if means else None, "ci_low": low, "ci_high": high,
                         "n": len(means), "status": config_status(list(c.records)),
                         "chosen": chosen is not None and c.label == chosen.label})
        return pd.DataFrame(rows, columns=["label", "family", "lam", "mean", "ci_low", "ci_high", "n", "status",
                                           "chosen"])

    def chosen(self) -> Chosen | None:
        """The config chosen on validation data (:class:`Chosen`); None before any result."""
        spec, records = self.records()
        choice = choose_point(spec, records)
        if choice is None:
            return None
        mine = [r for r in records if r.label == choice.label]
        return Chosen(choice.label, choice.family, choice.lam, dict(choice.point), choice.metric, choice.score,
                      interval(mine, choice.metric), choice.seeds, choice)

    def _repr_html_(self) -> str:
        """In a notebook: the study's name and progress, the chosen config, the report's verdicts
        (each regularizer against its baseline on the test metric) and :meth:`summary`."""
        from reglab.report.analysis import analyse

        spec, records = self.records()
        done = sum(r.status in ENDED for r in records)
        parts = [f"<h4>study {escape(self.name)}: {done} of {counted(len(records), 'trial')} finished</h4>"]
        chosen = self.chosen()
        if chosen is not None:
            ci = f" [{chosen.ci[0]:.4g}, {chosen.ci[1]:.4g}]" if chosen.ci else ""
            tie = f"; {chosen.choice.tie_text()}" if chosen.choice.tie else ""
            parts.append(f"<p>chosen on validation: <b>{escape(chosen.label)}</b>, mean {escape(chosen.metric)} "
                         f"{chosen.score:.4g}{ci} over {counted(chosen.n, 'seed')}{escape(tie)}</p>")
        if any(r.status == "ok" for r in records):
            analysis = analyse(spec, records)
            verdicts = [analysis.best, *(c.verdict for c in analysis.comparisons)]
            parts.append("<ul>" + "".join(f"<li>{escape(v)}</li>" for v in verdicts if v) + "</ul>")
        parts.append(self.summary().to_html(index=False, na_rep="–", float_format="{:.4g}".format))
        return "\n".join(parts)

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
