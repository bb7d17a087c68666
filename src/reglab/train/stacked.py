"""The stacked backend of the engine: M ≥ 1 models of one architecture trained as one computation.

Every parameter and buffer is stacked into one tensor ``[M, ...]`` (model m in row m;
``torch.func.stack_module_state``), each step is one batched forward and backward over the models'
own batches ``[M, B, ...]``, and the gradient clipping, the penalty and the optimizer act on the
stacked tensors with a learning rate, a λ and a weight decay per model (``[M]`` vectors broadcast
over the model dimension). A single run is the stack of M = 1 (``reglab.train.engine``).

The forward pass has two forms with one call, ``net(params, buffers, x, masks)``:

* reglab's own ``Net`` (linear, mlp, cnn): the hand-written batched layers of
  ``reglab.train.batched_net`` (``BatchedNet``), measured faster than the general form
  (``benchmarks/stack_any_model.py``: the general form takes 1.09–1.13× the time of a training
  step of 16 ``mlp-l2`` models, 1.13–1.16× of a batch-normalized 1-D CNN's; 1.35–1.76× in eval);
* any other model (``model.kind=custom``): ``torch.func.functional_call`` under ``vmap`` over the
  models (``reglab.train.functional_net``), its dropout layers counted, batch normalization's running
  statistics per model, ``nn.LSTM`` by its gates. Whether a model stacks is checked before
  training (:func:`custom_problem`); one that does not trains alone by its task's own step, and
  the reason is the one :func:`unsupported` gives. A user's model alone (K = 1) trains as its
  own module (``reglab.train.engine.stack_of``).

Model m sees what it sees alone, in the same order:

* its initial weights: ``seed_everything(seed)``, then the same builder (``reglab.train.prepare``);
* its batches: its own shuffle ``torch.Generator().manual_seed(seed)``, one permutation per epoch;
* its dropout masks, on any device: they are a function of (its seed, dropout step, layer)
  (``reglab.models.dropout``), drawn for all models in one call per dropout layer; each forward
  in training mode is one dropout step, as its ``CountedDropout`` layers count alone (a user's
  model that calls one dropout layer twice in a forward counts two steps alone: it is found not to
  stack);
* its task's loss: ``task.stacked_loss(stack, x, y)``, the stack being the stacked forward
  ``stack(x, train)`` with ``stack.random``, the models' counter-based numbers of the step (the
  random starts of adversarial training's attacks, ``reglab.adversarial.task``);
* one step: the task's loss of each model (``stacked_loss``) → backward → clip
  (g ← g·min(1, c / (‖g‖ + 10⁻⁶)) with ‖g‖ the model's own global norm, then g ← clamp(g, −v, v))
  → coupled penalty g ← g + ∇(λ_m·R)(w) → decoupled decay w ← w − lr_m·∇(λ_m·R)(w) → the optimizer
  step as torch writes it (SGD with momentum, Adam, AdamW) → proximal map w ← prox(w, lr_m·λ_m),
  λ_m scaled by the warm-up schedule of the step; the penalty's math is its own
  (``Penalty.apply_``, the Regularizer's own), for any penalty;
* its own epoch metrics, early stopping, restore-best and LR schedule (``reglab.train.tracker``).

Linear layers are ``baddbmm``, the batched twin of the ``addmm`` a single model runs (in both
forms), the losses are taken on contiguous views, and every per-model scalar is computed in float64
and rounded once, as torch rounds its Python scalars. On CPU an MLP stacked with others then trains
bit for bit as it does alone, dropout included, with every penalty in every mode and each optimizer
(tests/test_vectorized.py; a user's MLP too, tests/test_stack_any_model.py), except group lasso
in coupled and decoupled mode, whose per-group norms reduced over the stack differ in the last
place; there, and where a kernel sums in another order
(batched convolutions under ``vmap`` against a single model's own, batch normalization over the
models' channels side by side), the results agree to float rounding (1e-5 relative), and agree so
with the same model trained by a plain torch loop (tests/test_engine.py). Two kinds of training turn
that rounding into larger differences: Adam on a bias in front of a batch normalization, whose
gradient is zero in exact arithmetic and which Adam scales from rounding noise to steps of ±lr; and
a loss that is not differentiable everywhere (ReLU, max-pooling), which batch normalization makes
likely to matter: at one step of a batch-normalized CNN, torch's own modules gave gradients 8% apart
for two weight sets 4·10⁻⁷ apart (a unit switched on, or another position pooled). Two runs a
rounding apart then part there; the same nets with tanh and no pooling agree to 10⁻⁶ over epochs.
Users' models stacked against alone (tests/test_stack_any_model.py, 2 epochs): a CNN with batch
normalization and a Transformer encoder by SGD to 10⁻⁵ of each weight's largest magnitude, an LSTM
to 10⁻⁶; a Transformer by Adam parts by 10⁻² in the attention's key bias, whose gradient is zero in
exact arithmetic (Adam's ±lr steps from rounding noise, as above).
"""

from __future__ import annotations

import json
from typing import Callable, cast

import torch
from torch import Tensor
from torch.func import stack_module_state

from reglab.config import Config, flat_keys, is_penalty_setting, stacked_keys
from reglab.counter_random import CounterStream, seed_of
from reglab.data import load_dataset, make_splits
from reglab.models.build import Net, build_model, first_line
from reglab.models.dropout import CountedDropout, dropout_masks
from reglab.tasks.base import StackableTask
from reglab.tasks.plan import Plan
from reglab.train.batched_net import BatchedNet
from reglab.train.experiment import add_gaps, resolve_device
from reglab.train.functional_net import FunctionalNet, stack_problem
from reglab.train.stacked_optim import StackedOptimizer, StackedTerm, clip_
from reglab.train.tracker import Member

EVAL_BATCH = 2048  # the chunk size of SupervisedTask.evaluate, so that the losses add up alike


def unsupported(config: Config) -> str | None:
    """Why the stacked backend cannot train this config, or None. What it cannot train trains as a
    stack of one by the task's own step (``reglab.train.module_stack``)."""
    defaults, implemented = flat_keys(Config().to_dict()), stacked_keys()
    for key, value in flat_keys(config.to_dict()).items():
        # the section reg is stacked, and the penalty's settings (its extra keys) with it
        if key not in implemented and not is_penalty_setting(key) and value != defaults.get(key):
            return f"{key} is not vectorized"
    if config.reg.on != "weights":
        return f"only the default selection reg.on=weights is vectorized, not '{config.reg.on}'"
    if config.model.kind == "custom":
        return custom_problem(config)
    return None


PROBE_EXAMPLES = 4
_PROBED: dict[str, str | None] = {}


def custom_problem(config: Config) -> str | None:
    """Why the user's model (``model.kind=custom``) does not stack, or None: the model built as the
    run builds it, checked stacked against alone on its first :data:`PROBE_EXAMPLES` training examples
    (``reglab.train.functional_net.stack_problem``). Once per model, data and device in a process;
    torch's random state is left as it was."""
    key = json.dumps([config.model.model_dump(mode="json"), config.data.model_dump(mode="json"), config.device])
    if key not in _PROBED:
        try:
            device = resolve_device(config.device)
            splits = make_splits(load_dataset(config.data), config.data)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(config.seed)
                model = build_model(config.model, splits.input_shape, splits.n_outputs).to(device)
            x = torch.as_tensor(splits.train.x[:PROBE_EXAMPLES], dtype=torch.float32, device=device)
            problem = stack_problem(model, x)
        except Exception as exc:  # the run itself reports what fails when it is built
            problem = f"it could not be built ({first_line(exc)})"
        _PROBED[key] = None if problem is None else f"model.factory={config.model.factory}: {problem}"
    return _PROBED[key]


def dropout_rates(model: torch.nn.Module) -> dict[int, float]:
    """The rate p of each counter-based dropout layer of ``model``, by its layer number."""
    return {m.layer: m.p for m in model.modules() if isinstance(m, CountedDropout)}


def stackable(member: Member) -> StackableTask:
    """The member's task as the stacked backend uses it: a config that :func:`unsupported` admits
    is a supervised task (``reglab.train.task_choice``), which declares what ``StackableTask`` needs."""
    return cast(StackableTask, member.exp.task)


def plan(member: Member) -> Plan:
    """The member's plan (``reglab.tasks.plan``): its λ, weight decay and penalty settings."""
    return stackable(member).plan


def learning_rate(member: Member) -> float:
    """The member's current learning rate: its own torch optimizer's, which its torch scheduler
    sets from its plan's schedule each epoch (``reglab.tasks.plan``; that optimizer never steps here)."""
    return member.exp.task.optimizer.param_groups[0]["lr"]


class StackedModels:
    """The models still training: stacked parameters, optimizer state and penalty, one row each."""

    def __init__(self, members: list[Member]):
        first = members[0].exp
        self.members = members
        self.config, self.device = first.config, first.device
        self.task = stackable(members[0])
        self.net = BatchedNet(first.model) if isinstance(first.model, Net) else FunctionalNet(first.model)
        self.params, self.buffers = stack_module_state([m.exp.model for m in members])
        self.plan = self.task.plan  # the hyper-parameters every model of the stack shares
        self.optimizer = StackedOptimizer(self.plan)
        self.penalty = self.build_penalty()
        self.steps = 0
        self.train_forwards = 0  # dropout steps: one per training-mode forward, as CountedDropout counts
        self.seeds = torch.tensor([seed_of(m.exp.config.seed) for m in members], dtype=torch.int32,
                                  device=self.device)  # CountedDropout's seeds: its run's seed
        rates = [dropout_rates(m.exp.model) for m in members]
        self.keep = {layer: torch.tensor([1 - r[layer] for r in rates], dtype=torch.float64, device=self.device)
                     for layer in rates[0]}  # each dropout layer's keep probabilities 1 − p, per model

    def build_penalty(self) -> StackedTerm | None:
        """The config's penalty term on the stacked weights it selects, its settings per model."""
        regularizer = self.task.regularizer
        if regularizer is None:
            return None
        term = regularizer.terms[0]
        model = self.members[0].exp.model
        names = {id(p): n for n, p in model.named_parameters()}
        selected = [names[id(p)] for _, p in term.on.resolve(model)]
        settings = {name: self.vector(lambda m: plan(m).settings[name]) for name in term.penalty.setting_values()}
        return StackedTerm(term.penalty, term.mode, selected, settings, term.schedule)

    def vector(self, value: Callable[[Member], float]) -> Tensor:
        """A per-model float64 vector over the members still training."""
        return torch.tensor([value(m) for m in self.members], dtype=torch.float64, device=self.device)

    def draw_dropout(self, layer: CountedDropout, shape: torch.Size, dtype: torch.dtype) -> Tensor:
        """Every model's masks [M, *shape] for ``layer`` at this step, in one call: each with its own
        seed and its own layer's rate (``model.dropout`` in reglab's nets, the layer's own p in a
        user's model)."""
        return dropout_masks(self.seeds, self.train_forwards, layer.layer, shape, self.keep[layer.layer], dtype)

    def __call__(self, x: Tensor, train: bool) -> Tensor:
        """Every model's outputs [M, B, ...] on its inputs [M, B, ...]; ``train``: the next dropout
        masks (each training-mode forward is one dropout step), and batch normalization by each
        model's batch statistics (updating its running ones)."""
        if not train:
            return self.net(self.params, self.buffers, x, None)
        out = self.net(self.params, self.buffers, x, self.draw_dropout)
        self.train_forwards += 1
        return out

    @property
    def random(self) -> CounterStream:
        """Every model's counter-based random numbers of this step (adversarial random starts)."""
        return CounterStream(self.seeds, self.steps)

    def train_step(self, x: Tensor, y: Tensor, lr: Tensor, lam: Tensor, wd: Tensor | None) -> Tensor:
        """One step of every model on its batch; returns the batch losses [M]."""
        names = list(self.params)
        losses = self.task.stacked_loss(self, x, y)  # the stack is the stacked forward
        grads = dict(zip(names, torch.autograd.grad(losses.sum(), [self.params[n] for n in names])))
        with torch.no_grad():
            clip_(list(grads.values()), self.plan.clip_norm, self.plan.clip_value)
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
        lr = self.vector(learning_rate)
        rates = {learning_rate(m) for m in self.members}
        self.optimizer.shared_lr = rates.pop() if len(rates) == 1 else None
        lam = self.vector(lambda m: plan(m).lam)
        wd = self.vector(lambda m: plan(m).weight_decay)
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
        task, size = self.task, len(self.members)
        keys, columns = [], []
        for name in names:
            x, y = self.members[0].exp.tensors[name]
            totals = torch.zeros(size, dtype=torch.float64, device=self.device)
            correct = torch.zeros(size, dtype=torch.int64, device=self.device)
            for start in range(0, len(x), EVAL_BATCH):
                xb, yb = x[start : start + EVAL_BATCH], y[start : start + EVAL_BATCH]
                logits = self.net(self.params, self.buffers, xb.expand(size, *xb.shape))
                # the task's own criterion on each model's logits: a loss reduced per model rounds
                # as the separate run's does, where one reduced over the stack would not
                losses = torch.stack([task.criterion(out, yb) for out in logits])
                totals += losses.double() * len(yb)
                if task.classify:
                    correct += (logits.argmax(2) == yb).sum(1)
            keys.append(f"{name}_loss")
            columns.append(totals / len(x))
            if task.classify:
                keys.append(f"{name}_acc")
                columns.append(correct.double() / len(x))
        rows = torch.stack(columns, 1).tolist()
        return [add_gaps(dict(zip(keys, row))) for row in rows]

    @torch.no_grad()
    def load(self, row: int) -> None:
        """Copy model ``row``'s stacked parameters and buffers into its own ``nn.Module``, and its
        step count into its regularizer (whose warm-up its penalty values read)."""
        member = self.members[row]
        for name, p in member.exp.model.named_parameters():
            p.copy_(self.params[name][row])
        for name, b in member.exp.model.named_buffers():
            b.copy_(self.buffers[name][row])
        regularizer = stackable(member).regularizer
        if regularizer is not None:
            regularizer.load_state_dict({"steps": self.steps})

    def select(self, keep: list[int]) -> None:
        """Keep only these rows (the models still training)."""
        index = torch.tensor(keep, device=self.device)
        self.members = [self.members[i] for i in keep]
        self.params = {n: p.detach()[index].requires_grad_() for n, p in self.params.items()}
        self.buffers = {n: b[index] for n, b in self.buffers.items()}
        self.optimizer.select(index)
        self.seeds = self.seeds[index]
        self.keep = {layer: keep[index] for layer, keep in self.keep.items()}
        if self.penalty is not None:
            self.penalty.select(index)
