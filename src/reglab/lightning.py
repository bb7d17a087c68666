"""PyTorch Lightning: a callback that regularizes a ``LightningModule``'s optimizers.

    trainer = lightning.Trainer(callbacks=[RegularizationCallback(rl.L2(1e-4), mode="decoupled")])

At fit start (``on_fit_start``: the first hook at which ``trainer.optimizers`` exists, after
``configure_optimizers``) the callback attaches one :class:`~reglab.Regularizer` to each optimizer,
each over the selected parameters that optimizer holds, so a GAN's generator and discriminator
optimizers each regularize their own network. It works with automatic optimization (Lightning
passes a closure to ``optimizer.step``, which the regularizer wraps) and with manual optimization
(``self.optimizers().step()``). Its state in a checkpoint is each regularizer's step count, so
that λ schedules go on where they were on resume. At the end of every training epoch (or of every
training step, ``on_step=True``) it logs, through ``pl_module.log``, for each term (named as in
:meth:`Regularizer.values`: ``Term(…, name="head")`` names it):

* ``reg/<term>``        the term's value λ_t·R,
* ``reg/<term>/norm``   the L2 norm of all the tensors the term touches,
* ``reg/<term>/zeros``  the percentage of their values that are exactly zero.

``prog_bar=True`` shows them in the progress bar; ``sync_dist=True`` averages them over the
processes under DDP (Lightning's ``sync_dist``: every process holds the same weights after a step,
so the average is the value; it spares Lightning's warning and keeps the logs of all ranks equal).

This module needs the ``lightning`` package (``pip install 'reglab[lightning]'``); ``import reglab``
does not import it.
"""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import nn

from reglab.errors import UserError
from reglab.penalties import Penalty
from reglab.regularizer import Regularizer, Term
from reglab.selection import Selection, weights

try:
    from lightning.pytorch import Callback, LightningModule, Trainer
except ImportError as e:  # pragma: no cover - exercised by a subprocess test
    raise ImportError("reglab.lightning needs the lightning package: pip install 'reglab[lightning]'") from e

__all__ = ["RegularizationCallback"]


class _HeldBy(Selection):
    """The parameters an optimizer holds."""

    def __init__(self, optimizer: torch.optim.Optimizer, index: int):
        self.optimizer, self.index = optimizer, index

    def ids(self, model: nn.Module) -> set[int]:
        return {id(p) for g in self.optimizer.param_groups for p in g["params"]}

    def __repr__(self) -> str:
        return f"optimizer {self.index}"


class RegularizationCallback(Callback):
    """Attach ``terms`` (a penalty, a :class:`~reglab.Term` or a list, as for
    :class:`~reglab.Regularizer`) to the module's optimizer(s) at fit start; ``mode`` is the default
    mode of terms that set none. ``on_step``, ``prog_bar`` and ``sync_dist`` say how the values are
    logged (the module docstring)."""

    def __init__(self, terms: Penalty | Term | Iterable[Penalty | Term], mode: str = "coupled", *,
                 on_step: bool = False, prog_bar: bool = False, sync_dist: bool = False):
        self.terms, self.mode = terms, mode
        self.on_step, self.prog_bar, self.sync_dist = on_step, prog_bar, sync_dist
        self.regularizers: list[Regularizer] = []  # one per optimizer that holds selected parameters
        self._term_index: list[list[int]] = []  # for each of them: the index of each of its terms
        self._names: list[str] = []
        self._tensors: list[list[torch.Tensor]] = []
        self._restored_steps: list[int] | None = None  # from a checkpoint, for the λ schedules

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._detach()
        whole = Regularizer(pl_module, self.terms, mode=self.mode)  # validates terms, names them
        self._names = list(whole.values())
        selections = [t.on if t.on is not None else weights() for t in whole.terms]
        self._tensors = [[p for _, p in s.resolve(pl_module)] for s in selections]
        held: set[int] = set()
        for k, optimizer in enumerate(trainer.optimizers):
            mine = _HeldBy(optimizer, k)
            held |= mine.ids(pl_module)
            terms, index = [], []
            for i, (term, selection) in enumerate(zip(whole.terms, selections)):
                if (selection & mine).ids(pl_module):
                    terms.append(Term(term.penalty, on=selection & mine, mode=term.mode, schedule=term.schedule,
                                      name=term.name))
                    index.append(i)
            if terms:
                reg = Regularizer(pl_module, terms, mode=self.mode)
                reg.attach(optimizer)
                self.regularizers.append(reg)
                self._term_index.append(index)
        for name, tensors in zip(self._names, self._tensors):
            orphans = [p for p in tensors if p.requires_grad and id(p) not in held]
            if orphans:
                raise UserError(
                    f"term '{name}' touches {len(orphans)} trainable parameter(s) that no optimizer holds"
                )
        self._restore_steps()

    def on_train_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if self.on_step:
            self._log(pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.on_step:
            self._log(pl_module)

    def _log(self, pl_module: LightningModule) -> None:
        """Each term's value, norm and share of zeros, through ``pl_module.log``."""
        options = {"on_step": self.on_step, "on_epoch": not self.on_step, "prog_bar": self.prog_bar,
                   "sync_dist": self.sync_dist}
        values = [0.0] * len(self._names)
        for reg, index in zip(self.regularizers, self._term_index):
            for i, value in zip(index, reg.values().values()):
                values[i] += value
        with torch.no_grad():
            for name, value, tensors in zip(self._names, values, self._tensors):
                norm = torch.sqrt(sum(p.detach().pow(2).sum() for p in tensors)).item()
                zeros = sum(int((p == 0).sum()) for p in tensors) / sum(p.numel() for p in tensors)
                pl_module.log(f"reg/{name}", value, **options)
                pl_module.log(f"reg/{name}/norm", norm, **options)
                pl_module.log(f"reg/{name}/zeros", 100.0 * zeros, **options)

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._detach()

    def state_dict(self) -> dict[str, Any]:
        """The step count of each regularizer (their λ schedules go on from it on resume)."""
        return {"steps": [reg.steps for reg in self.regularizers]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # Lightning restores callbacks before or after on_fit_start, depending on the strategy
        self._restored_steps = list(state_dict["steps"])
        self._restore_steps()

    def _restore_steps(self) -> None:
        if self._restored_steps is not None and self.regularizers:
            for reg, steps in zip(self.regularizers, self._restored_steps, strict=True):
                reg.load_state_dict({"steps": steps})
            self._restored_steps = None

    def _detach(self) -> None:
        for reg in self.regularizers:
            reg.detach()
        self.regularizers, self._term_index = [], []
