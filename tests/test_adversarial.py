"""Adversarial training methods, robust evaluation, the overfitting guard and bad input, on tiny digits runs."""

import copy
import importlib.util
import json
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from reglab.adversarial.attacks import PGD, TRADES, Attack
from reglab.adversarial.evaluate import robust_accuracy
from reglab.adversarial.task import state_copy
from reglab.cli import main
from reglab.config import load_config
from reglab.errors import UserError
from reglab.counter_random import CounterStream, seed_of
from reglab.train import Member, fit, prepare
from reglab.train.engine import train_stack
from reglab.train.module_stack import ModuleStack

EPS = 0.1
TINY = [
    "data.name=digits", "data.n_train=200", "model.channels=[4, 8]", "model.dense=[16]",
    "train.epochs=2", f"adv.eps={EPS}", "adv.steps=3", "adv.eval_eps=[0.05, 0.1]", "adv.eval_steps=3",
    "adv.eval_restarts=2", "adv.eval_examples=64", "adv.monitor_examples=64", "adv.monitor_steps=3",
]  # fmt: skip


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def experiment(*overrides: str):
    return prepare(load_config("adversarial-l2", TINY + list(overrides)))


def batch(exp, n: int = 32):
    x, y = exp.tensors["train"]
    return x[:n], y[:n]


def seeded(seed: int, fn, *args, **kwargs):
    torch.manual_seed(seed)
    return fn(*args, **kwargs)


def training_noise(exp, step: int = 0) -> CounterStream:
    """The random numbers the training attack of ``exp``'s run draws its starts from at ``step``:
    counter-based, keyed by the run's seed (not torch's global generator)."""
    return CounterStream(torch.tensor([seed_of(exp.config.seed)], dtype=torch.int32), step)


# ---------------------------------------------------------------- the training losses


def by_hand_pgd(model, x, y, start, alpha, steps):
    """L∞ PGD written out (Madry et al. 2018): from ``start``, x ← Π(x + α·sign ∇ₓ CE) in eval mode."""
    model.eval()
    x_adv = start
    for _ in range(steps):
        x_adv = x_adv.detach().requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(x_adv), y, reduction="sum"), x_adv)
        x_adv = torch.minimum(torch.maximum(x_adv.detach() + alpha * g.sign(), x - EPS), x + EPS).clamp(0, 1)
    model.train()
    return x_adv


def test_pgd_loss_is_cross_entropy_on_pgd_examples_from_the_run_s_random_start():
    # the random start δ ~ U(−ε, ε) comes from the run's counter-based stream at its step (the
    # steps themselves are checked against torchattacks in test_attacks.py)
    exp = experiment("adv.method=pgd")
    model, (x, y) = exp.model.train(), batch(exp)
    losses = [exp.task.loss(model, x, y) for _ in range(2)]  # steps 0 and 1
    for step, loss in enumerate(losses):
        start = (x + training_noise(exp, step).uniform((1, *x.shape), -EPS, EPS, x)[0]).clamp(0, 1)
        x_adv = by_hand_pgd(model, x, y, start, 2.5 * EPS / 3, 3)
        assert torch.equal(exp.task.attack(model, x, y, training_noise(exp, step)), x_adv)
        assert model.training
        assert loss.item() == pytest.approx(F.cross_entropy(model(x_adv), y).item(), rel=1e-5)
    assert losses[0] != losses[1]  # a new random start each step


def test_fgsm_rs_is_one_signed_step_from_a_uniform_start():
    exp = experiment("adv.method=fgsm-rs")
    model, (x, y) = exp.model.train(), batch(exp)
    x_adv = exp.task.attack(model, x, y, training_noise(exp))
    # By hand (Wong et al. 2020): δ ~ U(−ε, ε), one step α = 1.25ε on sign ∇ CE, clip to ball and box.
    delta = training_noise(exp).uniform((1, *x.shape), -EPS, EPS, x)[0]
    start = (x + delta).clamp(0, 1).requires_grad_(True)
    model.eval()
    (g,) = torch.autograd.grad(F.cross_entropy(model(start), y, reduction="sum"), start)
    model.train()
    step = start.detach() + 1.25 * EPS * g.sign()
    expected = torch.minimum(torch.maximum(step, x - EPS), x + EPS).clamp(0, 1)
    torch.testing.assert_close(x_adv, expected)
    assert (x_adv - x).abs().max() <= EPS + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() > 0.9 * EPS  # the step really moves to the edge of the ball
    loss = exp.task.loss(model, x, y)  # its first training step
    assert loss.item() == pytest.approx(F.cross_entropy(model(expected), y).item(), rel=1e-5)


def test_trades_loss_is_ce_plus_beta_times_kl_of_clean_to_adversarial():
    exp = experiment("adv.method=trades", "adv.beta=3")
    model, (x, y) = exp.model.train(), batch(exp)
    loss = exp.task.loss(model, x, y)
    x_adv = TRADES(EPS, steps=3)(model, x, y, training_noise(exp))
    logits = model(x)
    p, log_q = F.softmax(logits, 1), F.log_softmax(model(x_adv), 1)
    kl_by_hand = (p * (p.log() - log_q)).sum(1).mean()  # KL(p(x) ‖ p(x')), averaged over the batch
    torch.testing.assert_close(kl_by_hand, F.kl_div(log_q, p, reduction="batchmean"))
    assert kl_by_hand > 0
    assert loss.item() == pytest.approx((F.cross_entropy(logits, y) + 3 * kl_by_hand).item(), rel=1e-5)


def test_trades_is_an_attack_that_runs_once():
    assert issubclass(TRADES, Attack)
    with pytest.raises(UserError, match="restarts must be 1"):
        TRADES(EPS, restarts=2)


@pytest.mark.parametrize("norm, eps", [("linf", EPS), ("l2", 1.0)])
def test_trades_example_stays_in_the_ball_and_raises_the_kl(norm, eps):
    exp = experiment()
    model, (x, y) = exp.model.eval(), batch(exp)
    x_adv = seeded(0, TRADES(eps, alpha=eps / 4, steps=10, norm=norm), model, x, y)
    delta = (x_adv - x).flatten(1)
    size = delta.abs().max(1).values if norm == "linf" else delta.norm(dim=1)
    assert size.max() <= eps + 1e-5 and x_adv.min() >= 0 and x_adv.max() <= 1

    def kl(z):
        with torch.no_grad():
            return F.kl_div(F.log_softmax(model(z), 1), F.softmax(model(x), 1), reduction="none").sum(1)

    noise = torch.empty_like(x).uniform_(-1, 1)
    if norm == "l2":
        noise = noise * eps / noise.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    else:
        noise = noise * eps
    random_kl = kl((x + noise).clamp(0, 1))
    assert (kl(x_adv) > random_kl).float().mean() > 0.9


def test_weighted_loss_interpolates_clean_and_adversarial_cross_entropy():
    exp = experiment("adv.method=weighted")
    task, (x, y) = exp.task, batch(exp)
    model = task.model.train()

    def loss(weight):
        task.adv = task.adv.model_copy(update={"weight": weight})
        task.steps = 0  # each loss from the first step's random start
        return task.loss(model, x, y).item()

    clean = F.cross_entropy(model(x), y).item()
    adversarial = F.cross_entropy(model(task.attack(model, x, y, training_noise(exp))), y).item()
    assert adversarial > clean
    assert loss(1.0) == pytest.approx(clean, rel=1e-5)
    assert loss(0.0) == pytest.approx(adversarial, rel=1e-5)
    assert loss(0.3) == pytest.approx(0.3 * clean + 0.7 * adversarial, rel=1e-5)


def test_attack_mode_decides_whether_batchnorm_sees_the_attack_steps():
    counts = {}
    for mode in ("eval", "train"):
        exp = experiment("model.batchnorm=true", "adv.method=pgd", f"adv.attack_mode={mode}")
        bn = next(m for m in exp.model.modules() if isinstance(m, nn.BatchNorm2d))
        exp.model.train()
        before = int(bn.num_batches_tracked)
        exp.task.loss(exp.model, *batch(exp))
        counts[mode] = int(bn.num_batches_tracked) - before
    assert counts == {"eval": 1, "train": 3 + 1}  # 3 attack steps + the loss in train mode


# ---------------------------------------------------------------- composition with penalties


def test_coupled_l2_step_equals_hand_written_sgd_on_the_adversarial_loss():
    lam, lr = 0.05, 0.1
    exp = experiment("adv.method=pgd", f"reg.l2={lam}", "reg.mode=coupled", "optim.name=sgd", f"optim.lr={lr}")
    model, (x, y) = exp.model.train(), batch(exp)
    hand = copy.deepcopy(model)
    exp.task.train_step(x, y)
    x_adv = PGD(EPS, steps=3)(hand, x, y, training_noise(exp))
    loss = F.cross_entropy(hand(x_adv), y)
    grads = torch.autograd.grad(loss, list(hand.parameters()))
    for (name, p), g, (_, new) in zip(hand.named_parameters(), grads, model.named_parameters()):
        penalized = name.endswith("weight") and p.dim() >= 2  # default selection: Linear/Conv weights
        expected = p - lr * (g + lam * p if penalized else g)
        torch.testing.assert_close(new, expected, msg=name)


def test_proximal_l1_gives_exact_zeros_under_adversarial_training():
    common = ["adv.method=fgsm-rs", "reg.l1=0.5", "optim.lr=0.01"]
    proximal = fit(experiment(*common, "reg.mode=proximal"), None, False)
    coupled = fit(experiment(*common, "reg.mode=coupled"), None, False)
    assert proximal["status"] == coupled["status"] == "ok"
    assert proximal["zeros_total"] > 5 and coupled["zeros_total"] == 0
    assert "penalty/l1" in proximal and "robust_test_acc" in proximal


# ---------------------------------------------------------------- evaluation


def test_restarts_only_lower_robust_accuracy_and_match_a_deterministic_attack():
    exp = experiment()
    fit(exp, None, False)
    model = exp.model
    x, y = exp.tensors["test"]
    deterministic = PGD(EPS, steps=5, random_start=False)
    reference = robust_accuracy(model, x, y, deterministic)
    assert robust_accuracy(model, x, y, deterministic, restarts=1, seed=0) == reference
    rs = PGD(EPS, steps=5)
    one, five = (robust_accuracy(model, x, y, rs, restarts=k, seed=0) for k in (1, 5))
    assert five <= one
    assert robust_accuracy(model, x, y, PGD(0.0), restarts=5, seed=0) == exp.task.evaluate(x, y)["acc"]


def test_summary_reports_curve_gap_sanity_and_best_versus_final():
    exp = experiment("adv.method=pgd", "train.epochs=3")
    history = []
    summary = fit(exp, None, False, on_epoch=history.append)
    val = [r["val_robust_acc"] for r in history]
    assert summary["robust_best_epoch"] == val.index(max(val)) + 1
    assert summary["robust_final_epoch"] == 3
    assert summary["robust_test_acc"] == summary["robust_final_acc"]  # recipe: restore_best false
    curve = dict(summary["robust_curve"])
    x, y = (t[:64] for t in exp.tensors["test"])  # adv.eval_examples=64
    assert sorted(curve) == [0.0, 0.05, 0.1] and curve[0.0] == exp.task.evaluate(x, y)["acc"]
    assert curve[0.1] == summary["robust_test_acc"] <= curve[0.05] <= curve[0.0]
    assert summary["robust_gap"] == pytest.approx(summary["robust_train_acc"] - summary["robust_test_acc"])
    names = [line.split("] ", 1)[1].split(":")[0] for line in summary["robust_sanity"]]
    assert names == ["monotone in eps", "more steps do not help the model", "large eps breaks the model",
                     "single step is weaker than PGD"]
    assert summary["robust_sanity_passed"] == all(s.startswith("[pass]") for s in summary["robust_sanity"])
    for record in history:
        assert record["gap_robust_acc"] == pytest.approx(record["train_robust_acc"] - record["val_robust_acc"])


def test_restore_best_on_robust_validation_accuracy():
    exp = experiment("adv.method=pgd", "train.epochs=3", "train.restore_best=true")
    summary = fit(exp, None, False)
    assert summary["best_epoch"] == summary["robust_best_epoch"]
    assert summary["robust_test_acc"] == summary["robust_best_acc"]


def test_standard_training_is_evaluated_under_attack():
    summary = fit(experiment("adv.method=none"), None, False)
    keys = {"robust_test_acc", "robust_val_acc", "robust_curve", "robust_sanity", "robust_best_acc"}
    assert keys <= set(summary)


# ---------------------------------------------------------------- the catastrophic-overfitting guard


def collapse_after_first_epoch(exp, saved):
    """After epoch 1: keep a copy of the model, then make it predict class 0 always and freeze it."""

    def on_epoch(record):
        if record["epoch"] == 1:
            saved.update(state_copy(exp.model))
            with torch.no_grad():
                exp.model.head.weight.zero_()
                exp.model.head.bias.copy_(torch.arange(10, 0, -1, dtype=torch.float32))
            for group in exp.task.optimizer.param_groups:
                group["lr"] = 0.0

    return on_epoch


@pytest.mark.parametrize("guard", [True, False])
def test_guard_stops_and_restores_on_a_collapse_of_robust_accuracy(guard):
    exp = experiment("adv.method=fgsm-rs", "adv.eps=0.02", "model.kind=mlp", "model.hidden=[64]",
                     "optim.lr=0.01", "data.n_train=1000", "train.batch_size=32", "train.epochs=4",
                     f"adv.guard={str(guard).lower()}", "adv.guard_drop=0.1")
    saved, history = {}, []
    collapse = collapse_after_first_epoch(exp, saved)
    member = Member.of(exp, None, lambda r: (history.append(r), collapse(r)))
    train_stack(ModuleStack(member), False)  # its own module, which the collapse changes
    summary = member.result.summary
    assert history[0]["val_robust_acc"] > 0.4 and history[1]["val_robust_acc"] < 0.15
    if not guard:
        assert summary["epochs_run"] == 4 and "stop_reason" not in summary
        return
    assert summary["epochs_run"] == 2 and summary["stopped_early"]
    assert "catastrophic overfitting" in summary["stop_reason"] and "restored epoch 1" in summary["stop_reason"]
    for name, value in exp.model.state_dict().items():
        torch.testing.assert_close(value, saved[name], msg=name)
    assert (summary["robust_best_epoch"], summary["robust_final_epoch"]) == (1, 2)
    assert summary["robust_final_acc"] < summary["robust_best_acc"] == summary["robust_test_acc"]


# ---------------------------------------------------------------- bad input


def test_model_without_class_logits_is_refused():
    for method in ("pgd", "trades"):
        exp = experiment(f"adv.method={method}")
        x, y = batch(exp)
        one_output = nn.Sequential(nn.Flatten(), nn.Linear(64, 1))
        with pytest.raises(UserError, match=r"logits of shape \(N, C\)"):
            exp.task.loss(one_output, x, y)


def run_cli(monkeypatch, capsys, tmp_path, *args):
    monkeypatch.setattr(sys, "argv", ["reglab", "run", "adversarial-l2", *args, "--out", str(tmp_path / "runs")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    return exit_info.value.code, capsys.readouterr().err


@pytest.mark.parametrize("override, message", [
    ("adv.eps=1.5", "L∞ budget above 1"),
    ("adv.eval_eps=[0.1,2]", "adv.eval_eps=2.0 is an L∞ budget above 1"),
    ("adv.steps=0", "adv.steps"),
    ("adv.eval_steps=0", "adv.eval_steps"),
    ("data.name=synthetic-linear", "need a classification dataset"),
    ("data.name=mnist1d", "inputs in [0, 1]"),
    ("adv.method=fgsm-rs adv.norm=l2 adv.eps=1", "fgsm-rs is an L∞ method"),
])  # fmt: skip
def test_bad_input_is_one_error_line_and_no_run_folder(monkeypatch, capsys, tmp_path, override, message):
    code, err = run_cli(monkeypatch, capsys, tmp_path, *override.split())
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err
    assert not (tmp_path / "runs").exists()


def test_autoattack_missing_is_a_user_error_before_training(monkeypatch, capsys, tmp_path):
    if importlib.util.find_spec("autoattack") is not None:
        pytest.skip("autoattack is installed")
    code, err = run_cli(monkeypatch, capsys, tmp_path, "adv.autoattack=true")
    assert code == 2 and "AutoAttack is not installed" in err and not (tmp_path / "runs").exists()


def test_negative_eps_through_the_command_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "reglab.cli", "run", "adversarial-l2", "adv.eps=-0.1",
                           "--out", str(tmp_path / "runs")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1
    assert "adv.eps" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- end to end


def test_tiny_run_end_to_end(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "reglab.cli", "run", "adversarial-l2", *TINY,
                           "--out", str(tmp_path / "runs")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    (folder,) = [p.parent for p in (tmp_path / "runs").glob("**/summary.json")]
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "ok"
    assert 0 <= summary["robust_test_acc"] <= dict(summary["robust_curve"])[0.0]
    assert (folder / "plots" / "robustness.png").is_file()
    first = json.loads((folder / "metrics.jsonl").read_text().splitlines()[0])
    assert {"val_robust_acc", "train_robust_acc", "gap_robust_acc", "penalty/l2"} <= set(first)
    assert "monotone in eps" in proc.stdout and "robust_test_acc" in proc.stdout
    # off a terminal, the robust evaluation reports its progress: ε ∈ {0, 0.05, 0.1}, train, val, checks
    assert "robust evaluation: part 6/6 sanity checks" in proc.stderr
