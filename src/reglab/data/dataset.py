"""The :class:`Dataset` record, its static :class:`DatasetInfo`, and label checks shared by loaders.

Array conventions (every loader returns these, :func:`check_dataset` enforces them):

* ``x`` is float32 in its natural shape: tabular ``(N, d)``, 1-D signals ``(N, 1, L)``,
  images ``(N, C, H, W)`` with values in [0, 1];
* ``y`` is int64 ``(N,)`` with labels ``0 … n_classes-1`` for classification, and float32
  ``(N,)`` (one target) or ``(N, k)`` (k targets) for regression.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from reglab.errors import UserError

Kind = Literal["classification", "regression"]
KINDS = ("classification", "regression")
MAX_AUTO_CLASSES = 50  # an integer target with at most this many distinct values is a class label
MAX_CLASSES = 10_000  # labels 0..k-1 size the model's output layer: more classes is a mistake


@dataclass
class Dataset:
    """Arrays plus metadata. ``source`` says in one line where the data comes from."""

    name: str
    x: np.ndarray
    y: np.ndarray
    kind: Kind
    n_classes: int | None = None
    source: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.x)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @property
    def n_outputs(self) -> int:
        """Number of classes, or the number of regression targets."""
        if self.kind == "classification":
            return int(self.n_classes)
        return 1 if self.y.ndim == 1 else int(self.y.shape[1])


@dataclass(frozen=True, kw_only=True)
class DatasetInfo:
    """What ``reglab datasets`` prints; stated statically, without loading the data.

    ``n_examples`` and ``shape`` (of one example) are the defaults (``None`` when they depend on
    the user's file). ``offline`` tells whether the dataset loads without network. ``options``
    names the ``data.*`` keys among ``path``, ``target``, ``n_samples``, ``noise`` that the
    dataset uses (setting another one is an error); ``None`` means it takes any of them. Every
    field is given by its name.
    """

    name: str
    kind: str
    n_examples: int | None
    shape: tuple[int, ...] | None
    source: str
    offline: bool
    description: str
    n_classes: int | None = None
    options: tuple[str, ...] | None = ()


def check_dataset(ds: Dataset) -> Dataset:
    """Enforce the array conventions; a loader that breaks them is a bug (ValueError)."""
    name = ds.name
    if ds.kind not in KINDS:
        raise ValueError(f"dataset {name}: kind must be one of {KINDS}, got {ds.kind!r}")
    if not isinstance(ds.x, np.ndarray) or ds.x.dtype != np.float32 or ds.x.ndim < 2:
        raise ValueError(f"dataset {name}: x must be a float32 array of shape (N, ...)")
    if not isinstance(ds.y, np.ndarray) or len(ds.y) != len(ds.x):
        raise ValueError(f"dataset {name}: y must be an array with one entry per row of x")
    if ds.kind == "classification":
        if ds.y.dtype != np.int64 or ds.y.ndim != 1:
            raise ValueError(f"dataset {name}: classification labels must be int64 of shape (N,)")
        if ds.n_classes is None or ds.n_classes < 1:
            raise ValueError(f"dataset {name}: n_classes must be set for classification")
        if len(ds.y) and (ds.y.min() < 0 or ds.y.max() >= ds.n_classes):
            raise ValueError(f"dataset {name}: labels must lie in 0..{ds.n_classes - 1}")
    else:
        if ds.y.dtype != np.float32 or ds.y.ndim not in (1, 2):
            raise ValueError(f"dataset {name}: regression targets must be float32 (N,) or (N, k)")
        if ds.n_classes is not None:
            raise ValueError(f"dataset {name}: n_classes must be None for regression")
    return ds


def infer_kind(y: np.ndarray) -> Kind:
    """``auto``: an integer-valued 1-D target with at most 50 distinct values is classification."""
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.number) or not np.all(np.isfinite(y)):
        return "regression"
    if not np.all(np.mod(y, 1) == 0):
        return "regression"
    return "classification" if len(np.unique(y)) <= MAX_AUTO_CLASSES else "regression"


def show_values(values: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(f"{v:g}" for v in values[:limit])
    return shown + (", …" if len(values) > limit else "")


def as_labels(y: np.ndarray, where: str) -> tuple[np.ndarray, int]:
    """Class labels as int64 ``0 … k-1``; ``where`` names the file/column for the error."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise UserError(f"{where}: class labels must be one value per example, got shape {y.shape}")
    values = np.unique(y.astype(np.float64))
    bad = values[(values < 0) | (np.mod(values, 1) != 0)]
    if len(bad):
        raise UserError(
            f"{where}: class labels must be integers 0..k-1, found {show_values(bad)}"
            " (use data.kind=regression for a numeric target)"
        )
    if len(values) and values[-1] >= MAX_CLASSES:
        raise UserError(
            f"{where}: class label {values[-1]:g} means more than {MAX_CLASSES} classes (labels are"
            " 0..k-1 and size the output layer); use data.kind=regression for a numeric target"
        )
    labels = y.astype(np.int64)
    return labels, int(labels.max()) + 1 if len(labels) else 0

