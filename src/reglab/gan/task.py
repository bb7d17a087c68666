"""The GAN task: alternating discriminator (D) and generator (G) updates, with regularizers.

Batches and steps. Each training batch of real data is one D step on it and a fresh batch of fakes
G(z), z ~ N(0, I); after every ``n_critic``-th D step comes one G step on a fresh z of the same
size. An epoch of B batches is B D steps and (about) B / n_critic G steps; the trainer's ``step``
counts D steps. G and D each have their own Adam (``gan.lr_g``, ``gan.lr_d``, ``gan.betas``,
default (0.5, 0.999)): ``g_optimizer`` and ``d_optimizer``. The Task contract's ``optimizer`` (the
one whose learning rate the metrics line reports) is G's.

One D step minimizes

    L_D = loss_D(f(x), f(x̃)) + λ_GP·GP + γ/2·R1 (+ λ·R(w_D) when the weight penalty is on D),

one G step L_G = loss_G(f(x̃)) (+ λ·R(w_G) when it is on G); see ``gan_losses`` for the terms. The
weight penalty is reglab's :class:`~reglab.Regularizer` built from the ``reg`` section, attached to
the optimizer of each net named by ``gan.reg_on``, so it acts in any mode: ``coupled`` adds ∇λR
to the gradient, which is exactly adding λR to the loss (added, never subtracted, for D too);
``decoupled`` and ``proximal`` act around Adam's step. Spectral norm reparametrizes D's layers;
weight clipping clamps every D parameter to [−c, c] after each D step (WGAN).

``train_step`` returns D's objective (adversarial loss + GP + R1 terms) when it and G's loss are
finite, else the non-finite one, so the trainer's divergence guard names the step where either net
diverged.
``evaluate`` reports D's adversarial loss on a split's real examples against as many fakes from a
fixed noise. ``epoch_metrics`` gives each epoch's mean D/G losses and penalties, and every
``gan.eval_every`` epochs (and at the last) the mode metrics of ``gan_metrics`` on
``gan.n_eval_samples`` samples from a fixed noise, which never touches the training's random
numbers.

Subnormal floats are flushed to zero while the task computes (:func:`flushed_denormals`): L2 on G
drives the weights of dead ReLU units into subnormals, which make CPU matmuls several times slower;
flushing changes no value above 1e-38. The setting is the process's, so it is restored afterwards.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

from reglab.gan.losses import discriminator_loss, generator_loss, gradient_penalty, r1_penalty
from reglab.gan.metrics import Judge, MixtureJudge, make_judge
from reglab.gan.nets import build_gan
from reglab.gan.plots import loss_curves, sample_grid, scatter
from reglab.regularizer import Regularizer
from reglab.tasks.optim import build_regularizer, build_scheduler, clip_gradients
from reglab.tasks.plan import plan_of

EVAL_NOISE_OFFSET = 10_007  # the evaluation noise's seed is the run's seed plus this


@contextmanager
def flushed_denormals() -> Iterator[None]:
    """Flush subnormal floats to zero inside, and restore torch's default (off) on leaving."""
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)


def flushing(method):
    """The method, run inside :func:`flushed_denormals`."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with flushed_denormals():
            return method(*args, **kwargs)

    return wrapper


class JointSchedule:
    """The G and D learning-rate schedules, stepped together once per epoch."""

    def __init__(self, *schedulers):
        self.schedulers = schedulers

    def step(self) -> None:
        for scheduler in self.schedulers:
            scheduler.step()


class GanTask:
    """G and D, their two Adam optimizers and regularizers, and the judge of the samples."""

    held_out = False
    """D's loss on a split's real examples says nothing of G's samples: a GAN's summary holds no
    split losses, gaps or best epoch, only what it measures (D/G losses per epoch, mode metrics)"""

    @flushing
    def __init__(self, config, splits, device: torch.device):
        self.config, self.gan, self.device = config, config.gan, device
        self.model = build_gan(config.gan, tuple(splits.input_shape)).to(device)
        self.g, self.d = self.model["g"], self.model["d"]
        betas = tuple(self.gan.betas)
        self.g_optimizer = torch.optim.Adam(self.g.parameters(), lr=self.gan.lr_g, betas=betas)
        self.d_optimizer = torch.optim.Adam(self.d.parameters(), lr=self.gan.lr_d, betas=betas)
        self.plan = plan_of(config)  # G's and D's lr and betas are the gan section's
        schedules = [build_scheduler(opt, self.plan) for opt in (self.g_optimizer, self.d_optimizer)]
        self.scheduler = JointSchedule(*schedules) if schedules[0] is not None else None
        self.regularizers: dict[str, Regularizer] = {}
        self.judge: Judge | None = make_judge(splits, device)
        self.d_steps, self.epoch = 0, 0
        self.steps: dict[str, list[torch.Tensor]] = {"d_loss": [], "g_loss": [], "gp": [], "r1": []}
        self.samples: torch.Tensor | None = None
        self.stop_reason: str | None = None

    # -- the trainer's interface ----------------------------------------------------------------

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimizer whose learning rate the metrics line reports: G's."""
        return self.g_optimizer

    def attach_regularizer(self, steps_per_epoch: int) -> None:
        """The ``reg`` penalty on each net of ``gan.reg_on``, acting inside that net's Adam step."""
        nets = {"g": (self.g, self.g_optimizer, max(1, steps_per_epoch // self.gan.n_critic)),
                "d": (self.d, self.d_optimizer, steps_per_epoch)}  # fmt: skip
        names = ("g", "d") if self.gan.reg_on == "both" else (self.gan.reg_on,)
        for name in names:
            net, optimizer, steps = nets[name]
            regularizer = build_regularizer(net, self.plan, steps)
            if regularizer is not None:
                self.regularizers[name] = regularizer
                regularizer.attach(optimizer)

    def targets(self, y) -> torch.Tensor:
        """Labels (the mode or class) ride along unused: a GAN is unsupervised."""
        return torch.as_tensor(y)

    @flushing
    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """D's objective; G's loss instead where that is not finite (and D's is)."""
        d_objective = self.discriminator_step(x)
        self.d_steps += 1
        if self.d_steps % self.gan.n_critic:
            return d_objective
        g_loss = self.generator_step(len(x))
        return torch.where(torch.isfinite(d_objective) & ~torch.isfinite(g_loss), g_loss, d_objective)

    @flushing
    @torch.no_grad()
    def evaluate(self, x: torch.Tensor, y: torch.Tensor, batch_size: int = 4096) -> dict[str, float]:
        """D's adversarial loss on the real ``x`` and as many fakes from the fixed evaluation noise."""
        was_training = self.model.training
        self.model.eval()
        fake = self.generate(len(x), batch_size)
        real_scores = torch.cat([self.d(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
        fake_scores = torch.cat([self.d(fake[i : i + batch_size]) for i in range(0, len(x), batch_size)])
        self.model.train(was_training)
        loss = discriminator_loss(self.gan.loss, real_scores, fake_scores, self.gan.label_smoothing)
        return {"loss": float(loss)}

    @flushing
    def penalty_values(self) -> dict[str, float]:
        """Current λ·R(w) of each net's weight penalty, e.g. ``penalty/d.l1``."""
        return {f"penalty/{net}.{term}": value for net, reg in self.regularizers.items()
                for term, value in reg.values().items()}  # fmt: skip

    @flushing
    def epoch_metrics(self, tensors) -> dict[str, float]:
        """The epoch's mean D/G losses and penalties; the mode metrics every ``gan.eval_every``."""
        self.epoch += 1
        out = {key: float(torch.stack(values).mean()) for key, values in self.steps.items() if values}
        self.steps = {key: [] for key in self.steps}
        if self.epoch % self.gan.eval_every == 0 or self.epoch == self.config.train.epochs:
            out.update(self.quality())
        return out

    @flushing
    def final_metrics(self, tensors) -> dict[str, float]:
        """The mode metrics of the trained G and the judge's own numbers (``Judge.own_metrics``)."""
        return {**self.quality(), **(self.judge.own_metrics() if self.judge is not None else {})}

    def write_plots(self, folder: Path, history: list[dict], summary: dict[str, Any]) -> None:
        """``samples.png`` (a scatter over the modes, or an image grid) and ``gan_curves.png``."""
        title = self.config.name
        loss_curves(history, folder / "gan_curves.png", title)
        if self.samples is None:
            return
        samples = self.samples.cpu().numpy()
        metrics = history[-1] if history else {}
        if isinstance(self.judge, MixtureJudge):
            scatter(samples, self.judge.modes, self.judge.sigma, metrics, folder / "samples.png", title)
        elif samples.ndim == 4:
            sample_grid(samples, metrics, folder / "samples.png", title)

    # -- the two steps --------------------------------------------------------------------------

    def noise(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(n, self.gan.latent_dim, generator=generator).to(self.device)

    def discriminator_step(self, x: torch.Tensor) -> torch.Tensor:
        """One Adam step on L_D; returns L_D's value (detached), weight penalty excluded."""
        gan = self.gan
        with torch.no_grad():
            fake = self.g(self.noise(len(x)))
        real = x.detach().requires_grad_(gan.r1 > 0)
        real_scores = self.d(real)
        loss = discriminator_loss(gan.loss, real_scores, self.d(fake), gan.label_smoothing)
        objective = loss
        if gan.gp > 0:
            gp = gradient_penalty(self.d, x, fake)
            objective = objective + gan.gp * gp
            self.steps["gp"].append(gp.detach())
        if gan.r1 > 0:
            r1 = r1_penalty(real_scores, real)
            objective = objective + gan.r1 / 2 * r1
            self.steps["r1"].append(r1.detach())
        self.d_optimizer.zero_grad(set_to_none=True)
        objective.backward()
        clip_gradients(self.d, self.plan)
        self.d_optimizer.step()
        if gan.clip is not None:
            with torch.no_grad():
                for p in self.d.parameters():
                    p.clamp_(-gan.clip, gan.clip)
        self.steps["d_loss"].append(loss.detach())
        return objective.detach()

    def generator_step(self, n: int) -> torch.Tensor:
        """One Adam step on L_G with D frozen; returns L_G's value (detached)."""
        self.d.requires_grad_(False)
        loss = generator_loss(self.gan.loss, self.d(self.g(self.noise(n))))
        self.g_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_gradients(self.g, self.plan)
        self.g_optimizer.step()
        self.d.requires_grad_(True)
        self.steps["g_loss"].append(loss.detach())
        return loss.detach()

    # -- samples and their quality --------------------------------------------------------------

    @torch.no_grad()
    def generate(self, n: int, batch_size: int = 4096) -> torch.Tensor:
        """``n`` samples from the fixed evaluation noise (the same z at every call)."""
        generator = torch.Generator().manual_seed(self.config.seed + EVAL_NOISE_OFFSET)
        was_training = self.g.training
        self.g.eval()
        out = torch.cat([self.g(self.noise(min(batch_size, n - i), generator)) for i in range(0, n, batch_size)])
        self.g.train(was_training)
        return out

    def quality(self) -> dict[str, float]:
        """The judge's mode metrics on ``gan.n_eval_samples`` samples (none for other data)."""
        if self.judge is None:
            return {}
        self.samples = self.generate(self.gan.n_eval_samples)
        return self.judge(self.samples)
