"""The run folder: ``runs/<recipe>/<label>_s<seed>/``, e.g. ``runs/mlp-l2/l2_lam=1e-3_s2/``.

Its name says what sets the run apart (:class:`RunLabel`): in a study, its point's label
(``reglab.study.points``) and seed (and ``_f<fold>`` under cross-validation); a single run is named by
its recipe, its penalty and λ if it has one, and its seed (``mlp-l2_l2_lam=1e-3_s3``). λ is written
by the one formatter of the report (``formatting.fmt_lam``). A name is made safe for any file system
(:func:`safe_name`) and unique (a suffix ``-2``, ``-3``, … on a collision, :func:`claim_folder`).

It holds ``config.yaml``, ``env.json``, ``metrics.jsonl`` (one JSON object per epoch),
``summary.json``, ``weights.pt`` and ``plots/``. A run is written under the name
``<name>.partial`` and renamed to its final name when it is finished (:func:`publish`, an atomic
rename), so a killed writer leaves only a ``.partial`` folder, which nothing reads as a result
(:func:`is_run_folder`). A study's worker renames its runs' folders only once their outcomes are
stored, so that every finished folder of a study is one its storage points to. ``summary.json``
also says ``"status": "running"`` until the end; a finished run says ``"ok"``, a failed one
``"failed"`` with the reason and the step.

With ``train.tensorboard=true`` the folder also holds TensorBoard event files: every number of an
epoch's record as a scalar at that epoch, a split's metric grouped by the metric (``loss/train``,
``loss/val``, ``acc/train``, ``acc/val``, ``loss/batch``, ``gap/loss``; ``penalty/*``, ``lr``, weight norms, zeros,
robust accuracy as they are; the step count is not a scalar), the summary's numbers at the end
(``final/*``), and as hparams the keys that set the run apart (:class:`RunLabel`, those without a
value left out) with the metric it is judged by. ``tensorboard --logdir runs/`` then shows each run
folder as one run, named by its label.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
import os
import platform
import re
import shutil
import sys
import subprocess
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any, Iterable

import torch
import yaml

from reglab.bounded import MAX_JSON_BYTES, MAX_YAML_BYTES, check_json_depth, load_json, load_yaml, read_bounded
from reglab.config import Config, flat_keys, is_bookkeeping, load_config, save_config, validate
from reglab.errors import UserError
from reglab.formatting import fmt_lam
from reglab.redact import redact

MAX_NAME = 80  # characters of a run folder's label; a longer one is cut and given a short hash
SPLITS = ("train", "val", "test", "batch")  # a record's ``<split>_<metric>`` goes to the tag ``<metric>/<split>``


def safe_name(text: str) -> str:
    """``text`` as a file name on any system: each run of characters other than letters, digits and
    ``.=+,-`` becomes ``_``; a name longer than ``MAX_NAME`` is cut and ends in ``~`` and the first 8
    hex digits of the SHA-256 of the whole, so that two long names cut alike stay apart."""
    name = re.sub(r"[^A-Za-z0-9.=+,-]+", "_", text).strip("._-") or "run"
    if len(name) > MAX_NAME:
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = f"{name[:MAX_NAME - 9].rstrip('._-')}~{digest}"
    return name


@dataclass(frozen=True)
class RunLabel:
    """What sets a run apart from its neighbours: ``text`` names its folder (with its seed, and fold),
    ``keys`` (dotted config keys) are its TensorBoard hparams and ``metric`` the number they are
    judged by. A study gives its point's label, its grid's keys and its objective; a single run's is
    :meth:`of`."""

    text: str
    keys: tuple[str, ...]
    metric: str

    @classmethod
    def of(cls, config: Config) -> RunLabel:
        """A single run's: its recipe, its penalty and λ when it has one (``mlp-l2_l2_lam=1e-3``); the
        keys that differ from its recipe (from the defaults when the recipe cannot be read), outputs
        left out; the metric that early stopping watches (``train.monitor``)."""
        reg = config.reg
        text = config.name + (f"_{reg.penalty}_lam={fmt_lam(reg.lam)}" if reg.penalty != "none" and reg.lam else "")
        return cls(text, changed_keys(config), config.train.monitor)


def changed_keys(config: Config) -> tuple[str, ...]:
    """The dotted keys in which ``config`` differs from its recipe's file, bookkeeping left out."""
    try:
        reference = load_config(config.name)
    except UserError:
        reference = validate({})
    base = flat_keys(reference.to_dict())
    return tuple(k for k, v in flat_keys(config.to_dict()).items()
                 if not is_bookkeeping(k) and (k not in base or base[k] != v))


def folder_name(label: RunLabel, config: Config) -> str:
    """``<safe label>_s<seed>``, with ``_f<fold>`` when the run is one fold of a cross-validation."""
    fold = config.data.fold
    return f"{safe_name(label.text)}_s{config.seed}" + (f"_f{fold}" if fold is not None else "")


def write_json(path: Path, data: Any) -> None:
    """Write atomically: a reader sees the old file or the new one, never half of one."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float))
    os.replace(tmp, path)


@functools.cache
def process_environment() -> dict[str, Any]:
    """What stays the same for every run of this process: versions, platform and the code's git
    commit, looked up once (three git commands and a package lookup are worth caching in a sweep
    that writes hundreds of run folders)."""
    import numpy

    return {
        "reglab": version("reglab"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "git_commit": git_commit(),
    }


def environment(config: Config, device: torch.device) -> dict[str, Any]:
    return {
        **process_environment(),
        "device": str(device),
        "cuda": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(),
        "seed": config.seed,
        "command": [redact(arg) for arg in sys.argv],
    }


def git_commit() -> str | None:
    """The commit of the reglab code being run, when it runs from a git checkout of reglab (else
    None: an installed copy inside some other repository is not tracked by it); ``-dirty`` is
    appended when the checkout has uncommitted changes."""
    source = Path(__file__).parent
    try:
        tracked = subprocess.run(["git", "ls-files", "--error-unmatch", Path(__file__).name], cwd=source,
                                 capture_output=True, text=True, timeout=10)
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True,
                                timeout=10)
        if tracked.returncode != 0 or commit.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "."], cwd=source,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return commit.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def scalar_tag(key: str) -> str:
    """A record's key as a TensorBoard tag grouped by metric: ``val_loss`` → ``loss/val``,
    ``train_acc`` → ``acc/train``, ``batch_loss`` → ``loss/batch``; a gap by itself: ``gap_loss`` →
    ``gap/loss``; other keys as they are."""
    split, _, metric = key.partition("_")
    if split in SPLITS and metric:
        return f"{metric}/{split}"
    return f"gap/{metric}" if split == "gap" and metric else key


def hparam_values(config: Config, keys: tuple[str, ...]) -> dict[str, bool | int | float | str]:
    """The values of ``keys`` in ``config`` as TensorBoard takes them (a list or mapping as JSON
    text); a key without a value (None) is left out."""
    flat = flat_keys(config.to_dict())
    values = {k: flat[k] for k in keys if flat.get(k) is not None}
    return {k: v if isinstance(v, (bool, int, float, str)) else json.dumps(v) for k, v in values.items()}


class TensorBoardLog:
    """TensorBoard event files in the run folder: per-epoch scalars, then the label's keys as hparams."""

    def __init__(self, path: Path, config: Config, label: RunLabel):
        from torch.utils.tensorboard import SummaryWriter

        self.config, self.label = config, label
        self.writer = SummaryWriter(log_dir=str(path))

    @staticmethod
    def check_installed() -> None:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise UserError("train.tensorboard=true needs TensorBoard: pip install 'reglab[tensorboard]'") from None

    def epoch(self, record: dict[str, Any]) -> None:
        epoch = record.get("epoch")
        for key, value in record.items():
            if key not in ("epoch", "step") and is_number(value):
                self.writer.add_scalar(scalar_tag(key), value, epoch)
        self.writer.flush()

    def close(self, summary: dict[str, Any]) -> None:
        """Write the summary's numbers (``final/*``) and the label's keys as hparams, judged by
        ``final/<metric>`` (none when the run did not reach it)."""
        from torch.utils.tensorboard.summary import hparams

        metrics = {f"final/{k}": v for k, v in summary.items() if is_number(v)}
        judged = {k: v for k, v in metrics.items() if k == f"final/{self.label.metric}"}
        for part in hparams(hparam_values(self.config, self.label.keys), judged):
            self.writer.file_writer.add_summary(part)
        for key, value in metrics.items():
            self.writer.add_scalar(key, value)
        self.writer.close()


PARTIAL = ".partial"


def partial(path: Path) -> Path:
    """The name a run folder has while it is written."""
    return path.with_name(path.name + PARTIAL)


def publish(path: Path) -> None:
    """Give a finished run folder its final name ``path`` (atomically); nothing when it has it already."""
    try:
        os.rename(partial(path), path)
    except FileNotFoundError:
        pass


def written(path: Path) -> Path:
    """Where a run folder's files are: ``path`` once published, else its ``.partial`` name."""
    return path if path.is_dir() else partial(path)


@dataclass
class RunFolder:
    """A run folder being written: its final name ``path``, its files under ``partial(path)``
    until :meth:`finish` publishes it (unless ``publish`` is False: its caller then does)."""

    path: Path
    tensorboard: TensorBoardLog | None = None
    publish: bool = True

    @property
    def where(self) -> Path:
        return written(self.path)

    @classmethod
    def create(cls, config: Config, device: torch.device, root: str | Path | None = None,
               publish: bool = True, label: RunLabel | None = None) -> "RunFolder":
        """A new folder ``<root>/<config.name>/<label>_s<seed>`` (:func:`folder_name`; the label
        :meth:`RunLabel.of` unless given), written as ``….partial``, checked to lie inside ``root``."""
        if config.train.tensorboard:
            TensorBoardLog.check_installed()
        label = label or RunLabel.of(config)
        root = Path(root if root is not None else config.out)
        base = inside(root, config.name)
        path = claim_folder(base, folder_name(label, config), root)
        try:
            tensorboard = TensorBoardLog(partial(path), config, label) if config.train.tensorboard else None
            folder = cls(path, tensorboard, publish)
            save_config(config, partial(path) / "config.yaml")
            write_json(partial(path) / "env.json", environment(config, device))
            write_json(partial(path) / "summary.json", {"status": "running"})
        except BaseException:  # a full disk: no half-made folder is left
            shutil.rmtree(partial(path), ignore_errors=True)
            raise
        return folder

    def log(self, record: dict[str, Any]) -> None:
        with open(self.where / "metrics.jsonl", "a") as fh:
            fh.write(json.dumps(record, default=float) + "\n")
        if self.tensorboard is not None:
            self.tensorboard.epoch(record)

    def save_weights(self, model: torch.nn.Module) -> None:
        torch.save(model.state_dict(), self.where / "weights.pt")

    def finish(self, summary: dict[str, Any]) -> None:
        """Write the summary and, unless told not to, publish the folder."""
        if self.tensorboard is not None:
            self.tensorboard.close(summary)
            self.tensorboard = None
        write_json(self.where / "summary.json", summary)
        if self.publish:
            publish(self.path)


@dataclass
class Run:
    """A run's result: its folder (None when it failed before one was created, or trained without
    one) and its summary (``summary.json``). What ``reglab.run`` returns and the engine gives."""

    path: Path | None
    summary: dict[str, Any]

    @property
    def ok(self) -> bool:
        return self.summary.get("status") == "ok"

    @classmethod
    def failed(cls, exc: Exception) -> "Run":
        """The result of a run that raised before training (no folder)."""
        reason = str(exc) if isinstance(exc, UserError) else f"{type(exc).__name__}: {exc}"
        return cls(None, {"status": "failed", "reason": reason})

    def metrics(self):
        """``metrics.jsonl`` as a pandas table: one row per epoch."""
        import pandas as pd

        if self.path is None:
            raise UserError("this run has no run folder, so no metrics.jsonl")
        return pd.DataFrame(read_run(self.path)["metrics"])


def claim_folder(base: Path, name: str, root: Path) -> Path:
    """A new run folder's final name ``base/name`` (or ``name-2``, ``name-3``, …), with its
    ``.partial`` folder and ``plots/`` made: the first name whose ``.partial`` folder this process
    creates itself and that no finished folder holds, so identical runs started at the same moment
    each get their own. Creating is the claim (two processes cannot both create a folder); a
    finished folder of that name can only have been published before the creation, so looking
    after it is enough."""
    try:
        base.mkdir(parents=True, exist_ok=True)
        for suffix in itertools.count(1):
            path = base / (name if suffix == 1 else f"{name}-{suffix}")
            try:
                partial(path).mkdir()
            except FileExistsError:
                continue
            if path.exists():
                partial(path).rmdir()
                continue
            (partial(path) / "plots").mkdir()
            return path
    except OSError as exc:
        raise UserError(f"cannot create a run folder in '{root}': {exc.strerror}") from None


def inside(root: Path, name: str) -> Path:
    """``root/name``, refused unless it resolves to a folder inside ``root`` (no ``..``, no
    absolute path, no link out of it)."""
    root = Path(root)
    if root.exists() and not root.is_dir():
        raise UserError(f"'{root}' is a file, not a folder")
    path = root / name
    if not path.resolve().is_relative_to(root.resolve()) or path.resolve() == root.resolve():
        raise UserError(f"'{name}' would put a folder outside '{root}'")
    return path


def read_run(path: str | Path) -> dict[str, Any]:
    """A run folder's config, summary and per-epoch metrics; a missing or damaged file is a
    :class:`UserError` that names it (and the line, for ``metrics.jsonl``)."""
    path = Path(path)
    if not (path / "summary.json").is_file():
        raise UserError(f"'{path}' is not a run folder (no summary.json)")
    summary = read_json_object(path / "summary.json")
    if not (path / "config.yaml").is_file():
        raise UserError(f"run folder '{path}' has no config.yaml")
    config_file = path / "config.yaml"
    try:
        config = load_yaml(read_bounded(config_file, MAX_YAML_BYTES, "damaged"), str(config_file))
    except yaml.YAMLError:
        raise UserError(f"{config_file} is damaged (not valid YAML)") from None
    if not isinstance(config, dict):
        raise UserError(f"{path / 'config.yaml'} is damaged (it holds no config mapping)")
    return {"path": path, "config": config, "summary": summary, "metrics": read_metrics(path / "metrics.jsonl")}


def read_json_object(path: Path) -> dict[str, Any]:
    """A JSON file that must hold one object."""
    try:
        data = load_json(read_bounded(path, MAX_JSON_BYTES, "damaged"), str(path))
    except json.JSONDecodeError as exc:
        raise UserError(f"{path} is damaged (not valid JSON: {exc})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path} is damaged (it holds a {type(data).__name__}, not an object)")
    return data


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """``metrics.jsonl``: one JSON object per line (blank lines skipped); none if the file is absent."""
    if not path.is_file():
        return []
    metrics = []
    text = read_bounded(path, MAX_JSON_BYTES, "damaged")
    check_json_depth(text, str(path))
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} line {number} is damaged (not valid JSON: {exc})") from None
        if not isinstance(record, dict):
            raise UserError(f"{path} line {number} is damaged (not a JSON object)")
        metrics.append(record)
    return metrics


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The saved state dict, read back with ``weights_only=True``."""
    return torch.load(Path(path) / "weights.pt", weights_only=True, map_location="cpu")


def is_run_folder(path: Path) -> bool:
    """A finished run's folder (one still being written, or left by a killed writer, is not)."""
    return not path.name.endswith(PARTIAL) and (path / "summary.json").is_file() and (path / "config.yaml").is_file()


def run_folders(targets: Iterable[str | Path]) -> list[Path]:
    """The run folders named, or found below the folders named, in order and without repeats."""
    found: dict[Path, None] = {}
    for target in targets:
        path = Path(target)
        if not path.exists():
            raise UserError(f"'{path}' does not exist")
        if is_run_folder(path):
            found[path] = None
            continue
        below = sorted(p.parent for p in path.glob("**/summary.json") if is_run_folder(p.parent))
        if not below and any(path.glob(f"**/*{PARTIAL}/summary.json")):
            raise UserError(f"'{path}' holds only unfinished run folders (named *{PARTIAL}: their writer was "
                            "killed, or is still at work)")
        if not below:
            raise UserError(f"'{path}' is neither a run folder nor a folder holding run folders")
        found.update(dict.fromkeys(below))
    return list(found)
