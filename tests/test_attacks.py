"""Attacks and their evaluation, checked against torchattacks on a small digits classifier."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from reglab.attacks import FGSM, PGD
from reglab.attacks_eval import autoattack_accuracy, robust_accuracy, robust_curve, sanity_checks
from reglab.errors import UserError

torchattacks = pytest.importorskip("torchattacks")


def _cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
        nn.Flatten(), nn.Dropout(0.1), nn.Linear(32 * 16, 10),
    )


@pytest.fixture(scope="module")
def digits():
    """A small CNN trained for ~2 s on sklearn's digits (x/16 in [0, 1]); 400 held-out examples."""
    from sklearn.datasets import load_digits

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    d = load_digits()
    x = torch.tensor(d.data / 16.0, dtype=torch.float32).view(-1, 1, 8, 8)
    y = torch.tensor(d.target)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=g)
    tr, te = perm[:1200], perm[1200:1600]
    torch.manual_seed(0)
    model = _cnn()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(15):
        p = tr[torch.randperm(len(tr), generator=g)]
        for i in range(0, len(p), 64):
            opt.zero_grad()
            F.cross_entropy(model(x[p[i : i + 64]]), y[p[i : i + 64]]).backward()
            opt.step()
    opt.zero_grad(set_to_none=True)
    model.eval()
    yield model, x[te], y[te]
    torch.set_num_threads(threads)


def _ta(atk):
    """A torchattacks attack in reglab's calling convention."""
    return lambda model, x, y: atk(x, y)


def _acc(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_fixture_model_is_accurate(digits):
    model, x, y = digits
    assert _acc(model, x, y) > 0.9


# ---------------------------------------------------------------- agreement with torchattacks
# torchattacks switches the model to eval() itself and back with train(); the fixture model is
# already in eval mode and reglab's robust_accuracy evaluates in eval mode, so both attack and
# score the same function. Seeding the global RNG identically gives both the same random start.


def test_fgsm_matches_torchattacks(digits):
    model, x, y = digits
    eps = 0.1
    ours = FGSM(eps)(model, x, y)
    ref = torchattacks.FGSM(model, eps)(x, y)
    assert (ours - ref).abs().max() < 1e-6
    a, b = robust_accuracy(model, x, y, FGSM(eps)), robust_accuracy(model, x, y, _ta(torchattacks.FGSM(model, eps)))
    assert 0.2 < a < 0.8 and abs(a - b) <= 0.01


@pytest.mark.parametrize("eps", [0.05, 0.1])
def test_pgd_linf_matches_torchattacks(digits, eps):
    model, x, y = digits
    alpha = 2.5 * eps / 10
    torch.manual_seed(1)
    a = robust_accuracy(model, x, y, PGD(eps, steps=10))
    torch.manual_seed(1)
    b = robust_accuracy(model, x, y, _ta(torchattacks.PGD(model, eps, alpha, 10, random_start=True)))
    assert 0.2 < a < 0.9, a  # intermediate, so that the comparison means something
    assert abs(a - b) <= 0.01, (a, b)
    torch.manual_seed(2)
    ours = PGD(eps, steps=10)(model, x, y)
    torch.manual_seed(2)
    ref = torchattacks.PGD(model, eps, alpha, 10, random_start=True)(x, y)
    assert (ours - ref).abs().max() < 1e-5


def test_pgd_l2_matches_torchattacks(digits):
    model, x, y = digits
    eps = 0.5
    # Without random start the two algorithms are the same: agreement up to rounding.
    a = robust_accuracy(model, x, y, PGD(eps, norm="l2", random_start=False))
    b = robust_accuracy(model, x, y, _ta(torchattacks.PGDL2(model, eps, 0.25 * eps, 10, random_start=False)))
    assert 0.2 < a < 0.8 and abs(a - b) <= 0.01, (a, b)
    # reglab normalizes ∇ of the summed loss by ‖g‖ + 1e-12, torchattacks ∇ of the mean by ‖g‖ + eps_for_division;
    # the default 1e-10 matters where the loss underflows to 0 (‖∇‖ ~ 1e-7), so make the two the same.
    ours = PGD(eps, norm="l2", random_start=False)(model, x, y)
    ref = torchattacks.PGDL2(model, eps, 0.25 * eps, 10, random_start=False, eps_for_division=1e-12 / len(x))(x, y)
    assert (ours - ref).abs().max() < 1e-5
    # With a random start reglab draws uniformly in the ball, torchattacks with a uniform radius.
    torch.manual_seed(1)
    a = robust_accuracy(model, x, y, PGD(eps, norm="l2"))
    b = robust_accuracy(model, x, y, _ta(torchattacks.PGDL2(model, eps, 0.25 * eps, 10, random_start=True)))
    assert abs(a - b) <= 0.02, (a, b)


# ---------------------------------------------------------------- properties


@pytest.mark.parametrize(
    "attack",
    [FGSM(0.1), PGD(0.1), PGD(0.1, restarts=3), PGD(0.5, norm="l2"), PGD(0.5, norm="l2", restarts=3),
     PGD(3.0, alpha=2.0, steps=3, norm="l2")],
    ids=repr,
)
def test_adv_within_ball_and_box(digits, attack):
    model, x, y = digits
    x = x[:100]
    x_adv = attack(model, x, y[:100])
    assert x_adv.shape == x.shape and not x_adv.requires_grad
    assert x_adv.min() >= 0 and x_adv.max() <= 1
    d = (x_adv - x).flatten(1)
    size = d.abs().amax(1) if attack.norm == "linf" else d.norm(dim=1)
    assert (size <= attack.eps * (1 + 1e-5) + 1e-6).all()
    assert (size > 0.5 * attack.eps).float().mean() > 0.5  # it does move


def test_l2_random_start_is_uniform_in_the_ball():
    """With a negligible step, x_adv is the start: its radius r has (r/ε)^d ~ U(0, 1)."""
    torch.manual_seed(0)
    d, eps = 64, 0.5
    x = torch.full((4000, d), 0.5)  # the box [0, 1] does not cut the ball of radius 0.5
    model = nn.Linear(d, 3)
    x_adv = PGD(eps, alpha=1e-9, steps=1, norm="l2")(model, x, torch.zeros(4000, dtype=torch.long))
    u = ((x_adv - x).norm(dim=1) / eps).pow(d)
    assert u.max() <= 1 + 1e-3
    for q in (0.1, 0.5, 0.9):
        assert abs(u.quantile(q).item() - q) < 0.04


def test_default_step_size_is_madry():
    assert PGD(0.1, steps=10).step_size == pytest.approx(0.025)
    assert PGD(1.0, steps=5, norm="l2").step_size == pytest.approx(0.5)
    assert PGD(0.1, alpha=0.01).step_size == 0.01


def test_training_flags_restored_exactly(digits):
    model, x, y = digits
    model.train()
    model[5].eval()  # a mixed state: dropout in eval, the rest in train
    before = [m.training for m in model.modules()]
    seen = []
    hook = model[5].register_forward_pre_hook(lambda m, inp: seen.append(m.training))
    try:
        for attack in (FGSM(0.1), PGD(0.1, steps=2, restarts=2), PGD(0.5, norm="l2", steps=2)):
            attack(model, x[:20], y[:20])
            attack.success(model, x[:20], y[:20])
            assert [m.training for m in model.modules()] == before
        assert seen and not any(seen)  # eval mode during the attack
        model.train()
        seen.clear()
        PGD(0.1, steps=2, eval_mode=False)(model, x[:20], y[:20])
        assert seen and all(seen)  # eval_mode=False leaves train mode on
        assert all(m.training for m in model.modules())
        with pytest.raises(UserError):
            PGD(0.1, steps=2)(model, x[:20] * 3, y[:20])
        assert all(m.training for m in model.modules())
    finally:
        hook.remove()
        model.eval()


def test_no_parameter_grad_and_works_under_no_grad(digits):
    model, x, y = digits
    with torch.no_grad():
        x_adv = PGD(0.1, steps=3)(model, x[:50], y[:50])
        _, fooled = FGSM(0.1).success(model, x[:50], y[:50])
    assert (x_adv != x[:50]).any() and fooled.any()
    assert all(p.grad is None for p in model.parameters())


def test_restarts_never_lower_success(digits):
    model, x, y = digits
    x, y = x[:200], y[:200]
    for atk1, atk5 in [(PGD(0.1), PGD(0.1, restarts=4)), (PGD(0.5, norm="l2"), PGD(0.5, norm="l2", restarts=4))]:
        torch.manual_seed(3)
        x1, fooled1 = atk1.success(model, x, y)
        torch.manual_seed(3)
        x5, fooled5 = atk5.success(model, x, y)
        assert not (fooled1 & ~fooled5).any()  # the first restart is the single run
        assert fooled5.sum() > fooled1.sum()  # and the others find more
        with torch.no_grad():
            assert torch.equal(fooled5, model(x5).argmax(1) != y)
        torch.manual_seed(3)
        a1 = robust_accuracy(model, x, y, atk1)
        torch.manual_seed(3)
        assert robust_accuracy(model, x, y, atk5) <= a1


def test_robust_curve(digits):
    model, x, y = digits
    curve = robust_curve(model, x, y, [0, 0.05, 0.1], steps=5)
    assert [e for e, _ in curve] == [0, 0.05, 0.1]
    assert curve[0][1] == pytest.approx(_acc(model, x, y))
    assert curve[0][1] > curve[1][1] > curve[2][1]
    assert robust_curve(model, x, y, [0.1], steps=5) == curve[2:]  # a point does not depend on the others


def test_sanity_checks_pass_on_a_normal_model(digits):
    model, x, y = digits
    for norm, eps in [("linf", 0.1), ("l2", 0.5)]:
        checks = sanity_checks(model, x[:200], y[:200], eps, norm=norm, steps=5)
        assert len(checks) == 4
        assert all(c.passed for c in checks), "\n".join(map(str, checks))


class _Masked(nn.Module):
    """Gradient masking: the logits carry no gradient back to the input."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        with torch.no_grad():
            out = self.net(x)
        return out + 0 * x.flatten(1).sum(1, keepdim=True)


def test_sanity_checks_catch_gradient_masking(digits):
    model, x, y = digits
    checks = {c.name: c for c in sanity_checks(_Masked(model), x[:200], y[:200], 0.1, steps=5)}
    assert not checks["large eps breaks the model"].passed, checks
    assert "FAIL" in str(checks["large eps breaks the model"])


# ---------------------------------------------------------------- user errors


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: FGSM(-0.1), "eps must be a finite number >= 0"),
        (lambda: PGD(float("nan")), "eps must be a finite number >= 0"),
        (lambda: PGD(1.5), "larger than 1"),
        (lambda: PGD(0.1, steps=0), "steps must be an integer >= 1"),
        (lambda: PGD(0.1, restarts=0), "restarts must be an integer >= 1"),
        (lambda: PGD(0.1, restarts=2, random_start=False), "random_start"),
        (lambda: PGD(0.1, alpha=0), "alpha"),
        (lambda: PGD(0.1, norm="l1"), "unknown attack norm 'l1'"),
    ],
)
def test_bad_parameters(make, match):
    with pytest.raises(UserError, match=match):
        make()


def test_l2_eps_may_exceed_one():
    assert PGD(3.0, norm="l2").eps == 3.0


class _Out(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.lin = nn.Linear(64, 10)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.lin(x.flatten(1)))


@pytest.mark.parametrize(
    "fn, match",
    [
        (lambda z: z[:, 0], r"logits of shape \(N, C\).*returned \(8,\).*regression"),
        (lambda z: z[:, :1], r"logits of shape \(N, C\).*returned \(8, 1\).*regression"),
        (lambda z: z.reshape(1, -1), r"logits of shape \(N, C\).*N=8.*returned \(1, 80\)"),
        (lambda z: z[:, :3], r"labels must be in \[0, 2\].*saw 9"),
    ],
)
@pytest.mark.parametrize("attack", [FGSM(0.1), PGD(0.1, steps=2), PGD(0.5, norm="l2", steps=2)], ids=repr)
def test_bad_model_output(digits, fn, match, attack):
    _, x, y = digits
    x, y = x[:8], y[:8].clone()
    y[0] = 9
    with pytest.raises(UserError, match=match):
        attack(_Out(fn), x, y)


@pytest.mark.parametrize(
    "xy, match",
    [
        (lambda x, y: ((x - 0.5) / 0.3, y), r"\[0, 1\] \(saw min -1.667, max 1.667\).*normalization"),
        (lambda x, y: (x, y - 1), "labels must be class indices >= 0"),
        (lambda x, y: (x, y.float()), "integer class indices"),
        (lambda x, y: (x, y[:-1]), r"labels must have shape \(N,\)"),
        (lambda x, y: (x.flatten(), y), "batch dimension"),
        (lambda x, y: (x.long(), y), "floating point"),
    ],
)
def test_bad_inputs(digits, xy, match):
    model, x, y = digits
    x, y = xy(x[:16].clone(), y[:16].clone())
    with pytest.raises(UserError, match=match):
        PGD(0.1, steps=2)(model, x, y)


def test_bad_input_range_in_evaluation(digits):
    model, x, y = digits
    with pytest.raises(UserError, match="normalization"):
        robust_accuracy(model, x * 2, y, PGD(0.1))
    with pytest.raises(UserError, match="batch_size"):
        robust_accuracy(model, x, y, PGD(0.1), batch_size=0)


def test_autoattack_missing_is_a_clear_error(digits, monkeypatch):
    import sys

    model, x, y = digits
    monkeypatch.setitem(sys.modules, "autoattack", None)  # import fails even where it is installed
    with pytest.raises(UserError, match=r"AutoAttack is not installed: pip install .*fra31/auto-attack"):
        autoattack_accuracy(model, x[:10], y[:10], eps=0.1)


def test_empty_batch(digits):
    model, x, y = digits
    x_adv, fooled = PGD(0.1).success(model, x[:0], y[:0])
    assert x_adv.shape == (0, 1, 8, 8) and fooled.shape == (0,)
    assert not math.isnan(robust_accuracy(model, x[:5], y[:5], PGD(0.1)))
