"""Seeded train/val/test splits and k folds.

* The test split is held out first. A dataset with an official test split (MNIST, Fashion-MNIST,
  MNIST-1D: ``extra['official_test_index']``) uses it when ``test_split=official`` (the default),
  so test figures are comparable with published ones; otherwise (no official split, or
  ``test_split=random``) it is ``test_fraction`` of the examples, stratified by class for
  classification. A ``test_fraction`` other than its default beside an official split used is an
  error (it would do nothing). It is the same whether or not folds are used, and the same for
  every fold.
  Validation and folds are always cut from the remaining (training) part.
* Without folds, ``val_fraction`` of that training part (not of all examples: the official test
  set does not count) is cut from it as validation, stratified by class for classification.
  With ``n_folds=k``, the rest is cut into k (stratified) folds and fold ``fold`` (default 0)
  is validation; the other k-1 folds are training.
* ``n_train`` keeps only the first ``n_train`` training examples of a seeded, stratified shuffle
  (nested: a smaller ``n_train`` is a subset of a larger one), for tiny runs and to make
  overfitting visible. Validation and test do not change with ``n_train``.

Everything is driven by ``split_seed``: the same seed gives identical splits. A split that the
data are too few for is refused beforehand in reglab's terms (:func:`check_cut`): which part, how
many examples it would get, and the ``data.*`` key to change.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np

from reglab.config import DataConfig
from reglab.data.dataset import Dataset
from reglab.errors import UserError


@dataclass
class Split:
    """One part of a dataset. Unpacks as ``x, y = split``; ``index`` gives rows of the dataset."""

    x: np.ndarray
    y: np.ndarray
    index: np.ndarray

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter((self.x, self.y))

    def __len__(self) -> int:
        return len(self.y)

    def tensors(self):
        """``(x, y)`` as torch tensors sharing memory with the arrays."""
        import torch

        return torch.from_numpy(self.x), torch.from_numpy(self.y)


@dataclass
class Splits:
    train: Split
    val: Split
    test: Split
    input_shape: tuple[int, ...]
    n_outputs: int  # number of classes, or number of regression targets
    kind: str
    n_classes: int | None = None
    name: str = ""
    fold: int | None = None
    n_folds: int | None = None
    test_split: str = "random"

    def metadata(self) -> dict[str, int | str]:
        """What a run's summary records about its data: ``n_train``, ``n_val``, ``n_test`` and
        ``test_split`` (``official`` or ``random``)."""
        return {"n_train": len(self.train), "n_val": len(self.val), "n_test": len(self.test),
                "test_split": self.test_split}

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "val": len(self.val), "test": len(self.test)}

    def standardized(self, eps: float = 1e-8) -> "Splits":
        """Features scaled to zero mean and unit variance per feature, with statistics from the
        training split only (no leak from val/test). Penalties are scale-dependent, so tabular
        features usually want this; images and signals usually do not."""
        mean = self.train.x.mean(axis=0, keepdims=True)
        std = self.train.x.std(axis=0, keepdims=True)
        std = np.where(std < eps, 1.0, std).astype(np.float32)

        def scale(s: Split) -> Split:
            return replace(s, x=((s.x - mean) / std).astype(np.float32))

        return replace(self, train=scale(self.train), val=scale(self.val), test=scale(self.test))


def _fail(ds: Dataset, cfg: DataConfig, why: str) -> UserError:
    detail = f"{len(ds)} examples"
    if ds.kind == "classification":
        counts = np.bincount(ds.y, minlength=ds.n_classes)
        counts = counts[counts > 0]
        detail += f", {len(counts)} classes, the smallest with {counts.min()}"
    folds = f", data.n_folds={cfg.n_folds}" if cfg.n_folds else ""
    return UserError(
        f"dataset '{ds.name}' has too few examples for this split ({detail}; data.test_fraction="
        f"{cfg.test_fraction}, data.val_fraction={cfg.val_fraction}{folds}): {why}"
    )


def check_cut(ds: Dataset, cfg: DataConfig, index: np.ndarray, n_out: int, part: str, rest: str, key: str) -> None:
    """Refuse to cut ``n_out`` of the examples ``index`` as ``part``, leaving the others as ``rest``,
    when either would be empty or, stratified by class, smaller than the number of classes, or a
    class has a single example; the message names ``key``, the setting to change."""
    n_left = len(index) - n_out
    why = None
    if n_out < 1 or n_left < 1:
        why = f"{part} would get {n_out} and {rest} {n_left} of {len(index)} examples"
    elif ds.kind == "classification":
        counts = np.bincount(ds.y[index])
        counts = counts[counts > 0]
        if counts.min() < 2:
            why = f"a class has a single example among the {len(index)} to cut into {part} and {rest}"
        elif min(n_out, n_left) < len(counts):
            why = (f"{part} would get {n_out} and {rest} {n_left} examples, fewer than the {len(counts)} "
                   "classes that each must hold")
    if why is not None:
        raise _fail(ds, cfg, f"{why}; change {key}")


def make_splits(ds: Dataset, cfg: DataConfig) -> Splits:
    """Cut ``ds`` into train/val/test (or a k-fold train/val plus the fixed test) as described in
    this module's docstring. Raises :class:`UserError` when the data are too few to cut."""
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    seed = cfg.split_seed
    n = len(ds)
    classify = ds.kind == "classification"
    official = ds.extra.get("official_test_index") if cfg.test_split == "official" else None
    if official is not None and cfg.test_fraction != DataConfig.model_fields["test_fraction"].default:
        raise UserError(
            f"data.test_fraction={cfg.test_fraction} has no effect: dataset '{ds.name}' has an official test "
            f"split, which data.test_split=official (the default) uses; set data.test_split=random to hold "
            f"out test_fraction of the examples instead"
        )
    if official is not None:
        test = np.asarray(official)
        rest = np.setdiff1d(np.arange(n), test)
    else:
        everything = np.arange(n)
        n_test = math.ceil(cfg.test_fraction * n)  # scikit-learn's rounding of a fractional test size
        check_cut(ds, cfg, everything, n_test, "the test split", "training", "data.test_fraction")
        rest, test = train_test_split(
            everything, test_size=n_test, random_state=seed, stratify=ds.y if classify else None,
        )  # fmt: skip
    if cfg.n_folds is not None:
        fold = cfg.fold or 0
        largest = np.bincount(ds.y[rest]).max() if classify else len(rest)
        if cfg.n_folds > largest:
            where = "examples in its largest class" if classify else "training examples"
            raise _fail(ds, cfg, f"data.n_folds={cfg.n_folds} folds need at least as many {where} "
                                 f"(there are {largest}); lower data.n_folds")
        kfold = StratifiedKFold if classify else KFold
        splitter = kfold(cfg.n_folds, shuffle=True, random_state=seed)
        parts = list(splitter.split(rest, ds.y[rest] if classify else None))
        if any(len(p) == 0 for pair in parts for p in pair):
            raise _fail(ds, cfg, f"cannot cut {len(rest)} examples into {cfg.n_folds} folds; lower data.n_folds")
        train_pos, val_pos = parts[fold]
        train, val = rest[train_pos], rest[val_pos]
    else:
        n_val = max(1, int(round(cfg.val_fraction * len(rest))))
        check_cut(ds, cfg, rest, n_val, "validation", "training", "data.val_fraction")
        train, val = train_test_split(
            rest, test_size=n_val, random_state=seed, stratify=ds.y[rest] if classify else None
        )
    if cfg.n_train is not None:
        train = _subsample(train, ds, cfg)
    return Splits(
        train=Split(ds.x[train], ds.y[train], train),
        val=Split(ds.x[val], ds.y[val], val),
        test=Split(ds.x[test], ds.y[test], test),
        input_shape=ds.input_shape,
        n_outputs=ds.n_outputs,
        kind=ds.kind,
        n_classes=ds.n_classes,
        name=ds.name,
        fold=(cfg.fold or 0) if cfg.n_folds else None,
        n_folds=cfg.n_folds,
        test_split="official" if official is not None else "random",
    )


def _subsample(train: np.ndarray, ds: Dataset, cfg: DataConfig) -> np.ndarray:
    """The first ``n_train`` examples of a seeded, class-interleaved shuffle of ``train``: each
    prefix holds every class in proportion (within one example), and a smaller ``n_train`` gives
    a subset of a larger one, so learning curves over ``n_train`` are nested."""
    k = cfg.n_train
    if k > len(train):
        raise UserError(
            f"data.n_train={k} is more than the {len(train)} training examples of '{ds.name}'"
        )
    rng = np.random.default_rng(cfg.split_seed)
    order = rng.permutation(len(train))
    if ds.kind == "classification":
        labels = ds.y[train][order]
        rank = np.empty(len(order))
        for c in np.unique(labels):
            where = np.flatnonzero(labels == c)
            rank[where] = (np.arange(len(where)) + rng.uniform()) / len(where)
        order = order[np.argsort(rank, kind="stable")]
    return train[order[:k]]
