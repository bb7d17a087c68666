"""A stack of one model trained by its task's own step: the engine's backend for what it cannot
stack (GAN, a user's model that does not stack, other selections than the default;
``reglab.train.stacked.unsupported`` says which) and for a user's model alone. Its model is the task's ``nn.Module`` with the
task's own optimizer and regularizer attached, so one step is the task's ``train_step``:
loss → backward → clip → ``optimizer.step()`` (the regularizer acting inside it)."""

from __future__ import annotations

import torch
from torch import Tensor

from reglab.train.experiment import evaluate_splits
from reglab.train.tracker import Member


class ModuleStack:
    """K = 1: the member's own module, trained by ``task.train_step``, scored by ``task.evaluate``."""

    def __init__(self, member: Member):
        self.members = [member]
        self.steps = 0

    def train_epoch(self) -> Tensor:
        """One pass over the member's own shuffle of the training set; the batch losses [1, steps]."""
        exp = self.members[0].exp
        x, y = exp.tensors["train"]
        n = len(x)
        batch = exp.config.train.batch_size or n
        order = torch.randperm(n, generator=self.members[0].shuffle).to(exp.device)
        exp.model.train()
        losses = [exp.task.train_step(x[idx], y[idx]) for idx in order.split(batch)]
        self.steps += len(losses)
        return torch.stack(losses).unsqueeze(0).cpu()

    def evaluate(self) -> list[dict[str, float]]:
        """The task's own evaluation of train and validation."""
        return [evaluate_splits(self.members[0].exp)]

    def load(self, row: int) -> None:
        """Nothing to copy: the task's module is the model trained."""

    def select(self, keep: list[int]) -> None:
        """Nothing to drop: a stack of one ends with its model."""
