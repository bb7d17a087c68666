"""The user's own data: ``data.name=csv`` and ``data.name=npz`` with ``data.path=FILE``.

* CSV: a header row is required; ``data.target=COLUMN`` names the target, every other column is a
  feature. All cells must be numbers (the target column alone may hold class names, which become
  labels 0..k-1 in sorted order, see ``extra['classes']``).
* NPZ: arrays ``x`` and ``y``; ``data.target=KEY`` names another array as the target. ``x`` keeps
  its shape (``(N,)`` becomes ``(N, 1)``).

``data.kind`` decides classification or regression; ``auto`` picks classification for an integer
target with at most 50 distinct values. Refused, each in one :class:`UserError` line that names
the file: no feature (a CSV of the target column alone, an ``x`` of shape ``(N, 0)``), targets
shaped other than ``(N,)`` or ``(N, k)``, a value beyond float32's range (it would become
infinite), a classification target with a single class, complex numbers.
"""

from __future__ import annotations

import csv
import math
import zipfile
from pathlib import Path

import numpy as np

from reglab.config import DataConfig
from reglab.data.dataset import Dataset, as_labels, infer_kind
from reglab.errors import UserError

MISSING = {"", "nan", "na", "n/a", "null", "none"}


def _existing(cfg: DataConfig, what: str) -> Path:
    if not cfg.path:
        raise UserError(f"data.name={what} needs data.path=FILE")
    path = Path(cfg.path).expanduser()
    if not path.is_file():
        raise UserError(f"{cfg.path}: file not found")
    return path


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value


def _read_csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the data rows, each with its line number in the file; blank lines skipped."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            rows = [(reader.line_num, row) for row in reader if any(c.strip() for c in row)]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UserError(f"{path}: not a readable CSV text file ({exc})") from None
    if not rows:
        raise UserError(f"{path}: empty file")
    header = [c.strip() for c in rows[0][1]]
    if all(_number(c) is not None for c in header):
        shown = ",".join(header[:5])
        raise UserError(f"{path}: the first row must be a header of column names, got {shown}")
    if len(set(header)) != len(header) or "" in header:
        dupes = sorted({c for c in header if header.count(c) > 1 or c == ""})
        raise UserError(f"{path}: column names must be unique and non-empty (problem: {dupes})")
    return header, rows[1:]


def load_csv(cfg: DataConfig) -> Dataset:
    path = _existing(cfg, "csv")
    header, rows = _read_csv(path)
    if not cfg.target:
        columns = ", ".join(header)
        raise UserError(f"{path}: name the target column, data.target=COLUMN (columns: {columns})")
    if cfg.target not in header:
        raise UserError(f"{path}: no column '{cfg.target}'; available columns: {', '.join(header)}")
    if not rows:
        raise UserError(f"{path}: no data rows below the header")
    t = header.index(cfg.target)
    values = np.empty((len(rows), len(header)), dtype=np.float64)
    text_columns: dict[int, tuple[int, str]] = {}
    for r, (line, row) in enumerate(rows):
        if len(row) != len(header):
            raise UserError(
                f"{path}: line {line} has {len(row)} fields, the header has {len(header)}"
            )
        for c, cell in enumerate(row):
            cell = cell.strip()
            if cell.lower() in MISSING:
                raise UserError(
                    f"{path}: missing value (empty or NaN) in column '{header[c]}', line {line}"
                )
            value = _number(cell)
            if value is None:
                text_columns.setdefault(c, (line, cell))
                value = math.nan
            elif not math.isfinite(value):
                raise UserError(
                    f"{path}: non-finite value {cell} in column '{header[c]}', line {line}"
                )
            values[r, c] = value
    features = [c for c in range(len(header)) if c != t]
    bad = [c for c in features if c in text_columns]
    if bad:
        shown = ", ".join(
            f"'{header[c]}' (e.g. '{text_columns[c][1]}' at line {text_columns[c][0]})" for c in bad
        )
        raise UserError(f"{path}: non-numeric feature column(s): {shown}")
    if not features:
        raise UserError(f"{path}: no feature columns: the file holds only the target column '{cfg.target}'")
    x = as_float32(values[:, features], f"{path}: a feature column")
    extra = {"columns": [header[c] for c in features], "target": cfg.target}
    if t in text_columns:  # class names in the target column
        if cfg.kind == "regression":
            line, cell = text_columns[t]
            raise UserError(
                f"{path}: target column '{cfg.target}' is not numeric "
                f"(e.g. '{cell}' at line {line})"
            )
        names = [row[t].strip() for _, row in rows]
        classes = sorted(set(names))
        lookup = {name: i for i, name in enumerate(classes)}
        y = np.array([lookup[n] for n in names], dtype=np.int64)
        check_classes(y, f"{path}: column '{cfg.target}'")
        extra["classes"] = classes
        return Dataset("csv", x, y, "classification", len(classes), f"CSV file {cfg.path}", extra)
    where = f"{path}: column '{cfg.target}'"
    return _finish("csv", x, values[:, t], cfg, where, f"CSV file {cfg.path}", extra)


def load_npz(cfg: DataConfig) -> Dataset:
    path = _existing(cfg, "npz")
    y_key = cfg.target or "y"
    try:
        with np.load(path, allow_pickle=False) as archive:
            keys = list(archive.keys())
            missing = [k for k in ("x", y_key) if k not in keys]
            if missing:
                named = ", ".join(repr(k) for k in missing)
                present = ", ".join(keys) or "none"
                raise UserError(f"{path}: no array named {named}; arrays: {present}")
            x, y = archive["x"], archive[y_key]
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise UserError(f"{path}: not a readable .npz file ({exc})") from None
    except ValueError as exc:  # object arrays need pickle, which we never allow
        raise UserError(
            f"{path}: cannot read arrays without pickle ({exc}); save plain numeric arrays"
        ) from None
    for key, array in (("x", x), (y_key, y)):
        if np.iscomplexobj(array):
            raise UserError(f"{path}: array '{key}' holds complex numbers (dtype {array.dtype}); reglab takes real values")
        if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
            raise UserError(f"{path}: array '{key}' is not numeric (dtype {array.dtype})")
        if array.ndim == 0 or len(array) == 0:
            raise UserError(f"{path}: array '{key}' is empty or a scalar")
        finite = np.isfinite(array.astype(np.float64))
        if not finite.all():
            where = tuple(int(i) for i in np.argwhere(~finite)[0])
            count = int((~finite).sum())
            raise UserError(
                f"{path}: array '{key}' has {count} NaN/inf value(s), first at index {where}"
            )
    if len(x) != len(y):
        raise UserError(f"{path}: 'x' has {len(x)} examples but '{y_key}' has {len(y)}")
    x = as_float32(x, f"{path}: array 'x'")
    x = x[:, None] if x.ndim == 1 else x
    if x[0].size == 0:
        raise UserError(f"{path}: array 'x' has no features (shape {x.shape})")
    where = f"{path}: array '{y_key}'"
    return _finish("npz", x, y, cfg, where, f"NPZ file {cfg.path}", {"target": y_key})


def as_float32(values: np.ndarray, where: str) -> np.ndarray:
    """``values`` as float32, refused when a finite value lies beyond float32's range (±3.4e38):
    it would become infinite and the run would only "diverge"."""
    with np.errstate(over="ignore"):
        out = np.asarray(values).astype(np.float32)
    if not np.isfinite(out).all():
        first = tuple(int(i) for i in np.argwhere(~np.isfinite(out))[0])
        raise UserError(f"{where}: value {np.asarray(values)[first]:g} at index {first} is beyond float32's "
                        f"range (±{np.finfo(np.float32).max:.3g}); rescale the data")
    return out


def _finish(name, x, y, cfg: DataConfig, where: str, source: str, extra: dict) -> Dataset:
    """The dataset of a user's file: one target per example (``(N,)``) or a row of targets
    (``(N, k)``, regression); classification needs at least two classes."""
    y = np.asarray(y)
    y = y[:, 0] if y.ndim == 2 and y.shape[1] == 1 else y
    if y.ndim > 2:
        raise UserError(f"{where}: targets must be one value per example (N,) or a row of values (N, k), "
                        f"got shape {y.shape}")
    kind = infer_kind(y) if cfg.kind == "auto" else cfg.kind
    if kind == "classification":
        labels, n_classes = as_labels(y, where)
        check_classes(labels, where)
        return Dataset(name, x, labels, kind, n_classes, source, extra)
    return Dataset(name, x, as_float32(y, where), kind, None, source, extra)


def check_classes(labels: np.ndarray, where: str) -> None:
    """A classification target needs two classes or more: with one, every accuracy is 1."""
    present = np.unique(labels)
    if len(present) < 2:
        raise UserError(f"{where}: every example has the same class; a classifier needs "
                        "at least two classes (use data.kind=regression for a numeric target)")
