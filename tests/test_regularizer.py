"""The Regularizer against torch's own optimizers and against the penalty added to the loss."""

import copy
import warnings

import pytest
import torch
from torch import nn

import reglab as rl
from reglab import L1, L2, ElasticNet, GroupLasso, Regularizer, Term, UserError


def make_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv1d(2, 3, 3), nn.Tanh(), nn.Flatten(), nn.Linear(3 * 4, 5), nn.LayerNorm(5), nn.Tanh(), nn.Linear(5, 2)
    ).double()


def data(seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 2, 6, generator=g, dtype=torch.float64), torch.randn(16, 2, generator=g, dtype=torch.float64)


def push_away_from_zero(model):
    """Make every weight |w| ≥ 0.2 so that a few small steps never cross the L1 kink."""
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.sign(p) * (p.abs() + 0.2))
            p[p == 0] = 0.3


def train(model, optimizer, steps, penalty_in_loss=None, scheduler=None):
    x, y = data()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        if penalty_in_loss is not None:
            loss = loss + penalty_in_loss()
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


def assert_same_params(a, b, atol=1e-6):
    for (n, p), (_, q) in zip(a.named_parameters(), b.named_parameters()):
        torch.testing.assert_close(p, q, atol=atol, rtol=0, msg=n)


def assert_moved(model, before):
    assert any(not torch.equal(p, q) for p, q in zip(model.parameters(), before.parameters()))


OPTIMIZERS = {
    "sgd": lambda ps: torch.optim.SGD(ps, lr=0.01),
    "sgd-momentum": lambda ps: torch.optim.SGD(ps, lr=0.01, momentum=0.9, nesterov=True),
    "adam": lambda ps: torch.optim.Adam(ps, lr=0.003),
}
PENALTIES = {
    "l2": lambda: L2(0.3),
    "l1": lambda: L1(0.05),
    "elastic": lambda: ElasticNet(0.1, l1_ratio=0.4),
    "group": lambda: GroupLasso(0.05),
}


@pytest.mark.parametrize("opt", OPTIMIZERS)
@pytest.mark.parametrize("pen", PENALTIES)
def test_coupled_equals_penalty_added_to_the_loss(pen, opt):
    a = make_model()
    push_away_from_zero(a)
    b = copy.deepcopy(a)
    start = copy.deepcopy(a)
    in_loss = Regularizer(a, PENALTIES[pen]())
    train(a, OPTIMIZERS[opt](a.parameters()), 4, penalty_in_loss=in_loss.penalty)
    hooked = Regularizer(b, PENALTIES[pen]())
    train(b, hooked.attach(OPTIMIZERS[opt](b.parameters())), 4)
    assert_moved(b, start)
    assert_same_params(a, b)
    # and the penalty really acted: without it the weights end elsewhere
    c = copy.deepcopy(start)
    train(c, OPTIMIZERS[opt](c.parameters()), 4)
    assert max((p - q).abs().max().item() for p, q in zip(b.parameters(), c.parameters())) > 1e-5


def test_coupled_l2_equals_sgd_weight_decay_with_momentum():
    lam = 0.05
    a = make_model()
    b = copy.deepcopy(a)
    train(a, torch.optim.SGD(a.parameters(), lr=0.02, momentum=0.9, weight_decay=lam), 6)
    reg = Regularizer(b, L2(lam, on=rl.everything()))
    train(b, reg.attach(torch.optim.SGD(b.parameters(), lr=0.02, momentum=0.9)), 6)
    assert_same_params(a, b, atol=1e-12)


def test_coupled_l2_equals_adam_weight_decay():
    lam = 0.05
    a = make_model()
    b = copy.deepcopy(a)
    train(a, torch.optim.Adam(a.parameters(), lr=0.01, weight_decay=lam), 6)
    reg = Regularizer(b, Term(L2(lam), on=rl.everything()))
    train(b, reg.attach(torch.optim.Adam(b.parameters(), lr=0.01)), 6)
    assert_same_params(a, b, atol=1e-10)


def test_decoupled_l2_with_adam_equals_adamw():
    lam = 0.1
    a = make_model()
    b = copy.deepcopy(a)
    start = copy.deepcopy(a)
    train(a, torch.optim.AdamW(a.parameters(), lr=0.01, weight_decay=lam), 6)
    reg = Regularizer(b, L2(lam, on=rl.everything()), mode="decoupled")
    train(b, reg.attach(torch.optim.Adam(b.parameters(), lr=0.01)), 6)
    assert_moved(b, start)
    assert_same_params(a, b, atol=1e-10)
    # coupled L2 with Adam is a different thing
    c = copy.deepcopy(start)
    train(c, Regularizer(c, L2(lam, on=rl.everything())).attach(torch.optim.Adam(c.parameters(), lr=0.01)), 6)
    assert max((p - q).abs().max().item() for p, q in zip(b.parameters(), c.parameters())) > 1e-4


def test_decoupled_reads_each_groups_lr_and_follows_schedulers():
    """Default selection (weights) + two param groups with their own lr + StepLR, against AdamW
    with timm-style groups (decay on weights only)."""
    lam = 0.1
    a = make_model()
    b = copy.deepcopy(a)

    def groups(m, wd):
        w = {id(p) for _, p in rl.weights().resolve(m)}
        conv = list(m[0].parameters())
        rest_w = [p for p in list(m.parameters())[2:] if id(p) in w]
        rest_nw = [p for p in list(m.parameters())[2:] if id(p) not in w]
        return [
            {"params": [conv[0]], "lr": 0.03, "weight_decay": wd},
            {"params": [conv[1]], "lr": 0.03, "weight_decay": 0.0},
            {"params": rest_w, "lr": 0.01, "weight_decay": wd},
            {"params": rest_nw, "lr": 0.01, "weight_decay": 0.0},
        ]

    opt_a = torch.optim.AdamW(groups(a, lam))
    train(a, opt_a, 6, scheduler=torch.optim.lr_scheduler.StepLR(opt_a, 2, gamma=0.5))
    reg = Regularizer(b, L2(lam), mode="decoupled")
    opt_b = reg.attach(torch.optim.Adam(groups(b, 0.0)))
    train(b, opt_b, 6, scheduler=torch.optim.lr_scheduler.StepLR(opt_b, 2, gamma=0.5))
    assert_same_params(a, b, atol=1e-10)


@pytest.mark.parametrize("pen", ["l1", "elastic", "group"])
def test_decoupled_nonl2_is_a_gradient_step_before_the_optimizer(pen):
    a = make_model()
    push_away_from_zero(a)
    b = copy.deepcopy(a)
    p_ = PENALTIES[pen]()
    reg = Regularizer(b, PENALTIES[pen](), mode="decoupled")
    opt = reg.attach(torch.optim.SGD(b.parameters(), lr=0.01))
    train(b, opt, 1)
    # by hand: w ← w − lr·∇R(w), then the plain SGD step with the data gradient taken at the old w
    x, y = data()
    nn.functional.mse_loss(a(x), y).backward()
    with torch.no_grad():
        sel = {id(p) for _, p in rl.weights().resolve(a)}
        for p in a.parameters():
            if id(p) in sel:
                p.sub_(0.01 * p_.grad(p))
            p.sub_(0.01 * p.grad)
    assert_same_params(a, b, atol=1e-12)


@pytest.mark.parametrize("pen", ["l1", "l2", "elastic", "group"])
def test_proximal_is_prox_after_the_step(pen):
    a = make_model()
    b = copy.deepcopy(a)
    p_ = PENALTIES[pen]()
    reg = Regularizer(b, PENALTIES[pen](), mode="proximal")
    train(b, reg.attach(torch.optim.SGD(b.parameters(), lr=0.5)), 1)
    x, y = data()
    nn.functional.mse_loss(a(x), y).backward()
    with torch.no_grad():
        sel = {id(p) for _, p in rl.weights().resolve(a)}
        for p in a.parameters():
            p.sub_(0.5 * p.grad)
            if id(p) in sel:
                p.copy_(p_.prox(p, 0.5))
    assert_same_params(a, b, atol=1e-12)


def test_proximal_l1_gives_exact_zeros_and_coupled_does_not():
    zeros = {}
    for mode in ["proximal", "coupled"]:
        m = make_model()
        reg = Regularizer(m, L1(0.05), mode=mode)
        train(m, reg.attach(torch.optim.SGD(m.parameters(), lr=0.05)), 30)
        zeros[mode] = sum(int((p == 0).sum()) for _, p in rl.weights().resolve(m))
    assert zeros["proximal"] > 10
    assert zeros["coupled"] == 0


def test_params_without_grad_are_left_alone():
    """Frozen params (not in the optimizer) and params that got no gradient this step are skipped,
    as the optimizer skips them."""
    m = make_model()
    m.append(nn.Linear(2, 2).double())  # never used in forward: in the optimizer, but grad stays None
    m[6].weight.requires_grad_(False)  # frozen, and left out of the optimizer
    frozen, unused = m[6].weight.clone(), m[7].weight.clone()
    for mode in ["coupled", "decoupled", "proximal"]:
        reg = Regularizer(m, L2(0.5), mode=mode)
        opt = reg.attach(torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1))
        opt.zero_grad()
        nn.functional.mse_loss(m[:7](data()[0]), data()[1]).backward()
        opt.step()
        reg.detach()
    assert torch.equal(m[6].weight, frozen)
    assert torch.equal(m[7].weight, unused)


def test_attach_checks_the_optimizer_holds_the_parameters():
    m = make_model()
    reg = Regularizer(m, L2(1e-3))
    with pytest.raises(UserError, match="does not hold"):
        reg.attach(torch.optim.SGD(m[6].parameters(), lr=0.1))


def test_attach_warns_about_double_decay():
    m = make_model()
    with pytest.warns(UserWarning, match="decayed twice"):
        Regularizer(m, L2(1e-3)).attach(torch.optim.AdamW(m.parameters()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Regularizer(m, L2(1e-3)).attach(torch.optim.Adam(m.parameters()))


def test_detach_and_reattach():
    lam = 0.2
    a, b = make_model(), make_model()
    reg = Regularizer(b, L2(lam, on=rl.everything()))
    reg.attach(torch.optim.SGD(b.parameters(), lr=0.1))
    reg.detach()
    opt = reg.attach(torch.optim.SGD(b.parameters(), lr=0.1))  # the first optimizer is gone
    train(b, opt, 3)
    train(a, torch.optim.SGD(a.parameters(), lr=0.1, weight_decay=lam), 3)
    assert_same_params(a, b, atol=1e-12)
    assert reg.steps == 3


def test_manual_before_and_after_step_equal_attach():
    a, b = make_model(), make_model()
    terms = lambda: [L2(0.1, on=rl.named("0.*")), L1(0.01, on=rl.named("3.*"), mode="proximal")]  # noqa: E731
    ra = Regularizer(a, terms())
    train(a, ra.attach(torch.optim.SGD(a.parameters(), lr=0.1)), 3)
    rb = Regularizer(b, terms())
    opt = torch.optim.SGD(b.parameters(), lr=0.1)
    x, y = data()
    for _ in range(3):
        opt.zero_grad()
        nn.functional.mse_loss(b(x), y).backward()
        rb.before_step(opt)
        opt.step()
        rb.after_step(opt)
    assert_same_params(a, b, atol=1e-12)
    assert ra.steps == rb.steps == 3


def test_warmup_scales_lambda_by_step():
    sched = rl.warmup(4)
    assert [sched(t) for t in range(6)] == [0.0, 0.25, 0.5, 0.75, 1.0, 1.0]
    assert rl.constant()(0) == rl.constant()(10**6) == 1.0
    assert rl.warmup(0)(0) == 1.0
    # applied: with no data gradient, SGD moves w by lr·λ·factor(t)·w at step t
    m = nn.Linear(3, 1, bias=False).double()
    reg = Regularizer(m, L2(0.5, schedule=rl.warmup(4)))
    opt = reg.attach(torch.optim.SGD(m.parameters(), lr=0.1))
    for t in range(6):
        w = m.weight.detach().clone()
        with torch.no_grad():  # a value to check, not a loss term: no double-counting warning
            assert reg.penalty().item() == pytest.approx(sched(t) * 0.25 * (w**2).sum().item())
        opt.zero_grad()
        (0 * m(torch.ones(1, 3, dtype=torch.float64)).sum()).backward()
        opt.step()
        torch.testing.assert_close(m.weight.detach(), w * (1 - 0.1 * 0.5 * sched(t)), atol=1e-15, rtol=0)
    assert reg.state_dict() == {"steps": 6}
    reg.load_state_dict({"steps": 1})
    assert reg.steps == 1


def test_penalty_is_differentiable_and_values_are_named():
    m = make_model()
    reg = Regularizer(
        m,
        [L2(0.1), L1(0.01, on=rl.named("6.*")), L2(0.2, on=rl.weights() - rl.named("6.*")), L2(0.3)],
    )
    vals = reg.values()
    assert list(vals) == ["l2", "l1:6.*", "l2:weights - 6.*", "l2#2"]
    w = dict(m.named_parameters())
    by_hand = {
        "l2": 0.05 * sum(w[n].pow(2).sum() for n in ["0.weight", "3.weight", "6.weight"]),
        "l1:6.*": 0.01 * (w["6.weight"].abs().sum() + w["6.bias"].abs().sum()),
        "l2:weights - 6.*": 0.1 * sum(w[n].pow(2).sum() for n in ["0.weight", "3.weight"]),
        "l2#2": 0.15 * sum(w[n].pow(2).sum() for n in ["0.weight", "3.weight", "6.weight"]),
    }
    for k, v in by_hand.items():
        assert vals[k] == pytest.approx(v.item())
    total = reg.penalty()
    assert total.item() == pytest.approx(sum(vals.values()))
    total.backward()
    torch.testing.assert_close(m[6].bias.grad, 0.01 * torch.sign(m[6].bias.detach()))
    torch.testing.assert_close(m[0].weight.grad, (0.1 + 0.2 + 0.3) * m[0].weight.detach())


def test_describe_lists_terms_shapes_and_untouched():
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 36, 8), nn.Linear(8, 3))
    reg = Regularizer(m, [L2(1e-4, on=rl.weights() - rl.named("4.*")), GroupLasso(1e-3, on=rl.modules(nn.Conv2d))])
    text = reg.describe()
    assert "L2(lam=0.0001)" in text and "GroupLasso(lam=0.001)" in text and "mode=coupled" in text
    assert "0.weight  (4, 1, 3, 3)" in text and "3.weight  (8, 144)" in text
    assert "4.weight" not in text.split("untouched")[0].split("term group")[0]
    assert "untouched: 5 params" in text and "2 norms" in text and "1 weight)" in text


def test_user_errors():
    m = make_model()
    with pytest.raises(UserError):
        Regularizer(m, L2(0.1), mode="sideways")
    with pytest.raises(UserError):
        Regularizer(m, Term(L2(0.1), mode="later"))
    with pytest.raises(UserError, match="selects no parameter"), pytest.warns(UserWarning, match="matches no parameter"):
        Regularizer(m, L2(0.1, on=rl.named("nothing.*")))
    with pytest.raises(UserError):
        Regularizer(m, "l2")
    with pytest.raises(UserError):
        Regularizer(m, L2(0.1)).attach(object())
    with pytest.raises(UserError):
        rl.warmup(-1)


def test_from_spec_and_string_selection():
    m = make_model()
    reg = Regularizer.from_spec(m, "elastic", 0.1, l1_ratio=0.3, mode="proximal", on="weights - 6.*", warmup_steps=10)
    (term,) = reg.terms
    assert isinstance(term.penalty, ElasticNet) and term.penalty.l1_ratio == 0.3
    assert list(reg.values()) == ["elastic:weights - 6.*"]
    assert "mode=proximal" in reg.describe() and "warmup(10)" in reg.describe()
    assert reg.values() == {"elastic:weights - 6.*": 0.0}  # warm-up starts at 0
    empty = Regularizer.from_spec(m, "none", 0.0)
    assert empty.values() == {} and empty.penalty().item() == 0.0
    train(m, empty.attach(torch.optim.SGD(m.parameters(), lr=0.1)), 1)


class WithAWeightOfItsOwn(nn.Module):
    """A weight registered on the module and used by hand: no layer owns it."""

    def __init__(self):
        super().__init__()
        self.inp = nn.Linear(4, 8)
        self.proj = nn.Parameter(torch.randn(8, 8))
        self.scale = nn.Parameter(torch.ones(8))  # 1-D: not a weight matrix
        self.pos_embed = nn.Parameter(torch.zeros(1, 8))  # an embedding by its name
        self.norm = nn.LayerNorm(8)
        self.emb = nn.Embedding(10, 8)

    def forward(self, x):
        return self.norm(self.inp(x) @ self.proj * self.scale + self.pos_embed)


def nobodys_warnings(caught):
    return [w for w in caught if "no term touches" in str(w.message)]


def test_a_weight_that_is_nobodys_is_warned_about_once_with_the_fix():
    model = WithAWeightOfItsOwn()
    reg = Regularizer(model, L2(0.1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        reg.describe()
        reg.attach(torch.optim.SGD(model.parameters(), lr=0.1))
        reg.describe()
    (warning,) = nobodys_warnings(caught)
    message = str(warning.message)
    assert "proj (8, 8)" in message and 'on=rl.weights() | rl.named("proj")' in message
    for other in ("scale", "pos_embed", "norm", "emb", "inp"):
        assert other not in message.replace("rl.weights()", "")
    fixed = Regularizer(model, L2(0.1, on=rl.weights() | rl.named("proj")))  # the fix it names
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fixed.describe()
        fixed.attach(torch.optim.SGD(model.parameters(), lr=0.1))
    assert not nobodys_warnings(caught)
    assert any(p is model.proj for _, p in fixed.terms[0].on.resolve(model))


def test_attach_warns_about_a_weight_that_is_nobodys():
    model = WithAWeightOfItsOwn()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Regularizer(model, L2(0.1)).attach(torch.optim.SGD(model.parameters(), lr=0.1))
    assert len(nobodys_warnings(caught)) == 1
    with warnings.catch_warnings(record=True) as caught:  # an optimizer that does not hold it
        warnings.simplefilter("always")
        Regularizer(model, L2(0.1)).attach(torch.optim.SGD(model.inp.parameters(), lr=0.1))
    assert not nobodys_warnings(caught)


def test_a_weight_normed_layers_direction_is_not_nobodys():
    """weights() takes weight norm's magnitude g and leaves the direction v to its layer on purpose."""
    model = nn.Sequential(nn.utils.parametrizations.weight_norm(nn.Linear(4, 6)), nn.Tanh(), nn.Linear(6, 2))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Regularizer(model, L2(0.1)).describe()
    assert not nobodys_warnings(caught)


def test_warnings_point_at_the_users_line():
    """A warning about the user's code names the user's line, also when reglab notices the problem
    inside torch's optimizer step hook."""
    m = make_model()
    x, y = data()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Regularizer(m, L2(0.1)).attach(torch.optim.AdamW(m.parameters()))  # weight decay twice
        Regularizer(m, L2(0.1, on=rl.weights() - rl.named("head.*")))  # a pattern that matches nothing
        reg = Regularizer(m, L2(0.1))
        opt = reg.attach(torch.optim.SGD(m.parameters(), lr=0.1))
        (nn.functional.mse_loss(m(x), y) + reg.penalty()).backward()
        opt.step()  # the penalty in the loss and attached: noticed in the step's hook
    for words in ("decayed twice", "named('head.*') matches no parameter", "applied twice"):
        (found,) = [w for w in caught if words in str(w.message)]
        assert found.category is UserWarning and found.filename == __file__, (words, found.filename)


def test_describe_counts_read_singular_and_plural():
    text = Regularizer(nn.Sequential(nn.Linear(3, 1, bias=False), nn.LayerNorm(1)), L2(0.1)).describe()
    assert "    = 1 tensor, 3 values\n" in text
    assert text.endswith("untouched: 2 params, 2 values (2 norms)")
    text = Regularizer(nn.Linear(1, 1), L2(0.1)).describe()
    assert "    = 1 tensor, 1 value\n" in text and text.endswith("untouched: 1 param, 1 value (1 bias)")


def test_a_term_can_be_named():
    m = make_model()
    reg = Regularizer(m, [L2(0.1), Term(L1(0.01, on=rl.named("6.*")), name="head")])
    assert list(reg.values()) == ["l2", "head"]
    assert "term head: L1(lam=0.01)" in reg.describe()
    head = 0.01 * sum(p.abs().sum() for p in m[6].parameters()).item()
    assert reg.values()["head"] == pytest.approx(head)
    with pytest.raises(UserError, match="name= must be a non-empty string"):
        Term(L2(0.1), name=" ")
