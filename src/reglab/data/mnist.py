"""MNIST and Fashion-MNIST from IDX files: a folder given by ``data.path``, or a one-time
checksum-verified download into the cache. The arrays hold train then test (70,000 examples);
``extra['official_test_index']`` marks the official 10,000-example test set, which the splits use
as the test split (``data.test_split=official``, the default; validation comes from the 60,000)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reglab.config import DataConfig
from reglab.data.dataset import Dataset
from reglab.data.download import cache_dir, require_download
from reglab.data.idx import read_idx
from reglab.errors import UserError

PARTS = {  # role → standard file name
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

# MD5 of the published .gz files (as listed in torchvision's dataset definitions).
SOURCES = {
    "mnist": {
        "folder": "MNIST",
        "mirrors": [
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ],
        "md5": {
            "train_images": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "train_labels": "d53e105ee54ea40749a09fcbcd1e9432",
            "test_images": "9fb629c4189551a2d022fa330f9573f3",
            "test_labels": "ec29112dd5afa0611ce80d1b7f02629c",
        },
    },
    "fashion-mnist": {
        "folder": "FashionMNIST",
        "mirrors": [
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        ],
        "md5": {
            "train_images": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "train_labels": "25c81989df183df01b3e8a0aad5dffbe",
            "test_images": "bef4ecab320f06d8554ea6380940ec79",
            "test_labels": "bb300cfdad3c16e7a12a480ee83cd310",
        },
    },
}
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]  # fmt: skip


def _find(folder: Path, stem: str, sub: str) -> Path | None:
    """``stem`` or ``stem.gz`` (also ``train-images.idx3-ubyte``), in the folder or its
    torchvision layout ``<Name>/raw``."""
    names = [stem, stem.replace("-idx", ".idx")]
    for base in (folder, folder / "raw", folder / sub / "raw"):
        for name in names:
            for candidate in (base / name, base / f"{name}.gz"):
                if candidate.is_file():
                    return candidate
    return None


def _local_files(name: str, path: str) -> dict[str, Path]:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise UserError(f"data.path={path}: not a folder (give the folder of the {name} IDX files)")
    files, missing = {}, []
    for role, stem in PARTS.items():
        found = _find(folder, stem, SOURCES[name]["folder"])
        if found is None:
            missing.append(stem + "[.gz]")
        files[role] = found
    if missing:
        raise UserError(f"data.path={path}: missing {', '.join(missing)}")
    return files


def _downloaded_files(name: str) -> dict[str, Path]:
    source = SOURCES[name]
    names = ", ".join(PARTS.values())
    hint = f"without network, pass data.path=DIR, a folder with {names} (.gz or plain)"
    files = {}
    for role, stem in PARTS.items():
        gz = f"{stem}.gz"
        dest = cache_dir() / name / gz
        urls = [mirror + gz for mirror in source["mirrors"]]
        files[role] = require_download(urls, dest, source["md5"][role], hint)
    return files


def _read_pair(images: Path, labels: Path) -> tuple[np.ndarray, np.ndarray]:
    x, y = read_idx(images), read_idx(labels)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise UserError(f"{images}: expected uint8 images (N, rows, cols), got {x.dtype} {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise UserError(f"{labels}: expected {len(x)} labels to match {images.name}, got {y.shape}")
    if len(y) and (y.min() < 0 or y.max() > 9):
        raise UserError(f"{labels}: labels must lie in 0..9, found {int(y.min())}..{int(y.max())}")
    return x, y


def load_idx_dataset(name: str, cfg: DataConfig) -> Dataset:
    files = _local_files(name, cfg.path) if cfg.path else _downloaded_files(name)
    x_train, y_train = _read_pair(files["train_images"], files["train_labels"])
    x_test, y_test = _read_pair(files["test_images"], files["test_labels"])
    if x_train.shape[1:] != x_test.shape[1:]:
        raise UserError(
            f"{name}: train images {x_train.shape[1:]} and test images {x_test.shape[1:]} differ"
        )
    x = np.concatenate([x_train, x_test])[:, None].astype(np.float32) / 255.0
    y = np.concatenate([y_train, y_test]).astype(np.int64)
    where = cfg.path or str(files["train_images"].parent)
    extra = {
        "official_test_index": np.arange(len(x_train), len(x)),
        "files": {role: str(file) for role, file in files.items()},
    }
    if name == "fashion-mnist":
        extra["classes"] = FASHION_CLASSES
    return Dataset(name, x, y, "classification", 10, f"IDX files in {where}", extra)


def idx_loader(name: str):
    return lambda cfg: load_idx_dataset(name, cfg)
