"""The batched engine: train a stack of K ≥ 1 models of one architecture as one computation.

A sweep trains the same model on the same data many times, changing only the seed and the penalty
strength. :func:`run_many` trains such a group of M configs at once, and ``reglab.train.run``
trains a single supervised run here as a group of one (:func:`train_alone`) wherever that is bit
for bit its per-module run (:func:`unsupported_alone`; the epoch's mean batch loss, a reported
number, agrees to float rounding). Every parameter is stacked
into one tensor ``[M, ...]`` (model m in row m; ``torch.func.stack_module_state``), each step is
one batched forward and backward over the models' own batches ``[M, B, ...]``, and the gradient
clipping, the penalty and the optimizer act on the stacked tensors with a learning rate, a λ and a
weight decay per model (``[M]`` vectors broadcast over the model dimension).

Model m sees what its separate run (:func:`reglab.train.run`) sees, in the same order:

* its initial weights: ``seed_everything(seed)``, then the same builder (``reglab.train.prepare``);
* its batches: its own shuffle ``torch.Generator().manual_seed(seed)``, one permutation per epoch;
* its dropout masks, on any device: they are a function of (its seed, step, layer)
  (``reglab.models.dropout``), drawn for all models in one call per dropout layer;
* one step: loss → backward → clip (g ← g·min(1, c / (‖g‖ + 10⁻⁶)) with ‖g‖ the model's own global
  norm, then g ← clamp(g, −v, v)) → coupled penalty g ← g + ∇(λ_m·R)(w) → decoupled decay
  w ← w − lr_m·∇(λ_m·R)(w) → the optimizer step as torch writes it (SGD with momentum, Adam, AdamW)
  → proximal map w ← prox(w, lr_m·λ_m), λ_m scaled by the warm-up schedule of the step; the
  penalty's math is its own (``Penalty.stacked_grad`` / ``stacked_prox``), for any penalty;
* its own epoch metrics, early stopping, restore-best and LR schedule (``reglab.train.Tracker``,
  as in its separate run).

Linear layers are ``baddbmm``, the batched twin of the ``addmm`` a single model runs, the losses are
taken on contiguous views, and every per-model scalar is computed in float64 and rounded once, as
torch rounds its Python scalars. On CPU an MLP is then trained bit for bit as in its separate run,
dropout included, with every penalty in every mode and each optimizer (tests/test_vectorized.py),
except group lasso in coupled and decoupled mode, whose per-group norms reduced over the stack
differ in the last place; there, and where a kernel sums in another order (batched convolutions
under ``vmap``, a 1×1 weight), the results agree to float rounding (1e-5 relative).
A model that fails (diverges, or raises in its own end of epoch) ends alone; the others train on.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn
from torch.func import stack_module_state

from reglab.adversarial.config import wants_attacks
from reglab.config import Config, flat_keys
from reglab.models.dropout import CountedDropout, dropout_masks
from reglab.penalties import Penalty
from reglab.progress import Progress
from reglab.runs import RunFolder
from reglab.train.batched_net import BatchedNet
from reglab.train.stacked_optim import StackedOptimizer, StackedTerm, clip_
from reglab.train.threads import cores, free_cores, use_free_cores
from reglab.train import Experiment, RunResult, Tracker, add_gaps, close, prepare, run_or_fail

VARYING = {"seed", "reg.lam", "reg.l1_ratio", "optim.lr", "optim.weight_decay", "model.dropout", "reg.dropout",
           "name", "description", "out"}
"""The keys in which the configs of a group may differ (dropout rates only when all are above 0,
since a model without dropout has no dropout layers)."""

HANDLED = {
    "name", "description", "seed", "device", "out",
    "model.kind", "model.hidden", "model.activation", "model.dropout", "model.channels",
    "model.kernel_size", "model.pool", "model.dense", "model.batchnorm",
    "reg.penalty", "reg.lam", "reg.l1_ratio", "reg.mode", "reg.on", "reg.dropout", "reg.warmup_epochs",
    "optim.name", "optim.lr", "optim.momentum", "optim.weight_decay", "optim.betas",
    "train.epochs", "train.batch_size", "train.schedule", "train.plateau_factor",
    "train.plateau_patience", "train.step_size", "train.step_gamma", "train.clip_norm",
    "train.clip_value", "train.early_stopping", "train.monitor", "train.restore_best",
    "train.save_weights", "train.plots", "train.tensorboard", "published.value", "published.metric",
    "published.source",
}  # fmt: skip
"""The keys the fast path implements (and every ``data.*`` key); any other key must keep its default."""

EVAL_BATCH = 2048  # the chunk size of SupervisedTask.evaluate, so that the losses add up alike


def unsupported(config: Config) -> str | None:
    """Why the fast path cannot train this config, or None."""
    if wants_attacks(config):
        return "adversarial training and robust evaluation are not vectorized"
    defaults = flat_keys(Config().to_dict())
    for key, value in flat_keys(config.to_dict()).items():
        if key not in HANDLED and not key.startswith("data.") and value != defaults.get(key):
            return f"{key} is not vectorized"
    if config.model.kind not in ("linear", "mlp", "cnn"):
        return f"model.kind={config.model.kind} is not vectorized"
    if config.model.batchnorm:
        return "batch normalization (running statistics per model) is not vectorized"
    if config.reg.on != "weights":
        return f"only the default selection reg.on=weights is vectorized, not '{config.reg.on}'"
    return None


def unsupported_alone(exp: Experiment) -> str | None:
    """Why a single run of ``exp`` trains with ``reglab.train.fit`` rather than as a batch of one,
    or None. A batch of one reproduces fit's run bit for bit on CPU except where its kernels sum in
    another order: convolutions under ``vmap``, and a penalty without its own stacked coupled
    (decoupled) form, whose generic form reduces over the stack (group lasso); there fit keeps the
    single run as it was."""
    reason = unsupported(exp.config)
    if reason is not None:
        return reason
    if exp.config.model.kind == "cnn":
        return "batched convolutions round differently"
    regularizer = exp.task.regularizer
    if regularizer is not None:
        term = regularizer.terms[0]
        generic = {"coupled": "stacked_add_grad_", "decoupled": "stacked_decay_"}.get(term.mode)
        if generic is not None and getattr(type(term.penalty), generic) is getattr(Penalty, generic):
            return f"{type(term.penalty).__name__} has no exact stacked {term.mode} form"
    return None


def vectorizable(configs: list[Config]) -> str | None:
    """None when :func:`run_many` can train ``configs`` together, else a short reason why not.

    They can when they differ only in :data:`VARYING` (seed, λ, l1_ratio, lr, weight decay, name)
    and the fast path implements the rest: supervised linear/mlp/cnn models without batchnorm, any
    penalty and mode on the default weight selection, sgd/adam/adamw, any LR schedule, clipping,
    early stopping and restore-best, and dropout.
    """
    if len(configs) < 2:
        return "a single run"
    first = flat_keys(configs[0].to_dict())
    if len({c.model.dropout > 0 for c in configs}) > 1:
        return "some runs have dropout layers and some do not"
    for config in configs[1:]:
        keys = sorted(k for k, v in flat_keys(config.to_dict()).items() if k not in VARYING and v != first.get(k))
        if keys:
            return f"the runs differ in {', '.join(keys[:3])}" + (", …" if len(keys) > 3 else "")
    return unsupported(configs[0])


def batched_message(n: int) -> str:
    """How a batch of n runs trains here: at once, in this process, on the free cores' threads."""
    threads = use_free_cores()
    return (f"training {n} models at once (vectorized) in this process on {threads} thread"
            f"{'s' * (threads > 1)} ({free_cores()} of {cores()} cores free)")


def dropout_seed(model: nn.Module) -> int:
    """The seed of a model's dropout masks (0 for a model without dropout)."""
    return next((m.seed for m in model.modules() if isinstance(m, CountedDropout)), 0)


# -- the group --------------------------------------------------------------------------------------


@dataclass
class Member:
    """One config of the group: its experiment, its tracker (run folder, history, best epoch,
    status), its shuffle and, once it has ended, its result."""

    exp: Experiment
    tracker: Tracker = field(init=False)
    shuffle: torch.Generator = field(init=False)
    result: RunResult | None = None

    def __post_init__(self):
        self.tracker = Tracker(self.exp, None)
        self.shuffle = torch.Generator().manual_seed(self.exp.config.seed)

    @property
    def folder(self) -> RunFolder:
        return self.tracker.folder

    @property
    def lr(self) -> float:
        return self.exp.task.optimizer.param_groups[0]["lr"]

    def end_epoch(self, epoch: int, step: int, losses: Tensor, split_metrics: dict[str, float]) -> bool:
        """The separate run's end of an epoch (its model holds this model's weights); True when this
        model's training ends."""
        if self.tracker.diverged(losses, step):
            return True
        with warnings.catch_warnings():  # the schedule steps an optimizer that the group stands in for
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
            return self.tracker.end_epoch(epoch, step, float(losses.mean()), split_metrics)

    def fail(self, reason: str, epoch: int | None) -> None:
        """End this model's run as failed, leaving the rest of the group to train on."""
        summary = {"status": "failed", "reason": reason, "path": str(self.folder.path)}
        if epoch is not None:
            summary["epoch"] = epoch
        self.folder.finish(summary)
        self.result = RunResult(self.folder.path, summary)

    def finish(self, seconds: float, group_size: int) -> None:
        """Restore the best weights, write the summary (and weights) as ``reglab.train.run`` does."""
        summary = self.tracker.summary(seconds)
        if group_size > 1:
            summary.update(vectorized=True, group_size=group_size)
        self.result = close(self.exp, self.folder, summary)


class Group:
    """The models still training: stacked parameters, optimizer state and penalty, one row each."""

    def __init__(self, members: list[Member]):
        first = members[0].exp
        self.members, self.size = members, len(members)
        self.config, self.device = first.config, first.device
        self.task = first.task
        self.classify = first.task.classify
        self.net = BatchedNet(first.model)
        self.params, _ = stack_module_state([m.exp.model for m in members])
        self.optimizer = StackedOptimizer(self.config.optim.name, first.task.optimizer.param_groups[0])
        self.penalty = self.build_penalty(first)
        self.steps = 0
        self.dropout_seeds = torch.tensor([dropout_seed(m.exp.model) for m in members], dtype=torch.int32,
                                          device=self.device)
        self.keep = self.vector(lambda m: 1 - m.exp.config.model.dropout)

    def build_penalty(self, first: Experiment) -> StackedTerm | None:
        regularizer = first.task.regularizer
        if regularizer is None:
            return None
        term = regularizer.terms[0]
        names = {id(p): n for n, p in first.model.named_parameters()}
        selected = [names[id(p)] for _, p in term.on.resolve(first.model)]
        settings = {name: self.vector(lambda m: getattr(m.exp.task.regularizer.terms[0].penalty, name))
                    for name in term.penalty.settings}
        return StackedTerm(term.penalty, term.mode, selected, settings, term.schedule)

    def vector(self, value: Callable[[Member], float]) -> Tensor:
        """A per-model float64 vector over the members still training."""
        return torch.tensor([value(m) for m in self.members], dtype=torch.float64, device=self.device)

    def draw_dropout(self, layer: CountedDropout, h: Tensor) -> Tensor:
        """Every model's masks for ``layer`` at this step, in one call: each with its own seed and
        rate (the rate of every dropout layer of a model is its ``model.dropout``)."""
        return dropout_masks(self.dropout_seeds, self.steps, layer.layer, h.shape[1:], self.keep, h.dtype)

    def forward(self, x: Tensor, train: bool) -> Tensor:
        """Every model's outputs [M, B, ...] on its inputs [M, B, ...]; ``train`` applies this
        step's dropout masks."""
        return self.net(self.params, x, self.draw_dropout if train else None)

    def train_step(self, x: Tensor, y: Tensor, lr: Tensor, lam: Tensor, wd: Tensor | None) -> Tensor:
        """One step of every model on its batch; returns the batch losses [M]."""
        names = list(self.params)
        losses = self.task.stacked_loss(self.forward, x, y)
        grads = dict(zip(names, torch.autograd.grad(losses.sum(), [self.params[n] for n in names])))
        with torch.no_grad():
            clip_(list(grads.values()), self.config.train.clip_norm, self.config.train.clip_value)
            if self.penalty is not None:
                lam = lam * float(self.penalty.schedule(self.steps))  # λ of this step (warm-up)
                self.penalty.before_step(self.params, grads, lr, lam)
            self.optimizer.step(self.params, grads, lr, wd)
            if self.penalty is not None:
                self.penalty.after_step(self.params, lr, lam)
        self.steps += 1
        return losses.detach()

    def train_epoch(self) -> Tensor:
        """One pass of every model over its own shuffle of the training set; losses [M, steps]."""
        x, y = self.members[0].exp.tensors["train"]
        n = len(x)
        batch = self.config.train.batch_size or n
        orders = torch.stack([torch.randperm(n, generator=m.shuffle) for m in self.members]).to(self.device)
        lr = self.vector(lambda m: m.lr)
        rates = {m.lr for m in self.members}
        self.optimizer.shared_lr = rates.pop() if len(rates) == 1 else None
        lam = self.vector(lambda m: m.exp.config.reg.lam)
        wd = self.vector(lambda m: m.exp.task.optimizer.param_groups[0]["weight_decay"])
        wd = wd if bool(wd.any()) else None
        losses = []
        for start in range(0, n, batch):
            idx = orders[:, start : start + batch]
            losses.append(self.train_step(x[idx], y[idx], lr, lam, wd))
        return torch.stack(losses, 1).cpu()

    @torch.no_grad()
    def evaluate(self, names=("train", "val")) -> list[dict[str, float]]:
        """Each model's mean loss (and accuracy) on the splits, in eval mode, as its task computes
        them: Σ_chunks loss(chunk)·|chunk| / n in float64, accuracy = correct / n. The numbers of
        all models stay on the device until one ``tolist()`` per evaluation."""
        task, size = self.members[0].exp.task, len(self.members)
        keys, columns = [], []
        for name in names:
            x, y = self.members[0].exp.tensors[name]
            totals = torch.zeros(size, dtype=torch.float64, device=self.device)
            correct = torch.zeros(size, dtype=torch.int64, device=self.device)
            for start in range(0, len(x), EVAL_BATCH):
                xb, yb = x[start : start + EVAL_BATCH], y[start : start + EVAL_BATCH]
                logits = self.net(self.params, xb.expand(size, *xb.shape))
                # the task's own criterion on each model's logits: a loss reduced per model rounds
                # as the separate run's does, where one reduced over the stack would not
                losses = torch.stack([task.criterion(out, yb) for out in logits])
                totals += losses.double() * len(yb)
                if self.classify:
                    correct += (logits.argmax(2) == yb).sum(1)
            keys.append(f"{name}_loss")
            columns.append(totals / len(x))
            if self.classify:
                keys.append(f"{name}_acc")
                columns.append(correct.double() / len(x))
        rows = torch.stack(columns, 1).tolist()
        return [add_gaps(dict(zip(keys, row))) for row in rows]

    @torch.no_grad()
    def load(self, row: int, model: nn.Module) -> None:
        """Copy model ``row``'s stacked parameters into its own ``nn.Module``."""
        for name, p in model.named_parameters():
            p.copy_(self.params[name][row])

    def select(self, keep: list[int]) -> None:
        """Keep only these rows (the models still training)."""
        index = torch.tensor(keep, device=self.device)
        self.members = [self.members[i] for i in keep]
        self.params = {n: p.detach()[index].requires_grad_() for n, p in self.params.items()}
        self.optimizer.select(index)
        self.dropout_seeds, self.keep = self.dropout_seeds[index], self.keep[index]
        if self.penalty is not None:
            self.penalty.select(index)

    def fit(self, progress: bool | None) -> None:
        """Train every model to its own end, finishing each run folder as its model ends."""
        started = time.perf_counter()
        alone = self.size == 1
        bar = Progress(progress, self.config.train.epochs, self.config.name + ("" if alone else f" ×{self.size}"))
        try:
            for epoch in range(1, self.config.train.epochs + 1):
                losses = self.train_epoch()
                metrics = self.evaluate()
                step = self.steps
                keep = []
                for i, member in enumerate(self.members):
                    try:
                        self.load(i, member.exp.model)
                        if member.exp.task.regularizer is not None:
                            member.exp.task.regularizer.load_state_dict({"steps": step})
                        ended = member.end_epoch(epoch, step, losses[i], metrics[i])
                        if ended or epoch == self.config.train.epochs:
                            member.finish(time.perf_counter() - started, self.size)
                        else:
                            keep.append(i)
                    except Exception as exc:  # this model's failure ends this model only
                        member.fail(f"{type(exc).__name__}: {exc}", epoch)
                tracker = self.members[0].tracker
                bar.update(tracker.progress_info() if alone and tracker.history else f"{len(keep)} of {self.size} training")
                if not keep:
                    break
                if len(keep) < len(self.members):
                    self.select(keep)
        finally:
            bar.close()


def run_many(configs: list[Config], root: str | Path | None = None,
             progress: bool | None = None) -> list[RunResult]:
    """Train ``configs`` and write their run folders: the results of
    ``[reglab.train.run_or_fail(c, root) for c in configs]``, trained as one batched computation
    when :func:`vectorizable` allows it (each summary then says ``"vectorized": true`` and the
    ``group_size``; its ``seconds`` are the group's), else one after another.

    A config that fails (it cannot be built, it diverges, or anything it alone does raises) gives a
    failed result with its reason, and the others train on as they would alone."""
    if vectorizable(configs) is not None:
        return [run_or_fail(c, root, progress) for c in configs]
    use_free_cores()
    results: list[RunResult | None] = [None] * len(configs)
    members: list[tuple[int, Member]] = []
    for i, config in enumerate(configs):
        try:
            exp = prepare(config)
        except Exception as exc:
            results[i] = RunResult.failed(exc)
            continue
        members.append((i, Member(exp)))
    if members:
        train_group([m for _, m in members], root, progress)
    for i, member in members:
        results[i] = member.result
    return results


def train_alone(exp: Experiment, folder: RunFolder, progress: bool | None) -> RunResult:
    """Train one prepared config as a group of one (K = 1) into its run folder."""
    member = Member(exp)
    member.tracker.folder = folder
    fit_group(Group([member]), progress)
    return member.result


def train_group(members: list[Member], root: str | Path | None, progress: bool | None) -> None:
    """Create the members' run folders and train them together; each member ends with its result."""
    group = Group(members)
    for member in members:
        member.tracker.folder = RunFolder.create(member.exp.config, member.exp.device, root)
    fit_group(group, progress)


def fit_group(group: Group, progress: bool | None) -> None:
    """Train the group; what the whole group raises ends the models still training as failed."""
    members = group.members
    try:
        group.fit(progress)
    except BaseException as exc:  # what the whole group raised ends the models still training
        for member in members:
            if member.result is None:
                member.fail(f"{type(exc).__name__}: {exc}", None)
        if not isinstance(exc, Exception):
            raise
