"""reglab.data: built-in datasets, user files, IDX, verified downloads, splits and folds."""

from __future__ import annotations

import gzip
import hashlib
import os

import numpy as np
import pytest

import reglab.data.builtin as builtin
import reglab.data.mnist as mnist_mod
import reglab.data.registry as registry
from reglab.config import DataConfig
from reglab.data import (
    Dataset,
    DatasetInfo,
    Splits,
    dataset_info,
    list_datasets,
    load_dataset,
    make_splits,
    register_dataset,
)
from reglab.data.download import fetch, DownloadError
from reglab.data.idx import read_idx, write_idx
from reglab.errors import UserError

# sha256 of x (5000, 1, 40) float32 then y (5000,) int64 from mnist1d's default arguments.
MNIST1D_SHA256 = "f7e6b4ae1766612049bfa012eb07881b5a4d2a1f4c0fd4cc7ce4b79fb0853cdb"


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Every test gets its own cache folder and no network."""
    monkeypatch.setenv("REGLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("REGLAB_OFFLINE", "1")


def cfg(**kw) -> DataConfig:
    return DataConfig(**kw)


def error(fn, *args) -> str:
    with pytest.raises(UserError) as exc:
        fn(*args)
    message = str(exc.value)
    assert "\n" not in message
    return message


# ------------------------------------------------------------------ built-in datasets


@pytest.mark.parametrize(
    "name, shape, kind, n_classes",
    [
        ("synthetic-linear", (100, 1), "regression", None),
        ("synthetic-sparse", (200, 100), "regression", None),
        ("digits", (1797, 1, 8, 8), "classification", 10),
        ("mnist-5k", (5000, 1, 28, 28), "classification", 10),
    ],
)
def test_builtin_shapes_and_info(name, shape, kind, n_classes):
    ds = load_dataset(cfg(name=name))
    assert ds.x.shape == shape and ds.x.dtype == np.float32
    assert ds.kind == kind and ds.n_classes == n_classes
    assert ds.y.shape == (shape[0],)
    assert ds.y.dtype == (np.int64 if kind == "classification" else np.float32)
    assert np.isfinite(ds.x).all() and ds.source
    info = dataset_info(name)  # the static info agrees with the data
    assert (info.n_examples, info.shape, info.kind, info.offline) == (shape[0], shape[1:], kind, True)
    if kind == "classification":
        assert ds.x.min() >= 0 and ds.x.max() <= 1 and ds.x.max() > 0.9
        assert sorted(np.unique(ds.y)) == list(range(10))


def test_mnist_5k_is_real_balanced_mnist():
    ds = load_dataset(cfg(name="mnist-5k"))
    assert np.bincount(ds.y).tolist() == [500] * 10
    # real handwriting: the border is blank and the middle is ink
    assert ds.x[:, 0, 0, :].max() == 0 and ds.x[:, 0, 10:18, 10:18].mean() > 0.2


def test_synthetic_linear_matches_source_document():
    ds = load_dataset(cfg(name="synthetic-linear", split_seed=42))
    rs = np.random.RandomState(42)  # the document's np.random.seed(42) sequence
    x = rs.rand(100, 1)
    y = 2 * x + 1 + rs.randn(100, 1) * 0.5
    np.testing.assert_allclose(ds.x, x, rtol=1e-6)
    np.testing.assert_allclose(ds.y, y[:, 0], rtol=1e-6)
    assert ds.extra["coef"].tolist() == [2.0] and ds.extra["intercept"] == 1.0


def test_synthetic_options_and_seed():
    ds = load_dataset(cfg(name="synthetic-linear", n_samples=3000, noise=0.01, split_seed=1))
    slope, intercept = np.polyfit(ds.x[:, 0], ds.y, 1)
    assert abs(slope - 2) < 0.01 and abs(intercept - 1) < 0.01
    again = load_dataset(cfg(name="synthetic-linear", n_samples=3000, noise=0.01, split_seed=1))
    other = load_dataset(cfg(name="synthetic-linear", n_samples=3000, noise=0.01, split_seed=2))
    assert np.array_equal(ds.x, again.x) and not np.array_equal(ds.x, other.x)


def test_synthetic_sparse_true_coefficients():
    ds = load_dataset(cfg(name="synthetic-sparse", noise=0.5))
    coef = ds.extra["coef"]
    assert coef.shape == (100,) and np.count_nonzero(coef) == 10
    assert np.flatnonzero(coef).tolist() == ds.extra["support"].tolist()
    assert np.abs(coef[coef != 0]).min() >= 1
    residual = ds.y - ds.x @ coef
    assert 0.4 < residual.std() < 0.6  # only the noise is left


@pytest.fixture(scope="module")
def mnist1d_run(tmp_path_factory):
    """Generate MNIST-1D once, into a fresh cache (so the generator really runs)."""
    cache = tmp_path_factory.mktemp("mnist1d-cache")
    old = os.environ.get("REGLAB_CACHE")
    os.environ["REGLAB_CACHE"] = str(cache)
    try:
        ds = load_dataset(cfg(name="mnist1d"))
    finally:
        os.environ.pop("REGLAB_CACHE") if old is None else os.environ.__setitem__("REGLAB_CACHE", old)
    return ds, cache


def test_mnist1d_checksum_and_shape(mnist1d_run):
    ds, cache = mnist1d_run
    assert ds.x.shape == (5000, 1, 40) and ds.x.dtype == np.float32
    assert ds.y.dtype == np.int64 and np.bincount(ds.y).tolist() == [500] * 10
    digest = hashlib.sha256(ds.x.tobytes() + ds.y.tobytes()).hexdigest()
    assert digest == MNIST1D_SHA256
    assert ds.extra["official_test_index"].tolist() == list(range(4000, 5000))
    assert len(list(cache.glob("mnist1d-*.npz"))) == 1


def test_mnist1d_leaves_global_rng_alone():
    # mnist1d reseeds NumPy's and Python's global RNGs; the loader restores both
    np.random.seed(123)
    expected = np.random.RandomState(123).rand()
    builtin.generate_mnist1d({**builtin.mnist1d_args(), "num_samples": 20})
    assert np.random.rand() == expected


def test_mnist1d_cache_is_used_and_reverified(mnist1d_run, monkeypatch):
    ds, cache = mnist1d_run
    monkeypatch.setenv("REGLAB_CACHE", str(cache))
    calls = []
    real = builtin.generate_mnist1d
    monkeypatch.setattr(builtin, "generate_mnist1d", lambda args: calls.append(1) or real(args))
    again = load_dataset(cfg(name="mnist1d"))
    assert calls == [] and np.array_equal(again.x, ds.x)
    # a tampered cache file fails its checksum and is regenerated
    path = next(cache.glob("mnist1d-*.npz"))
    with np.load(path) as f:
        saved = dict(f)
    saved["x"] = saved["x"] + 1
    np.savez(path, **saved)
    fixed = load_dataset(cfg(name="mnist1d"))
    assert calls == [1] and np.array_equal(fixed.x, ds.x)


def test_mnist1d_n_samples():
    ds = load_dataset(cfg(name="mnist1d", n_samples=50))
    assert np.bincount(ds.y).tolist() == [5] * 10
    assert ds.extra["args"]["seed"] == 42 and ds.extra["args"]["num_samples"] == 50
    assert ds.x.shape == (50, 1, 40) and ds.extra["official_test_index"].tolist() == list(range(40, 50))
    assert "multiple of 10" in error(load_dataset, cfg(name="mnist1d", n_samples=55))


# ------------------------------------------------------------------ registry


def test_unknown_name_suggests_closest():
    assert "did you mean 'mnist1d'" in error(load_dataset, cfg(name="mnist-1d"))
    assert "did you mean 'synthetic-linear'" in error(load_dataset, cfg(name="synthetic-linaer"))
    assert "data.name=csv data.path=my.csv" in error(load_dataset, cfg(name="my.csv"))
    assert load_dataset(cfg(name="MNIST_5K")).name == "mnist-5k"


def test_options_and_kind_are_checked():
    message = error(load_dataset, cfg(name="digits", noise=0.1))
    assert "data.noise does not apply to dataset 'digits'" in message
    assert "data.path does not apply" in error(load_dataset, cfg(name="synthetic-linear", path="x"))
    assert "is classification" in error(load_dataset, cfg(name="digits", kind="regression"))


def test_list_datasets_is_static_and_complete(monkeypatch):
    monkeypatch.setattr(builtin, "generate_mnist1d", lambda args: pytest.fail("info loaded data"))
    names = {i.name: i for i in list_datasets()}
    expected = {"synthetic-linear", "synthetic-sparse", "mnist1d", "digits", "mnist-5k", "mnist",
                "fashion-mnist", "csv", "npz"}  # fmt: skip
    assert expected <= set(names)
    assert names["mnist"].offline is False and names["mnist1d"].offline is True
    assert names["mnist1d"].n_examples == 5000 and names["mnist1d"].shape == (1, 40)
    assert all(i.description and i.source for i in names.values())


def test_every_builtin_dataset_is_declared_in_the_catalog(monkeypatch):
    """The loader modules register nothing when imported; reglab.data.catalog declares them all."""
    import importlib

    builtin_names = [info.name for info in list_datasets()]
    monkeypatch.setattr(registry, "_REGISTRY", {})
    for module in ("builtin", "mnist", "files", "gan2d"):
        importlib.reload(importlib.import_module(f"reglab.data.{module}"))
    assert registry._REGISTRY == {}
    importlib.reload(importlib.import_module("reglab.data.catalog"))
    assert [info.name for info in list_datasets()] == builtin_names


def test_dataset_info_fields_are_named():
    with pytest.raises(TypeError):
        DatasetInfo("ring", "regression", 1, (2,), "", True, "")  # which flag is True? said by name only
    info = DatasetInfo(name="ring", kind="regression", n_examples=1, shape=(2,), source="", offline=True,
                       description="")
    assert info.offline is True and info.options == ()


def test_register_dataset(monkeypatch):
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))

    def ring(c: DataConfig) -> Dataset:
        n = c.n_samples or 64
        angle = np.linspace(0, 2 * np.pi, n, endpoint=False)
        x = np.stack([np.cos(angle), np.sin(angle)], 1).astype(np.float32)
        return Dataset("ring", x, x.copy(), "regression", source="test ring", extra={"centers": x[:8]})

    info = {"kind": "regression", "n_examples": 64, "shape": (2,), "source": "test",
            "offline": True, "description": "points on a circle", "options": None}  # fmt: skip
    register_dataset("ring", ring, info)
    ds = load_dataset(cfg(name="ring", n_samples=32, noise=0.1))
    assert ds.x.shape == (32, 2) and "centers" in ds.extra
    splits = make_splits(ds, cfg(name="ring"))
    assert splits.n_outputs == 2 and splits.input_shape == (2,)
    assert "ring" in [i.name for i in list_datasets()]
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("ring", ring, DatasetInfo(name="ring", kind="regression", n_examples=1, shape=(2,), source="",
                                                 offline=True, description=""))
    register_dataset("bad", lambda c: Dataset("bad", np.zeros((3, 2)), np.zeros(3), "regression"),
                     DatasetInfo(name="bad", kind="regression", n_examples=3, shape=(2,), source="",
                                 offline=True, description=""))
    with pytest.raises(ValueError, match="float32"):  # loaders that break the contract are bugs
        load_dataset(cfg(name="bad"))


# ------------------------------------------------------------------ splits


def _proportions(y, n_classes=10):
    return np.bincount(y, minlength=n_classes) / len(y)


def test_split_sizes_partition_and_stratification():
    ds = load_dataset(cfg(name="digits"))
    s = make_splits(ds, cfg(name="digits", val_fraction=0.2, test_fraction=0.1, split_seed=3))
    assert isinstance(s, Splits) and s.kind == "classification" and s.n_outputs == 10
    assert s.input_shape == (1, 8, 8)
    # val_fraction is a fraction of the training part: round(0.2 × (1797 − 180)) = 323
    assert len(s.test) == 180 and len(s.val) == 323 and len(s.train) == 1797 - 180 - 323
    everything = np.concatenate([s.train.index, s.val.index, s.test.index])
    assert sorted(everything.tolist()) == list(range(1797))  # disjoint and complete
    x, y = s.train  # unpacks as a pair
    assert np.array_equal(x, ds.x[s.train.index]) and np.array_equal(y, ds.y[s.train.index])
    overall = _proportions(ds.y)
    for part in (s.train, s.val, s.test):
        assert np.abs(_proportions(part.y) - overall).max() < 0.01


def test_splits_deterministic_per_seed():
    ds = load_dataset(cfg(name="digits"))
    a = make_splits(ds, cfg(name="digits", split_seed=5))
    b = make_splits(ds, cfg(name="digits", split_seed=5))
    c = make_splits(ds, cfg(name="digits", split_seed=6))
    for part in ("train", "val", "test"):
        assert np.array_equal(getattr(a, part).index, getattr(b, part).index)
        assert not np.array_equal(getattr(a, part).index, getattr(c, part).index)


def test_kfold_partitions_non_test_data():
    ds = load_dataset(cfg(name="digits"))
    plain = make_splits(ds, cfg(name="digits", split_seed=1))
    folds = [make_splits(ds, cfg(name="digits", n_folds=4, fold=i, split_seed=1)) for i in range(4)]
    rest = set(range(1797)) - set(plain.test.index.tolist())
    vals = [set(f.val.index.tolist()) for f in folds]
    assert set().union(*vals) == rest and sum(len(v) for v in vals) == len(rest)  # a partition
    overall = _proportions(ds.y)
    for f, v in zip(folds, vals):
        assert np.array_equal(f.test.index, plain.test.index)  # same held-out test everywhere
        assert set(f.train.index.tolist()) == rest - v
        assert np.abs(_proportions(f.val.y) - overall).max() < 0.02  # stratified folds
        assert f.n_folds == 4
    assert make_splits(ds, cfg(name="digits", n_folds=4, split_seed=1)).fold == 0


def test_kfold_regression():
    ds = load_dataset(cfg(name="synthetic-sparse"))
    folds = [make_splits(ds, cfg(name="synthetic-sparse", n_folds=3, fold=i)) for i in range(3)]
    vals = np.concatenate([f.val.index for f in folds])
    assert len(vals) == len(set(vals.tolist())) == 200 - len(folds[0].test)
    assert folds[0].n_outputs == 1 and folds[0].n_classes is None


def test_n_train_is_a_nested_stratified_subsample():
    ds = load_dataset(cfg(name="digits"))
    full = make_splits(ds, cfg(name="digits"))
    small = make_splits(ds, cfg(name="digits", n_train=100))
    tiny = make_splits(ds, cfg(name="digits", n_train=30))
    assert len(small.train) == 100 and len(tiny.train) == 30
    members = [set(s.train.index.tolist()) for s in (tiny, small, full)]
    assert members[0] <= members[1] <= members[2]  # nested
    assert np.array_equal(small.val.index, full.val.index)
    assert np.array_equal(small.test.index, full.test.index)
    for seed in range(5):  # every class in proportion, within one example (5 per class here)
        split = make_splits(ds, cfg(name="digits", n_train=50, split_seed=seed))
        counts = np.bincount(split.train.y, minlength=10)
        assert counts.min() >= 4 and counts.max() <= 6, counts
    again = make_splits(ds, cfg(name="digits", n_train=30))
    assert np.array_equal(again.train.index, tiny.train.index)
    assert "more than the" in error(make_splits, ds, cfg(name="digits", n_train=5000))


def test_standardized_uses_training_statistics_only():
    ds = load_dataset(cfg(name="synthetic-sparse"))
    s = make_splits(ds, cfg(name="synthetic-sparse")).standardized()
    np.testing.assert_allclose(s.train.x.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(s.train.x.std(0), 1, atol=1e-4)
    assert np.abs(s.test.x.mean(0)).max() > 1e-3  # test is not standardized on itself


def test_too_few_examples(tmp_path):
    path = tmp_path / "few.csv"
    path.write_text("a,label\n" + "".join(f"{i},{i % 3}\n" for i in range(5)))
    c = cfg(name="csv", path=str(path), target="label")
    ds = load_dataset(c)
    message = error(make_splits, ds, c)
    assert "too few examples" in message and "5 examples" in message and "change data.test_fraction" in message
    assert "test_size" not in message  # reglab's words, not scikit-learn's


# ------------------------------------------------------------------ user files


def write_csv(tmp_path, text, name="data.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_csv_classification_and_regression(tmp_path):
    rows = "".join(f"{i},{i * 0.5},{i % 2},{i * 1.5 + 0.25}\n" for i in range(40))
    path = write_csv(tmp_path, "a,b,label,price\n" + rows)
    ds = load_dataset(cfg(name="csv", path=path, target="label"))
    assert ds.kind == "classification" and ds.n_classes == 2 and ds.y.dtype == np.int64
    assert ds.x.shape == (40, 3) and ds.x.dtype == np.float32
    assert ds.extra["columns"] == ["a", "b", "price"]
    reg = load_dataset(cfg(name="csv", path=path, target="price"))
    assert reg.kind == "regression" and reg.y.dtype == np.float32 and reg.n_classes is None
    np.testing.assert_allclose(reg.y, np.arange(40) * 1.5 + 0.25)
    forced = load_dataset(cfg(name="csv", path=path, target="label", kind="regression"))
    assert forced.kind == "regression"
    s = make_splits(ds, cfg(name="csv", split_seed=0))
    assert s.sizes() == {"train": 29, "val": 5, "test": 6}  # val: round(0.15 × 34)


def test_csv_class_names_in_target(tmp_path):
    path = write_csv(tmp_path, "w,species\n1,setosa\n2,virginica\n3,setosa\n")
    ds = load_dataset(cfg(name="csv", path=path, target="species"))
    assert ds.extra["classes"] == ["setosa", "virginica"] and ds.y.tolist() == [0, 1, 0]


def test_auto_kind_many_integer_values_is_regression(tmp_path):
    path = write_csv(tmp_path, "a,count\n" + "".join(f"{i},{i * 7}\n" for i in range(60)))
    assert load_dataset(cfg(name="csv", path=path, target="count")).kind == "regression"


@pytest.mark.parametrize(
    "text, target, expected",
    [
        ("a,b,y\n1,2,0\n3,,1\n", "y", ["missing value", "column 'b'", "line 3"]),
        ("a,b,y\n1,2,0\n3,4,1\nnan,4,1\n", "y", ["missing value", "column 'a'", "line 4"]),
        ("a,color,y\n1,red,0\n2,blue,1\n", "y", ["non-numeric", "'color'", "'red'", "line 2"]),
        ("a,b,y\n1,2,0\n", "z", ["no column 'z'", "available columns: a, b, y"]),
        ("a,b,y\n1,2,0\n3,4,-1\n", "y", ["integers 0..k-1", "-1", "data.kind=regression"]),
        ("1,2,3\n4,5,6\n", "y", ["header"]),
        ("a,y\n1,0\n2,1,5\n", "y", ["line 3 has 3 fields"]),
        ("a,b,y\n1,2,0\n", None, ["data.target=COLUMN", "a, b, y"]),
        ("a,b,y\n", "y", ["no data rows"]),
    ],
)
def test_csv_errors(tmp_path, text, target, expected):
    path = write_csv(tmp_path, text)
    message = error(load_dataset, cfg(name="csv", path=path, target=target))
    assert "data.csv" in message
    for part in expected:
        assert part in message


def test_csv_non_integer_labels_for_classification(tmp_path):
    path = write_csv(tmp_path, "a,y\n1,0.5\n2,1\n3,2.5\n")
    message = error(load_dataset, cfg(name="csv", path=path, target="y", kind="classification"))
    assert "0.5, 2.5" in message


def test_missing_file(tmp_path):
    message = error(load_dataset, cfg(name="csv", path=str(tmp_path / "nope.csv"), target="y"))
    assert "nope.csv" in message and "not found" in message
    assert "needs data.path" in error(load_dataset, cfg(name="npz"))


def test_npz_happy_paths(tmp_path):
    path = tmp_path / "d.npz"
    x = np.random.default_rng(0).random((30, 2, 3))
    np.savez(path, x=x, y=np.arange(30) % 3, t=np.linspace(0, 1, 30))
    ds = load_dataset(cfg(name="npz", path=str(path)))
    assert ds.x.shape == (30, 2, 3) and ds.x.dtype == np.float32 and ds.kind == "classification"
    assert ds.n_classes == 3
    reg = load_dataset(cfg(name="npz", path=str(path), target="t"))
    assert reg.kind == "regression" and reg.y.dtype == np.float32 and reg.y.shape == (30,)


def test_npz_errors(tmp_path):
    path = tmp_path / "d.npz"
    np.savez(path, features=np.zeros((4, 2)), y=np.zeros(4))
    message = error(load_dataset, cfg(name="npz", path=str(path)))
    assert "no array named 'x'" in message and "features, y" in message
    np.savez(path, x=np.zeros((4, 2)), y=np.array([0, 1, np.nan, 1]))
    assert "NaN" in error(load_dataset, cfg(name="npz", path=str(path)))
    np.savez(path, x=np.zeros((4, 2)), y=np.zeros(5))
    assert "4 examples" in error(load_dataset, cfg(name="npz", path=str(path)))
    np.savez(path, x=np.array([["a", "b"]] * 4), y=np.zeros(4))
    assert "not numeric" in error(load_dataset, cfg(name="npz", path=str(path)))
    np.savez(path, x=np.array([{}, {}], dtype=object), y=np.zeros(2))
    assert "pickle" in error(load_dataset, cfg(name="npz", path=str(path)))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert "junk.npz" in error(load_dataset, cfg(name="npz", path=str(tmp_path / "junk.npz")))


# ------------------------------------------------------------------ IDX


def test_idx_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    for dtype in (np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64):
        array = (rng.random((3, 4, 5)) * 100).astype(dtype)
        for name in ("a.idx", "a.idx.gz"):
            back = read_idx(write_idx(tmp_path / name, array))
            assert back.dtype == array.dtype and np.array_equal(back, array)


def test_idx_known_bytes(tmp_path):
    path = tmp_path / "labels"
    path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 2, 1]))  # the MNIST label layout
    assert read_idx(path).tolist() == [7, 2, 1]


def make_idx_folder(folder, n_train=12, n_test=6, gz=True):
    """A tiny MNIST-like folder: train files gzip-compressed (when gz), test files plain."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    data = {}
    for role, n, suffix in (("train", n_train, ".gz" if gz else ""), ("t10k", n_test, "")):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx(folder / f"{role}-images-idx3-ubyte{suffix}", images)
        write_idx(folder / f"{role}-labels-idx1-ubyte{suffix}", labels)
        data[role] = (images, labels)
    return data


def test_mnist_from_folder(tmp_path):
    data = make_idx_folder(tmp_path / "mnist")
    ds = load_dataset(cfg(name="mnist", path=str(tmp_path / "mnist")))
    assert ds.x.shape == (18, 1, 28, 28) and ds.x.dtype == np.float32 and ds.y.dtype == np.int64
    np.testing.assert_allclose(ds.x[:12, 0] * 255, data["train"][0], atol=1e-4)
    assert ds.y[12:].tolist() == data["t10k"][1].tolist()
    assert ds.extra["official_test_index"].tolist() == list(range(12, 18))
    fashion = load_dataset(cfg(name="fashion-mnist", path=str(tmp_path / "mnist")))
    assert fashion.extra["classes"][9] == "Ankle boot"


def test_official_test_split_is_the_test_set(tmp_path):
    make_idx_folder(tmp_path / "mnist", n_train=40, n_test=10)
    c = cfg(name="mnist", path=str(tmp_path / "mnist"), val_fraction=0.25)
    ds = load_dataset(c)
    s = make_splits(ds, c)
    assert s.test.index.tolist() == list(range(40, 50))  # exactly the t10k file, in order
    assert set(s.train.index) | set(s.val.index) == set(range(40)) and len(s.val) == 10  # 0.25 of the 40 training
    assert s.metadata() == {"n_train": 30, "n_val": 10, "n_test": 10, "test_split": "official"}
    folds = make_splits(ds, cfg(name="mnist", path=str(tmp_path / "mnist"), n_folds=4, fold=1))
    assert folds.test.index.tolist() == list(range(40, 50)) and max(folds.val.index) < 40
    shuffled = make_splits(ds, cfg(name="mnist", path=str(tmp_path / "mnist"), test_split="random",
                                   test_fraction=0.3, val_fraction=0.3))
    assert shuffled.metadata()["test_split"] == "random" and shuffled.test.index.tolist() != list(range(40, 50))


def test_test_fraction_beside_the_official_split_is_refused(tmp_path):
    make_idx_folder(tmp_path / "mnist", n_train=40, n_test=10)
    c = cfg(name="mnist", path=str(tmp_path / "mnist"), test_fraction=0.3)
    with pytest.raises(UserError, match=r"data.test_fraction=0.3 has no effect: dataset 'mnist' has an official "
                                        r"test split.*set data.test_split=random"):
        make_splits(load_dataset(c), c)


def test_datasets_without_an_official_split_cut_a_random_test_set():
    ds = load_dataset(cfg(name="digits"))
    assert make_splits(ds, cfg(name="digits")).metadata()["test_split"] == "random"


def test_idx_corrupt_files(tmp_path):
    folder = tmp_path / "m"
    make_idx_folder(folder, gz=False)
    c = cfg(name="mnist", path=str(folder))
    images = folder / "t10k-images-idx3-ubyte"
    good = images.read_bytes()
    images.write_bytes(good[:-10])  # truncated
    assert "corrupt IDX file" in error(load_dataset, c) and "t10k-images" in error(load_dataset, c)
    images.write_bytes(good + b"\x00")  # trailing bytes
    assert "corrupt IDX file" in error(load_dataset, c)
    images.write_bytes(b"\x01\x02" + good[2:])
    assert "bad magic number" in error(load_dataset, c)
    images.write_bytes(good)
    write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(5, dtype=np.uint8))
    assert "expected 6 labels" in error(load_dataset, c)
    (folder / "t10k-labels-idx1-ubyte").unlink()
    assert "missing t10k-labels-idx1-ubyte" in error(load_dataset, c)
    (folder / "train-images-idx3-ubyte").unlink()
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    write_idx(folder / "t10k-labels-idx1-ubyte", np.zeros(6, dtype=np.uint8))
    assert "corrupt file" in error(load_dataset, c)
    assert "not a folder" in error(load_dataset, cfg(name="mnist", path=str(tmp_path / "none")))


# ------------------------------------------------------------------ verified download


def md5(path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local file:// mirror of tiny gzip IDX files, with their true MD5s in the URL table."""
    folder = tmp_path / "mirror"
    make_idx_folder(folder, n_train=10, n_test=10, gz=False)
    md5s = {}
    for role, stem in mnist_mod.PARTS.items():
        raw = folder / stem
        (folder / f"{stem}.gz").write_bytes(gzip.compress(raw.read_bytes()))
        md5s[role] = md5(folder / f"{stem}.gz")
    source = {"folder": "MNIST", "mirrors": [folder.as_uri() + "/"], "md5": md5s}
    monkeypatch.setitem(mnist_mod.SOURCES, "mnist", source)
    monkeypatch.delenv("REGLAB_OFFLINE")
    return source


def test_download_verifies_and_caches(mirror, tmp_path, monkeypatch):
    ds = load_dataset(cfg(name="mnist"))
    assert ds.x.shape == (20, 1, 28, 28)
    cached = tmp_path / "cache" / "mnist"
    expected = sorted(f"{stem}.gz" for stem in mnist_mod.PARTS.values())
    assert sorted(p.name for p in cached.iterdir()) == expected
    # once cached, no network is needed
    monkeypatch.setenv("REGLAB_OFFLINE", "1")
    assert np.array_equal(load_dataset(cfg(name="mnist")).x, ds.x)


def test_download_rejects_bad_checksum(mirror, tmp_path):
    mirror["md5"]["train_images"] = "0" * 32
    message = error(load_dataset, cfg(name="mnist"))
    assert "checksum mismatch" in message and "train-images-idx3-ubyte.gz" in message
    cached = tmp_path / "cache" / "mnist"
    assert not (cached / "train-images-idx3-ubyte.gz").exists()
    assert not list(cached.glob("*.part"))


def test_download_offline_points_to_data_path(mirror, tmp_path, monkeypatch):
    mirror["mirrors"] = [(tmp_path / "unreachable").as_uri() + "/"]
    message = error(load_dataset, cfg(name="mnist"))
    assert "could not download" in message and "data.path=DIR" in message
    monkeypatch.setenv("REGLAB_OFFLINE", "1")
    assert "REGLAB_OFFLINE" in error(load_dataset, cfg(name="mnist"))


def test_fetch_falls_back_and_replaces_corrupt_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("REGLAB_OFFLINE")
    good = tmp_path / "good" / "f.bin"
    good.parent.mkdir()
    good.write_bytes(b"payload")
    bad = tmp_path / "bad" / "f.bin"
    bad.parent.mkdir()
    bad.write_bytes(b"tampered")
    dest = tmp_path / "cache" / "f.bin"
    out = fetch([(tmp_path / "missing.bin").as_uri(), bad.as_uri(), good.as_uri()], dest, md5(good))
    assert out == dest and dest.read_bytes() == b"payload"
    dest.write_bytes(b"rotted")  # a cached file that no longer matches is fetched again
    fetch([good.as_uri()], dest, md5(good))
    assert dest.read_bytes() == b"payload"
    dest.write_bytes(b"rotted")
    with pytest.raises(DownloadError, match="checksum mismatch"):
        fetch([bad.as_uri()], dest, md5(good))
    assert not dest.exists() and not list(dest.parent.glob("*.part"))
