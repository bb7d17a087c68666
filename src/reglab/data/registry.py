"""The dataset registry: names → (loader, info). Other modules add datasets with
:func:`register_dataset`; :func:`load_dataset` is the one entry point for the trainer."""

from __future__ import annotations

import difflib
from dataclasses import replace as _replace
from typing import Any, Callable

from reglab.config import DataConfig
from reglab.data.dataset import Dataset, DatasetInfo, check_dataset
from reglab.errors import UserError
from reglab.memory import check_fits, dataset_bytes

Loader = Callable[[DataConfig], Dataset]
OPTIONS = ("path", "target", "n_samples", "noise")

_REGISTRY: dict[str, tuple[Loader, DatasetInfo]] = {}


def _key(name: str) -> str:
    return name.strip().lower().replace("_", "-")


def register_dataset(
    name: str, loader: Loader, info: DatasetInfo | dict[str, Any], *, replace: bool = False
) -> None:
    """Add a dataset. ``loader(cfg: DataConfig) -> Dataset``; ``info`` is a :class:`DatasetInfo`
    or a dict of its fields (``name`` may be left out). A name is registered once unless
    ``replace=True``."""
    key = _key(name)
    if key in _REGISTRY and not replace:
        raise ValueError(f"dataset '{key}' is already registered (pass replace=True)")
    if isinstance(info, dict):
        info = DatasetInfo(**{"name": key, **info})
    info = _replace(info, name=key)
    _REGISTRY[key] = (loader, info)


def list_datasets() -> list[DatasetInfo]:
    """Every registered dataset's static info, sorted by name; nothing is loaded."""
    return [info for _, (_, info) in sorted(_REGISTRY.items())]


def dataset_info(name: str) -> DatasetInfo:
    return _lookup(name)[1]


def _lookup(name: str) -> tuple[Loader, DatasetInfo]:
    key = _key(name)
    if key in _REGISTRY:
        return _REGISTRY[key]
    if key.endswith((".csv", ".npz")):
        kind = key.rsplit(".", 1)[1]
        raise UserError(
            f"unknown dataset '{name}'; for a file write data.name={kind} data.path={name}"
        )
    near = difflib.get_close_matches(key, list(_REGISTRY), n=1, cutoff=0.5)
    known = ", ".join(sorted(_REGISTRY))
    hint = f"; did you mean '{near[0]}'?" if near else f"; known datasets: {known}"
    raise UserError(f"unknown dataset '{name}'{hint}")


def load_dataset(cfg: DataConfig) -> Dataset:
    """Load ``cfg.name``. Offline unless the dataset itself downloads once on first use. A size
    asked for by ``data.n_samples`` is checked against the memory available first
    (:mod:`reglab.memory`)."""
    loader, info = _lookup(cfg.name)
    if info.options is not None:
        for option in OPTIONS:
            if getattr(cfg, option) is not None and option not in info.options:
                uses = ", ".join(f"data.{o}" for o in info.options)
                every = ", ".join(f"data.{o}" for o in OPTIONS)
                takes = f"it takes {uses}" if uses else f"it takes none of {every}"
                raise UserError(f"data.{option} does not apply to dataset '{info.name}' ({takes})")
    if cfg.n_samples is not None and info.shape is not None:
        check_fits(dataset_bytes(cfg.n_samples, info.shape), f"data.n_samples={cfg.n_samples} of '{info.name}'",
                   "ask for fewer examples")
    ds = check_dataset(loader(cfg))
    if cfg.kind != "auto" and cfg.kind != ds.kind:
        raise UserError(f"dataset '{info.name}' is {ds.kind}; data.kind={cfg.kind} does not apply")
    return ds
