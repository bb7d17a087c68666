"""The engine: one loop over epochs for a stack of K ≥ 1 models; a single run is K = 1 through the
same code.

A stack is one of two backends with one interface (:class:`Stack`):

* :class:`~reglab.train.stacked.StackedModels`: K models of one architecture (reglab's ``Net`` or a
  user's model) as one computation on stacked parameters, for every supervised config that
  :func:`~reglab.train.stacked.unsupported` admits (a single one as K = 1, a sweep's group together;
  a user's model alone is K = 1 by its own module);
* :class:`~reglab.train.module_stack.ModuleStack`: K = 1, the task's own module and ``train_step``,
  for what cannot be stacked (GAN, a user's model that does not stack, other selections than the
  default) and a user's model alone.

Each epoch (:func:`train_stack`): the stack trains every model one pass over its own shuffle
(losses [K, steps]), evaluates train and validation for all models at once, and then each model's
:class:`~reglab.train.tracker.Member` ends its epoch: its module takes its weights (``load``), its
:class:`~reglab.train.tracker.Tracker` (the run's state) checks divergence, logs, keeps the best epoch, steps its LR schedule and decides whether it
stops. A model that ends (done, stopped, diverged, or it raised in its own end of epoch) finishes its
run folder and leaves the stack (``select``); the others train on. A model's time is the stack's
until the end of the epoch it ended in (its own final evaluation and run folder not counted), shared
out: ``seconds`` = that time / K (``reglab.train.tracker.Tracker.finish``). What the whole stack raises ends
the models still training as failed.
"""

from __future__ import annotations

import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Protocol

from torch import Tensor

from reglab.config import Config
from reglab.errors import environment_problem
from reglab.progress import Progress
from reglab.runs import Run, RunFolder, RunLabel
from reglab.train.experiment import Experiment, prepare
from reglab.train.module_stack import ModuleStack
from reglab.train.stacked import StackedModels, unsupported
from reglab.train.threads import use_free_cores
from reglab.train.tracker import Member


class Stack(Protocol):
    """What the epoch loop needs of a backend that trains the ``members`` still training."""

    members: list[Member]
    steps: int
    """the global step count: training steps each model has taken"""

    def train_epoch(self) -> Tensor:
        """One pass of every model over its own shuffle of the training set; batch losses [K, steps]
        on the CPU."""

    def evaluate(self) -> list[dict[str, float]]:
        """Each model's train and validation loss (and accuracy) and gaps, in eval mode."""

    def load(self, row: int) -> None:
        """Make member ``row``'s own module hold its current weights."""

    def select(self, keep: list[int]) -> None:
        """Keep only these rows (the models still training)."""


def stack_of(members: list[Member]) -> Stack:
    """The stacked backend where it can train the members' config, else the module backend (one).
    A user's model alone (``model.kind=custom``, K = 1) trains as its own module, by its own kernels."""
    config = members[0].exp.config
    alone_custom = len(members) == 1 and config.model.kind == "custom"
    if not alone_custom and unsupported(config) is None:
        return StackedModels(members)
    if len(members) != 1:
        raise ValueError(f"only a stack of one trains by the task's own step, not {len(members)}")
    return ModuleStack(members[0])


def train_stack(stack: Stack, progress: bool | None) -> None:
    """Train every model of the stack to its own end, finishing each run as its model ends; what the
    whole stack raises ends the models still training as failed."""
    for _ in course(stack, progress):
        pass


def course(stack: Stack, progress: bool | None) -> Iterator[float]:
    """:func:`train_stack` one epoch at a time: after each epoch that leaves models training it
    yields the stack's time so far (seconds), so that a caller can train several stacks in turn and
    drop models between epochs (``reglab.train.halving``). What the whole stack raises ends the
    models still training as failed."""
    members = list(stack.members)
    try:
        yield from epochs_loop(stack, progress)
    except GeneratorExit:
        raise
    except BaseException as exc:
        if environment_problem(exc) is not None:
            raise  # the machine's failure (a full disk), not the models': see train_members
        for member in members:
            if member.result is None:
                member.tracker.fail(f"{type(exc).__name__}: {exc}", None)
        if not isinstance(exc, Exception):
            raise


def epochs_loop(stack: Stack, progress: bool | None) -> Iterator[float]:
    """The loop over epochs (see the module's docstring); yields the stack's time after each epoch
    that leaves models training, and stops when none is left (a caller may have dropped them all)."""
    started = time.perf_counter()
    size = len(stack.members)
    config = stack.members[0].exp.config
    alone = size == 1
    bar = Progress(progress, config.train.epochs, config.name + ("" if alone else f" ×{size}"))
    try:
        for epoch in range(1, config.train.epochs + 1):
            losses = stack.train_epoch()
            metrics = stack.evaluate()
            keep, ending = [], []
            for i, member in enumerate(stack.members):
                try:
                    stack.load(i)
                    ended = member.tracker.end_epoch(epoch, stack.steps, losses[i], metrics[i])
                    (ending if ended or epoch == config.train.epochs else keep).append(i)
                except Exception as exc:  # this model's failure ends this model only
                    if environment_problem(exc) is not None:
                        raise
                    member.tracker.fail(f"{type(exc).__name__}: {exc}", epoch)
            seconds = time.perf_counter() - started  # the stack's time to the end of this epoch
            for i in ending:
                try:
                    stack.members[i].tracker.finish(seconds, size)
                except Exception as exc:
                    if environment_problem(exc) is not None:
                        raise
                    stack.members[i].tracker.fail(f"{type(exc).__name__}: {exc}", epoch)
            tracker = stack.members[0].tracker
            bar.update(tracker.progress_info() if alone and tracker.history else f"{len(keep)} of {size} training")
            if not keep:
                break
            if len(keep) < len(stack.members):
                stack.select(keep)
            yield seconds
            if not stack.members:
                break
    finally:
        bar.close()


def train_members(members: list[Member], root: str | Path | None, progress: bool | None,
                  publish: bool = True, labels: list[RunLabel | None] | None = None) -> None:
    """Build the members' stack, create their run folders (named by ``labels``, one per member, else
    by ``RunLabel.of`` their config) and train them; each ends with its result.
    ``publish=False`` leaves each finished folder under its ``.partial`` name (``runs.publish``)."""
    stack = stack_of(members)
    with run_folders(members, root, publish, labels):
        train_stack(stack, progress)


@contextmanager
def run_folders(members: list[Member], root: str | Path | None, publish: bool,
                labels: list[RunLabel | None] | None = None) -> Iterator[None]:
    """Create the members' run folders (named by ``labels``, one per member, else by ``RunLabel.of``
    their config) for the block that trains them. When the machine fails them
    (a full disk, a read-only place), the folders of the runs not yet finished are removed, which
    also frees the space they took, and the error is raised: no run is marked failed for it, and
    none is left half-written."""
    try:
        for member, label in zip(members, labels or [None] * len(members)):
            member.tracker.folder = RunFolder.create(member.exp.config, member.exp.device, root, publish, label)
        yield
    except Exception as exc:
        if environment_problem(exc) is not None:
            for member in members:
                if member.result is None and member.tracker.folder is not None:
                    shutil.rmtree(member.tracker.folder.where, ignore_errors=True)
        raise


def run(config: Config, root: str | Path | None = None, progress: bool | None = None,
        publish: bool = True, label: RunLabel | None = None) -> Run:
    """Train one config as a stack of one and write its run folder (named by ``label``, else by
    ``RunLabel.of(config)``). User errors surface before any folder exists; a failure in training
    gives a failed result, its reason in ``summary.json``."""
    use_free_cores()
    member = Member.of(prepare(config))
    train_members([member], root, progress, publish, [label])
    return member.result


def run_or_fail(config: Config, root: str | Path | None = None, progress: bool | None = None,
                publish: bool = True, label: RunLabel | None = None) -> Run:
    """:func:`run`, with an exception turned into a failed result: one run's failure is its own.
    A full disk or a read-only place is the machine's failure, not the run's: it is raised."""
    try:
        return run(config, root, progress, publish, label)
    except Exception as exc:
        if environment_problem(exc) is not None:
            raise
        return Run.failed(exc)


def fit(exp: Experiment, folder: RunFolder | None = None, progress: bool | None = None,
        on_epoch: Callable[[dict], None] | None = None) -> dict:
    """Train a prepared experiment as a stack of one, into ``folder`` if one is given; its summary.
    ``on_epoch(record)`` sees each epoch's metrics line as it is recorded."""
    member = Member.of(exp, folder, on_epoch)
    train_stack(stack_of([member]), progress)
    return member.result.summary
