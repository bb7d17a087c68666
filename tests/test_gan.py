"""The GAN task: data, mode metrics, FID, the D penalties and their sign, bad input, end to end."""

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg
import scipy.stats
import torch
import torch.nn.functional as F

from reglab.config import DataConfig, load_config
from reglab.data import load_dataset
from reglab.errors import UserError
from reglab.gan.config import GAN_PRESETS
from reglab.gan.losses import discriminator_loss, gradient_penalty, r1_penalty
from reglab.gan.metrics import frechet_distance, gaussian_fit, mode_metrics
from reglab.gan.nets import Discriminator
from reglab.train import prepare, run

TINY = ["data.n_samples=1200", "train.epochs=2", "train.batch_size=128", "gan.g_hidden=[16]",
        "gan.d_hidden=[16]", "gan.n_eval_samples=300"]  # fmt: skip


def reglab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reglab.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


# -- data -----------------------------------------------------------------------------------------


def test_ring_has_8_distinct_modes_on_the_unit_circle():
    ds = load_dataset(DataConfig(name="gaussian-ring"))
    modes = ds.extra["modes"]
    assert modes.shape == (8, 2) and ds.extra["sigma"] == 0.01
    np.testing.assert_allclose(np.linalg.norm(modes, axis=1), 1.0, atol=1e-12)
    gaps = np.linalg.norm(modes[:, None] - modes[None], axis=2) + np.eye(8) * 10
    np.testing.assert_allclose(gaps.min(), 2 * math.sin(math.pi / 8), atol=1e-12)  # neighbours 45° apart
    offsets = ds.x - modes[ds.y]
    assert abs(offsets.std() - 0.01) < 0.0005
    assert set(np.bincount(ds.y)) and np.bincount(ds.y).min() > 1000


def test_grid_has_25_modes_and_sigma():
    ds = load_dataset(DataConfig(name="gaussian-grid", n_samples=5000))
    modes = ds.extra["modes"]
    assert len(np.unique(modes, axis=0)) == 25
    assert set(modes.ravel()) == {-4.0, -2.0, 0.0, 2.0, 4.0}
    assert ds.extra["sigma"] == 0.05 and len(ds.x) == 5000
    assert abs((ds.x - modes[ds.y]).std() - 0.05) < 0.003


# -- metrics --------------------------------------------------------------------------------------


def test_samples_on_5_of_8_centers():
    modes = load_dataset(DataConfig(name="gaussian-ring", n_samples=10)).extra["modes"]
    samples = np.repeat(modes[:5], 40, axis=0)
    m = mode_metrics(samples, modes, 0.01)
    assert m["modes"] == 5 and m["hq_pct"] == 100.0
    assert m["reverse_kl"] == pytest.approx(math.log(8 / 5), abs=1e-12)


def test_reverse_kl_counts_only_high_quality_samples():
    modes = load_dataset(DataConfig(name="gaussian-grid", n_samples=10)).extra["modes"]
    sigma = 0.05
    inside = np.concatenate([np.repeat(modes[:1] + [2.9 * sigma, 0], 3, 0), modes[1:2]])
    outside = modes[2:6] + [0, 3.1 * sigma]  # nearest to their own mode, but beyond 3σ
    m = mode_metrics(np.concatenate([inside, outside]), modes, sigma)
    assert m["modes"] == 2 and m["hq_pct"] == pytest.approx(100 * 4 / 8)
    q = np.array([3, 1]) / 4
    reference = scipy.stats.entropy(np.r_[q, np.zeros(23)], np.full(25, 1 / 25))
    assert m["reverse_kl"] == pytest.approx(reference, rel=1e-12)
    none = mode_metrics(modes[:3] + 1.0, modes, sigma)
    assert none["modes"] == 0 and none["hq_pct"] == 0 and none["reverse_kl"] == pytest.approx(math.log(25))


def test_frechet_distance_closed_forms():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.normal(size=4), rng.normal(size=4)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    d1, d2 = rng.uniform(0.5, 2, 4), rng.uniform(0.5, 2, 4)
    cov1, cov2 = q @ np.diag(d1) @ q.T, q @ np.diag(d2) @ q.T  # commuting: √(Σ₁Σ₂) = Q√(D₁D₂)Qᵀ
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(d1) - np.sqrt(d2)) ** 2)
    assert frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(expected, rel=1e-9)
    assert frechet_distance([1.0], [[4.0]], [3.0], [[9.0]]) == pytest.approx(4 + 1, rel=1e-12)
    feats = rng.normal(size=(500, 6)) @ rng.normal(size=(6, 6))
    assert abs(frechet_distance(*gaussian_fit(feats), *gaussian_fit(feats))) < 1e-6
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    cov1, cov2 = a @ a.T + 0.1 * np.eye(4), b @ b.T + 0.1 * np.eye(4)  # not commuting
    with_sqrtm = np.sum((mu1 - mu2) ** 2) + np.trace(cov1 + cov2 - 2 * np.real(scipy.linalg.sqrtm(cov1 @ cov2)))
    assert frechet_distance(mu1, cov1, mu2, cov2) == pytest.approx(with_sqrtm, rel=1e-9)


# -- losses and penalties -------------------------------------------------------------------------


def test_ns_loss_is_binary_cross_entropy_with_smoothed_real_labels():
    real, fake = torch.randn(7), torch.randn(5)
    for s in (0.0, 0.1):
        bce = F.binary_cross_entropy_with_logits(real, torch.full_like(real, 1 - s)) + \
            F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
        assert discriminator_loss("ns", real, fake, s).item() == pytest.approx(bce.item(), rel=1e-6)


def numeric_input_grad(d, x, h=1e-6):
    grad = torch.zeros_like(x)
    for i in range(x.shape[1]):
        step = torch.zeros_like(x)
        step[:, i] = h
        grad[:, i] = (d(x + step) - d(x - step)) / (2 * h)
    return grad


def tiny_discriminator(seed=0):
    torch.manual_seed(seed)
    return Discriminator((2,), [8, 8]).double()


def test_gradient_penalty_matches_finite_differences():
    d = tiny_discriminator()
    real, fake = torch.randn(6, 2, dtype=torch.float64), torch.randn(6, 2, dtype=torch.float64)
    torch.manual_seed(5)
    gp = gradient_penalty(d, real, fake)
    torch.manual_seed(5)
    eps = torch.rand(6, 1, dtype=torch.float32).double()
    mixed = eps * real + (1 - eps) * fake
    with torch.no_grad():
        reference = (numeric_input_grad(d, mixed).norm(dim=1) - 1).pow(2).mean()
    assert gp.item() == pytest.approx(reference.item(), rel=1e-6)


def test_r1_value_and_its_parameter_gradient_match_finite_differences():
    d = tiny_discriminator(1)
    real = torch.randn(5, 2, dtype=torch.float64)

    def r1_of(model):
        x = real.clone().requires_grad_(True)
        return r1_penalty(model(x), x)

    value = r1_of(d)
    with torch.no_grad():
        reference = numeric_input_grad(d, real).pow(2).sum(dim=1).mean()
    assert value.item() == pytest.approx(reference.item(), rel=1e-6)
    weight = d.net[1].weight
    (grad,) = torch.autograd.grad(value, weight)  # through the double backward
    h = 1e-6
    weight.data[0, 0] += h
    plus = r1_of(d).item()
    weight.data[0, 0] -= 2 * h
    minus = r1_of(d).item()
    assert grad[0, 0].item() == pytest.approx((plus - minus) / (2 * h), rel=1e-5)


def test_discriminator_weight_penalty_is_added_not_subtracted():
    lam = 0.05
    config = load_config("gan-ring", TINY + ["gan.regularizer=custom", "reg=l1", f"reg.lam={lam}",
                                             "gan.reg_on=d"])  # fmt: skip
    task = prepare(config).task
    x = torch.randn(32, 2)
    reference = copy.deepcopy(task.d)
    torch.manual_seed(3)
    objective = task.discriminator_step(x)
    torch.manual_seed(3)
    with torch.no_grad():
        fake = task.g(torch.randn(32, config.gan.latent_dim))
    loss = discriminator_loss("ns", reference(x), reference(fake))
    l1 = sum(m.weight.abs().sum() for m in reference.modules() if isinstance(m, torch.nn.Linear))
    assert objective.item() == pytest.approx(loss.item(), rel=1e-6)  # the data part, reported
    opt = torch.optim.Adam(reference.parameters(), lr=config.gan.lr_d, betas=config.gan.betas)
    (loss + lam * l1).backward()  # the penalty added to D's loss
    opt.step()
    for trained, expected in zip(task.d.parameters(), reference.parameters()):
        torch.testing.assert_close(trained, expected)
    assert task.penalty_values()["penalty/d.l1"] > 0 and "penalty/g.l1" not in task.penalty_values()


def test_the_step_is_non_finite_when_either_loss_is_and_subnormals_stay_as_the_process_had_them():
    config = load_config("gan-ring", TINY + ["gan.n_critic=1"])
    task = prepare(config).task
    assert task.optimizer is task.g_optimizer  # the lr the metrics line reports is G's
    x = torch.randn(32, 2)
    assert torch.isfinite(task.train_step(x, torch.zeros(32)))
    task.generator_step = lambda n: torch.tensor(float("inf"))  # G diverged, D's objective is finite
    assert not torch.isfinite(task.train_step(x, torch.zeros(32)))
    subnormal = torch.tensor([1e-39])
    assert (subnormal * 1.0).item() > 0  # the task flushed subnormals only while it computed


# -- configuration ----------------------------------------------------------------------------------


def test_presets_set_one_regularizer_at_strength_times_reference():
    cfg = load_config("gan-grid", ["gan.regularizer=gp", "gan.strength=10"])
    assert cfg.gan.gp == pytest.approx(10 * GAN_PRESETS["gp"]["gan.gp"])
    assert (cfg.reg.penalty, cfg.gan.r1, cfg.gan.spectral_norm) == ("none", 0.0, False)
    l1 = load_config("gan-grid", ["gan.regularizer=l1", "gan.strength=0.1"])
    assert (l1.reg.penalty, l1.reg.lam) == ("l1", pytest.approx(0.1 * GAN_PRESETS["l1"]["reg.lam"]))
    assert l1.gan.r1 == 0.0
    sn = load_config("gan-ring", ["gan.regularizer=sn"])
    assert sn.gan.spectral_norm and sn.reg.penalty == "none"


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["reg.lam=-0.1"], "invalid value for 'reg.lam'"),
        (["gan.gp=-1"], "invalid value for 'gan.gp'"),
        (["gan.strength=-2"], "invalid value for 'gan.strength'"),
        (["gan.n_critic=0"], "invalid value for 'gan.n_critic'"),
        (["gan.loss=wasserstein", "gan.label_smoothing=0.1"], "needs the discriminator's output to be a probability"),
        (["gan.regularizer=l1", "reg.lam=0.5"], "gan.regularizer=l1 sets reg.lam"),
        (["train.restore_best=true"], "train.restore_best=false"),
        (["optim.lr=0.1"], "optim.* does not apply to task=gan"),
        (["gan.n_critc=5"], "did you mean 'gan.n_critic'"),
        (["gan.regularizer=custom", "gan.strength=3"], "gan.strength scales a gan.regularizer preset"),
        (["reg=dropout"], "model.* does not apply to task=gan"),
    ],
)
def test_bad_gan_input_is_one_clear_error(overrides, fragment):
    with pytest.raises(UserError, match=fragment.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        load_config("gan-ring", overrides)


def test_gan_keys_on_a_supervised_recipe_are_refused():
    with pytest.raises(UserError, match="apply only to task=gan"):
        load_config("mlp-l2", ["gan.n_critic=5"])


def test_every_gan_recipe_validates_with_its_description():
    for name in ("gan-l1", "gan-ring", "gan-grid"):
        cfg = load_config(name)
        assert cfg.task == "gan" and cfg.description


# -- end to end -----------------------------------------------------------------------------------


def test_bad_input_through_the_cli_is_one_line_and_exit_2(tmp_path):
    proc = reglab("run", "gan-ring", "gan.n_critic=0", "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "gan.n_critic" in lines[0], proc.stderr
    assert not (tmp_path / "runs").exists()


def test_tiny_ring_run_through_the_cli(tmp_path):
    proc = reglab("run", "gan-ring", *TINY, "gan.eval_every=1", "--out", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (folder,) = [p.parent for p in tmp_path.glob("**/summary.json")]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "ok"
    assert 0 <= summary["modes"] <= 8 and 0 <= summary["hq_pct"] <= 100
    assert 0 <= summary["reverse_kl"] <= math.log(8) + 1e-9
    epochs = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert len(epochs) == 2 and all({"d_loss", "g_loss", "modes", "hq_pct"} <= set(e) for e in epochs)
    for plot in ("samples.png", "gan_curves.png", "learning_curve.png"):
        assert (folder / "plots" / plot).is_file(), plot


def test_divergence_is_marked_failed_with_its_step(tmp_path):
    config = load_config("gan-ring", TINY + ["gan.regularizer=none", "gan.loss=wasserstein",
                                             "gan.lr_d=1e12", "gan.lr_g=1e12"])  # fmt: skip
    result = run(config, root=tmp_path)
    summary = json.loads((result.path / "summary.json").read_text())
    assert summary["status"] == "failed" and "diverged" in summary["reason"]
    assert isinstance(summary["step"], int) and 1 <= summary["step"] <= 2 * 7
    assert not (result.path / "weights.pt").exists()


def test_digits_gan_scores_with_a_cached_classifier_reproducibly(tmp_path, monkeypatch):
    monkeypatch.setenv("REGLAB_CACHE", str(tmp_path / "cache"))
    overrides = ["data.name=digits", "data.n_samples=null", "train.epochs=1", "train.batch_size=64",
                 "gan.g_hidden=[32]", "gan.d_hidden=[32]", "gan.n_eval_samples=200", "gan.latent_dim=8"]  # fmt: skip
    first_run = run(load_config("gan-ring", overrides), root=tmp_path / "a")
    first = first_run.summary
    assert (first_run.path / "plots" / "samples.png").is_file()
    assert len(list((tmp_path / "cache" / "gan-classifiers").glob("digits-*.pt"))) == 1
    second = run(load_config("gan-ring", overrides + ["train.plots=false"]), root=tmp_path / "b").summary
    assert first["status"] == second["status"] == "ok"
    assert first["classifier_test_acc"] > 0.8
    assert first["fid_cls"] > 0 and 0 <= first["modes_cls"] <= 10
    for key in ("fid_cls", "modes_cls", "hq_pct_cls"):
        assert first[key] == second[key], key
