"""Sweeps' groups: which configs the engine trains together as one stack, and training them.

A sweep trains the same model on the same data many times, changing only the seed and the penalty
strength. :func:`run_many` trains such a group of M configs as one stack
(``reglab.train.stacked.StackedModels``, through the engine's one epoch loop) where
:func:`vectorizable` allows it, else one after another as single runs.
"""

from __future__ import annotations

from pathlib import Path

from reglab.config import Config, flat_keys, is_penalty_setting
from reglab.runs import Run, RunLabel
from reglab.train.engine import run_or_fail, train_members
from reglab.train.experiment import prepare
from reglab.train.stacked import unsupported
from reglab.train.threads import cores, free_cores, use_free_cores
from reglab.train.tracker import Member

VARYING = {"seed", "reg.lam", "optim.lr", "optim.weight_decay", "model.dropout",
           "name", "description", "out"}
"""The keys in which the configs of a group may differ, besides the penalty's settings (dropout rates
only when all are above 0, since a model without dropout has no dropout layers)."""


def vectorizable(configs: list[Config]) -> str | None:
    """None when :func:`run_many` can train ``configs`` together, else a short reason why not.

    They can when they differ only in :data:`VARYING` (seed, λ, the penalty's settings, lr, weight decay, name)
    and the stacked backend implements the rest: supervised linear/mlp/cnn models (batch normalization
    included) and users' models that stack (``model.kind=custom``; the reason names what does not,
    ``reglab.train.stacked.custom_problem``), any penalty and mode on the default weight selection,
    sgd/adam/adamw, any LR schedule, clipping, early stopping and restore-best, and dropout.
    """
    if len(configs) < 2:
        return "a single run"
    first = flat_keys(configs[0].to_dict())
    if len({c.model.dropout > 0 for c in configs}) > 1:
        return "some runs have dropout layers and some do not"
    for config in configs[1:]:
        keys = sorted(k for k, v in flat_keys(config.to_dict()).items()
                      if k not in VARYING and not is_penalty_setting(k) and v != first.get(k))
        if keys:
            return f"the runs differ in {', '.join(keys[:3])}" + (", …" if len(keys) > 3 else "")
    return unsupported(configs[0])


def batched_message(n: int) -> str:
    """How a batch of n runs trains here: at once, in this process, on the free cores' threads."""
    threads = use_free_cores()
    return (f"training {n} models at once (vectorized) in this process on {threads} thread"
            f"{'s' * (threads > 1)} ({free_cores()} of {cores()} cores free)")


def run_many(configs: list[Config], root: str | Path | None = None, progress: bool | None = None,
             publish: bool = True, labels: list[RunLabel | None] | None = None) -> list[Run]:
    """Train ``configs`` and write their run folders (named by ``labels``, one per config, when
    given): the results of ``[reglab.train.run_or_fail(c, root) for c in configs]``, trained as one stack when
    :func:`vectorizable` allows it (each summary then says ``"vectorized": true``, the
    ``group_size`` K and the stack's time to the end of the epoch the model ended in,
    ``group_seconds``; its ``seconds`` are its share, ``group_seconds / K``), else one after another.

    A config that fails (it cannot be built, it diverges, or anything it alone does raises) gives a
    failed result with its reason, and the others train on as they would alone."""
    labels = labels or [None] * len(configs)
    if vectorizable(configs) is not None:
        return [run_or_fail(c, root, progress, publish, label) for c, label in zip(configs, labels)]
    use_free_cores()
    results: list[Run | None] = [None] * len(configs)
    members: list[tuple[int, Member]] = []
    for i, config in enumerate(configs):
        try:
            exp = prepare(config)
        except Exception as exc:
            results[i] = Run.failed(exc)
            continue
        members.append((i, Member.of(exp)))
    if members:
        train_members([m for _, m in members], root, progress, publish, [labels[i] for i, _ in members])
    for i, member in members:
        results[i] = member.result
    return results
