"""Datasets and splits: arrays plus metadata, seeded train/val/test and k folds. Offline by default.

::

    from reglab.data import load_dataset, make_splits
    ds = load_dataset(cfg.data)       # a Dataset: x, y, kind, n_classes, source, extra
    splits = make_splits(ds, cfg.data)
    x_train, y_train = splits.train

Built-in datasets: ``synthetic-linear``, ``synthetic-sparse``, ``mnist1d``, ``digits``,
``mnist-5k``, ``gaussian-ring``, ``gaussian-grid`` (all offline), ``mnist`` and ``fashion-mnist`` (``data.path=DIR`` of IDX files, or a
one-time verified download), and the user's ``csv`` / ``npz`` files, each declared in
:mod:`reglab.data.catalog`. Other modules add theirs with :func:`register_dataset`.
"""

from reglab.data.dataset import Dataset, DatasetInfo
from reglab.data.registry import dataset_info, list_datasets, load_dataset, register_dataset
from reglab.data.splits import Split, Splits, make_splits
from reglab.data.download import cache_dir
from reglab.data import catalog as _catalog  # noqa: F401  (registers the built-in datasets)

__all__ = [
    "Dataset",
    "DatasetInfo",
    "Split",
    "Splits",
    "cache_dir",
    "dataset_info",
    "list_datasets",
    "load_dataset",
    "make_splits",
    "register_dataset",
]
