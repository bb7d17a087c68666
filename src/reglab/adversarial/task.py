"""Adversarial training and robust evaluation of a classifier; composes with any reglab penalty.

Training is an attack and an objective. The attack (``adv.attack``, a registered class of
:mod:`reglab.adversarial.attacks`) makes x' in the threat set B = B(x, ε) ∩ [0, 1]^d:

* ``pgd`` (Madry et al. 2018): max_{x'∈B} CE(f(x'), y) by PGD-k;
* ``fgsm-rs`` (Wong et al. 2020): one signed step from a random start, δ₀ ~ U(−ε, ε)^d,
  x' = Π_B(x + δ₀ + α·sign(∇ₓ CE)), α = 1.25·ε;
* ``trades`` (Zhang et al. 2019): x' ≈ argmax_{x'∈B} KL(p(x) ‖ p(x')).

The objective (``adv.objective``) is the loss on x and x', with CE the cross-entropy:

* ``adversarial``: CE(f(x'), y), so with pgd min_θ E[max_{x'∈B} CE(f(x'), y)];
* ``trades``: CE(f(x), y) + β·KL(p(x) ‖ p(x'));
* ``weighted`` (Goodfellow et al. 2015): α_w·CE(f(x), y) + (1 − α_w)·CE(f(x'), y).

``adv.method`` names the usual pairs (``reglab.adversarial.config.METHODS``).

The penalty is not part of this loss: the regularizer is attached to the optimizer (coupled,
decoupled or proximal), so every attack and objective composes with every penalty and mode unchanged.

The training attack runs with the model in eval mode by default (``adv.attack_mode=eval``, as the
TRADES reference code and torchattacks do): BatchNorm uses and keeps its running statistics and
dropout is off while x' is searched; the loss on x' is then taken in train mode. With
``attack_mode=train`` (Madry's and Wong's code) the attack sees the training-mode network, and
BatchNorm's running statistics also move on every attack step.

Each epoch the task measures PGD accuracy on fixed held-out validation and training batches
(``val_robust_acc``, ``train_robust_acc``), keeps the checkpoint with the best ``val_robust_acc``
(never the test set) and the last one, and, with ``adv.guard``, stops when ``val_robust_acc``
falls more than ``adv.guard_drop`` below its best (catastrophic overfitting), restoring the best.
"""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from reglab.adversarial.attacks import PGD, Forward, ModuleForward
from reglab.adversarial.config import training_attack
from reglab.adversarial.evaluate import AUTOATTACK_INSTALL, autoattack_accuracy, robust_accuracy, sanity_checks
from reglab.adversarial.plots import robustness
from reglab.errors import UserError
from reglab.counter_random import CounterStream, seed_of
from reglab.progress import Progress
from reglab.tasks.supervised import SupervisedTask, mean_cross_entropy

EVAL_BATCH = 512


def state_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def check_attackable(config, splits) -> None:
    """An attack needs a classifier and inputs on the [0, 1] scale that ε is measured on."""
    if splits.kind != "classification":
        raise UserError(
            f"adversarial training and robust evaluation need a classification dataset; "
            f"'{config.data.name}' is {splits.kind} (set adv.attack=none and adv.eval_eps=[])"
        )
    lo = min(float(s.x.min()) for s in (splits.train, splits.val, splits.test))
    hi = max(float(s.x.max()) for s in (splits.train, splits.val, splits.test))
    if lo < 0 or hi > 1:
        raise UserError(
            f"attacks need inputs in [0, 1] (ε is measured on that scale); dataset "
            f"'{config.data.name}' spans [{lo:.3g}, {hi:.3g}]"
        )
    if config.adv.autoattack and importlib.util.find_spec("autoattack") is None:
        raise UserError(f"adv.autoattack=true, but AutoAttack is not installed: {AUTOATTACK_INSTALL}")


class AdversarialTask(SupervisedTask):
    """A classifier trained by ``adv.attack`` and ``adv.objective`` and evaluated under attack (see
    the module docstring)."""

    def __init__(self, config, splits, device: torch.device):
        check_attackable(config, splits)
        super().__init__(config, splits, device)
        self.adv = config.adv
        self.attack = training_attack(self.adv)
        self.epoch = 0
        self.steps = 0  # training steps of the module form (the random starts' counter)
        self.best: tuple[int, float, dict] | None = None  # (epoch, val_robust_acc, state)
        self.final: tuple[int, dict] | None = None  # (epoch, state)

    # ------------------------------------------------------------------ training

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The batch loss of ``adv.objective`` (module docstring) for one model: :meth:`stacked_loss`
        of a stack of one, its random starts keyed by the run's seed and this task's count of
        training steps; plain CE without an attack."""
        if self.attack is None:
            return super().loss(model, x, y)
        seeds = torch.tensor([seed_of(self.config.seed)], dtype=torch.int32, device=x.device)
        forward = ModuleForward(model, random=CounterStream(seeds, self.steps))
        self.steps += 1
        return self.stacked_loss(forward, x.unsqueeze(0), y.unsqueeze(0))[0]

    def stacked_loss(self, forward: Forward, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The batch losses [M] of ``adv.objective`` for M stacked models, each on its own batch
        x [M, B, ...], y [M, B]: ``forward(x, train)`` gives the logits [M, B, C] and
        ``forward.random`` (a :class:`~reglab.counter_random.CounterStream`) the models' random
        numbers of this step, which the training attack draws its random starts from.

        The attack runs in eval mode (``adv.attack_mode=eval``: ``forward(x, False)``) or in
        training mode (``train``: ``forward(x, True)``); the losses on x and x' are taken in
        training mode, in this order: trades x' after x, weighted x' after x. Each training-mode
        forward is one dropout step (a model alone counts them the same way, one per forward of
        its ``CountedDropout`` layers), so a model's dropout masks are the same alone and in a batch.
        """
        adv = self.adv
        if self.attack is None:
            return super().stacked_loss(forward, x, y)
        x_adv = self.attack.stacked(forward, x, y, forward.random)
        if adv.objective == "trades":
            logits = forward(x, True)
            log_q, p = F.log_softmax(forward(x_adv, True), dim=-1), F.softmax(logits, dim=-1)
            kl = F.kl_div(log_q, p, reduction="none").flatten(1).sum(1) / x.shape[1]  # batchmean per model
            return mean_cross_entropy(logits, y) + adv.beta * kl
        if adv.objective == "weighted":
            clean = mean_cross_entropy(forward(x, True), y)
            robust = mean_cross_entropy(forward(x_adv, True), y)
            return adv.weight * clean + (1 - adv.weight) * robust
        return mean_cross_entropy(forward(x_adv, True), y)

    # ------------------------------------------------------------------ evaluation

    def robust(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps_list, steps: int,
               restarts: int, progress: Progress | None = None) -> list[tuple[float, float]]:
        """[(ε, accuracy under PGD-steps × restarts)], random starts drawn from the run's seed;
        ``progress`` advances once per ε."""
        points = []
        for eps in eps_list:
            points.append((eps, robust_accuracy(model, x, y, PGD(eps, steps=steps, norm=self.adv.norm), EVAL_BATCH,
                                                restarts * (eps > 0), self.config.seed)))
            if progress is not None:
                progress.update(f"test ε = {eps:g}: {points[-1][1]:.3f}")
        return points

    def monitored(self, tensors, split: str) -> float:
        x, y = (t[: self.adv.monitor_examples] for t in tensors[split])
        return self.robust(self.model, x, y, [self.adv.eps], self.adv.monitor_steps, 1)[0][1]

    def epoch_metrics(self, tensors) -> dict[str, float]:
        """PGD-``monitor_steps`` accuracy at ε on fixed val/train batches; best/last checkpoints; guard."""
        adv = self.adv
        self.epoch += 1
        val, train = self.monitored(tensors, "val"), self.monitored(tensors, "train")
        state = state_copy(self.model)
        self.final = (self.epoch, state)
        if self.best is None or val > self.best[1]:
            self.best = (self.epoch, val, state)
        elif adv.guard and self.attack is not None and self.best[1] - val > adv.guard_drop:
            best_epoch, best_val, best_state = self.best
            self.stop_reason = (
                f"catastrophic overfitting guard: val_robust_acc fell from {best_val:.3f} (epoch "
                f"{best_epoch}) to {val:.3f} (epoch {self.epoch}); restored epoch {best_epoch}"
            )
            self.model.load_state_dict(best_state)
        return {"val_robust_acc": val, "train_robust_acc": train, "gap_robust_acc": train - val}

    def final_metrics(self, tensors) -> dict:
        """Robust test accuracy (PGD-``eval_steps`` × ``eval_restarts``) at ``adv.eps`` and along
        ``adv.eval_eps``, the same on validation (to choose λ, ε or a method by) and on training
        data (the robust generalization gap), best vs final checkpoint, and the sanity checks.
        Every split is capped at ``adv.eval_examples`` examples."""
        adv, n = self.adv, self.adv.eval_examples
        x, y = (t[:n] for t in tensors["test"])
        x_train, y_train = (t[:n] for t in tensors["train"])
        steps, restarts = adv.eval_steps, adv.eval_restarts
        eps_list = sorted({0.0, adv.eps, *adv.eval_eps})
        progress = Progress(None, len(eps_list) + 3, f"{self.config.name} robust evaluation", unit="part")
        try:
            curve = self.robust(self.model, x, y, eps_list, steps, restarts, progress)
            at_eps = dict(curve)[adv.eps]
            train_at_eps = self.robust(self.model, x_train, y_train, [adv.eps], steps, restarts)[0][1]
            progress.update(f"train ε = {adv.eps:g}: {train_at_eps:.3f}")
            x_val, y_val = (t[:n] for t in tensors["val"])
            val_at_eps = self.robust(self.model, x_val, y_val, [adv.eps], steps, restarts)[0][1]
            progress.update(f"val ε = {adv.eps:g}: {val_at_eps:.3f}")
            checks = sanity_checks(self.model, x, y, adv.eps, adv.norm, steps=steps, restarts=1,
                                   batch_size=EVAL_BATCH, seed=self.config.seed)
            progress.update("sanity checks")
        finally:
            progress.close()
        out = {
            "robust_attack": f"PGD-{steps} {adv.norm}, {restarts} restarts, α = 2.5·ε/{steps}, "
                             f"{len(y)} test examples",
            "robust_eps": adv.eps,
            "robust_test_acc": at_eps,
            "robust_train_acc": train_at_eps,
            "robust_val_acc": val_at_eps,
            "robust_gap": train_at_eps - at_eps,
            "robust_curve": [[e, a] for e, a in curve],
            "robust_sanity_passed": all(c.passed for c in checks),
            "robust_sanity": [str(c) for c in checks],
        }
        if self.best is not None and self.final is not None:
            current = state_copy(self.model)
            for name, (epoch, state) in (("best", (self.best[0], self.best[2])), ("final", self.final)):
                out[f"robust_{name}_epoch"] = epoch
                out[f"robust_{name}_acc"] = at_eps if same_state(state, current) else \
                    self.checkpoint_robust(state, x, y)
        if adv.autoattack:
            out["robust_autoattack_acc"] = autoattack_accuracy(
                self.model, x, y, adv.eps, adv.norm, batch_size=EVAL_BATCH, seed=self.config.seed)
        return out

    def write_plots(self, folder: Path, history: list[dict], summary: dict[str, Any]) -> None:
        """``robustness.png``: robust accuracy over the epochs and against ε, once the run finished."""
        if "robust_curve" in summary:
            robustness(history, summary, folder / "robustness.png", self.config.name)

    def checkpoint_robust(self, state: dict, x: torch.Tensor, y: torch.Tensor) -> float:
        model = copy.deepcopy(self.model)
        model.load_state_dict(state)
        return self.robust(model, x, y, [self.adv.eps], self.adv.eval_steps, self.adv.eval_restarts)[0][1]
