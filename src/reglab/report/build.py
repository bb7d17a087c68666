"""Build a report folder from a study or from run folders.

``<out>/index.html`` (self-contained), ``<out>/plots/*.png`` and ``<out>/{configs,selection,
comparisons,failed}.csv``. Everything is written into a scratch folder first; an old
``index.html`` is removed before the new files move in and the new one comes last, so a report
that stopped half way never looks complete.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from reglab.bounded import load_yaml
from reglab.errors import UserError
from reglab.report.analysis import Analysis, analyse
from reglab.report.html import render
from reglab.report.plots import PLOT_NAMES, make_plots
from reglab.report.runs import records_from_runs
from reglab.report.tables import write_tables


@dataclass
class ReportResult:
    index: Path
    analysis: Analysis

    @property
    def message(self) -> str:
        return self.analysis.progress.message()


def is_study_folder(path: Path) -> bool:
    """``studies/<name>/`` holds ``study.db`` (SQLite) or ``storage.json`` (where the study is)."""
    return (path / "study.db").is_file() or (path / "storage.json").is_file()


def load_records(targets: Sequence[str | Path], storage: str | None = None) -> tuple[dict, list]:
    """A study folder, a study name with ``storage``, or run folders (and folders of run folders)."""
    if not targets:
        raise UserError("name a study folder or one or more run folders")
    if storage is not None or any(is_study_folder(Path(t)) for t in targets):
        if len(targets) != 1:
            raise UserError("report one study at a time (or run folders without a study)")
        from reglab.study.records import load_study

        spec, records = load_study((storage, str(targets[0])) if storage else Path(targets[0]))
        spec.setdefault("published", (load_yaml(spec.get("recipe_yaml") or "", "the study's recipe") or {}).get("published"))
        return spec, records
    return records_from_runs(targets)


def install(scratch: Path, out: Path) -> Path:
    """Move the finished files from ``scratch`` into ``out``; ``index.html`` last."""
    index = out / "index.html"
    index.unlink(missing_ok=True)
    (out / "plots").mkdir(exist_ok=True)
    for name in PLOT_NAMES:
        (out / "plots" / f"{name}.png").unlink(missing_ok=True)
    for png in (scratch / "plots").glob("*.png"):
        os.replace(png, out / "plots" / png.name)
    for table in scratch.glob("*.csv"):
        os.replace(table, out / table.name)
    os.replace(scratch / "index.html", index)
    return index


def write_report(spec: dict, records: list, out: str | Path) -> ReportResult:
    """Analyse ``records`` and write the report folder ``out``."""
    analysis = analyse(spec, records)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{out}' exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=".report-", dir=out))
    except OSError as exc:
        raise UserError(f"cannot write the report to '{out}': {exc.strerror}") from None
    try:
        plots = make_plots(analysis, scratch / "plots")
        write_tables(analysis, scratch)
        (scratch / "index.html").write_text(render(analysis, plots), encoding="utf-8")
        index = install(scratch, out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return ReportResult(index, analysis)


def build_report(targets: Sequence[str | Path], out: str | Path, storage: str | None = None) -> ReportResult:
    """``reglab report``: load the trials, then write the report."""
    spec, records = load_records(targets, storage)
    return write_report(spec, records, out)
