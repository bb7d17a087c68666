"""One run's prepared experiment: its config, device, splits on the device and task; and the
numbers read off its model (split losses and the generalization gaps, weight statistics)."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from reglab.config import Config
from reglab.data import Splits, load_dataset, make_splits
from reglab.errors import UserError
from reglab.tasks.base import Task
from reglab.train.task_choice import make_task


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device={name} asked for, but CUDA is not available here; use device=auto or cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device '{name}'; use auto, cpu or cuda") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@dataclass
class Experiment:
    """Everything one run needs, built from its config."""

    config: Config
    device: torch.device
    splits: Splits
    task: Task
    tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    @property
    def model(self) -> nn.Module:
        return self.task.model

    @property
    def steps_per_epoch(self) -> int:
        n = len(self.tensors["train"][0])
        bs = self.config.train.batch_size or n
        return math.ceil(n / bs)


def prepare(config: Config) -> Experiment:
    """Load data, build the model, optimizer, regularizer and schedule; validate that they fit."""
    device = resolve_device(config.device)
    splits = make_splits(load_dataset(config.data), config.data)
    seed_everything(config.seed)
    task = make_task(config, splits, device)
    tensors = {
        name: (torch.as_tensor(x, dtype=torch.float32, device=device), task.targets(y).to(device))
        for name, (x, y) in (("train", splits.train), ("val", splits.val), ("test", splits.test))
    }
    exp = Experiment(config, device, splits, task, tensors)
    task.attach_regularizer(exp.steps_per_epoch)
    return exp


def weight_stats(model: nn.Module) -> dict[str, float]:
    """L2 norm of all weight matrices/filters, and the percentage of exact zeros per layer and in all.
    Every layer's Σw² and zero count stay on the device until one ``tolist()``."""
    weights = [(name, p.detach()) for name, p in model.named_parameters() if p.dim() >= 2]
    sums = torch.stack([torch.stack([w.pow(2).sum().double(), (w == 0).sum().double()])
                        for _, w in weights]).tolist() if weights else []
    stats: dict[str, float] = {}
    total_sq, zeros, count = 0.0, 0, 0
    for (name, w), (sq, n_zero) in zip(weights, sums):
        total_sq += sq
        stats[f"zeros/{name}"] = 100.0 * int(n_zero) / w.numel()
        zeros += int(n_zero)
        count += w.numel()
    stats["weight_l2"] = math.sqrt(total_sq)
    stats["zeros_total"] = 100.0 * zeros / max(count, 1)
    return stats


def evaluate_splits(exp: Experiment, names=("train", "val")) -> dict[str, float]:
    """The task's ``evaluate`` of the model on each split, keyed ``{split}_{metric}``, with the gaps."""
    out: dict[str, float] = {}
    for name in names:
        for key, value in exp.task.evaluate(*exp.tensors[name]).items():
            out[f"{name}_{key}"] = value
    return add_gaps(out)


def add_gaps(out: dict[str, float]) -> dict[str, float]:
    """Add the generalization gaps: gap_loss = val − train loss, gap_acc = train − val accuracy."""
    if "train_loss" in out and "val_loss" in out:
        out["gap_loss"] = out["val_loss"] - out["train_loss"]
    if "train_acc" in out and "val_acc" in out:
        out["gap_acc"] = out["train_acc"] - out["val_acc"]
    return out
