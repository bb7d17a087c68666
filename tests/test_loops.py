"""The Regularizer in the loops people write: closures (LBFGS, Lightning), param groups added
after attach, wrapped models (torch.compile, DataParallel, DDP, FSDP), the penalty in the loss
as well as attached."""

import copy
import warnings

import pytest
import torch
import torch.distributed as dist
from sklearn.linear_model import LinearRegression, Ridge
from torch import nn

import reglab as rl
from reglab import L1, L2, Regularizer, sklearn_params

from test_regularizer import assert_same_params, data, make_model, train


def train_with_closure(model, optimizer, steps):
    x, y = data()

    def closure():
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    return [optimizer.step(closure) for _ in range(steps)]


# -- closures -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda ps, wd=0.0: torch.optim.SGD(ps, lr=0.02, momentum=0.9, weight_decay=wd),
        lambda ps, wd=0.0: torch.optim.Adam(ps, lr=0.01, weight_decay=wd),
    ],
    ids=["sgd-momentum", "adam"],
)
def test_coupled_l2_with_a_closure_equals_weight_decay(make_opt):
    lam = 0.3
    a = make_model()
    b = copy.deepcopy(a)
    train_with_closure(a, make_opt(a.parameters(), wd=lam), 5)
    reg = Regularizer(b, L2(lam, on=rl.everything()))
    train_with_closure(b, reg.attach(make_opt(b.parameters())), 5)
    assert_same_params(a, b, atol=1e-6)


def test_closure_loss_includes_the_penalty_value():
    m = make_model()
    reg = Regularizer(m, L2(0.5))
    opt = reg.attach(torch.optim.SGD(m.parameters(), lr=0.0))  # lr 0: the weights stay put
    x, y = data()
    with torch.no_grad():
        expected = nn.functional.mse_loss(m(x), y) + 0.25 * sum(p.pow(2).sum() for _, p in rl.weights().resolve(m))
    (loss,) = train_with_closure(m, opt, 1)
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)


def test_decoupled_l2_with_a_closure_equals_adamw():
    lam = 0.2
    a = make_model()
    b = copy.deepcopy(a)
    train_with_closure(a, torch.optim.AdamW(a.parameters(), lr=0.01, weight_decay=lam), 5)
    reg = Regularizer(b, L2(lam, on=rl.everything()), mode="decoupled")
    train_with_closure(b, reg.attach(torch.optim.Adam(b.parameters(), lr=0.01)), 5)
    assert_same_params(a, b, atol=1e-6)


def test_lbfgs_with_coupled_l2_reaches_sklearn_ridge():
    g = torch.Generator().manual_seed(0)
    n, d, lam = 60, 5, 0.5
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    noise = 0.3 * torch.randn(n, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([2.0, -1.0, 0.5, 0.0, 3.0], dtype=torch.float64) + noise
    model = nn.Linear(d, 1).double()
    reg = Regularizer(model, L2(lam))  # weights only: the intercept is free, as in Ridge
    lbfgs = torch.optim.LBFGS(
        model.parameters(), lr=1, max_iter=200, tolerance_grad=1e-12, tolerance_change=1e-14, line_search_fn="strong_wolfe"
    )
    opt = reg.attach(lbfgs)

    def closure():
        opt.zero_grad()
        loss = nn.functional.mse_loss(model(x).squeeze(1), y)
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    ridge = Ridge(**sklearn_params(L2(lam), n_samples=n)).fit(x.numpy(), y.numpy())
    w, b = model.weight.detach().squeeze(0).numpy(), model.bias.item()
    assert abs(w - ridge.coef_).max() < 1e-4 and abs(b - ridge.intercept_) < 1e-4
    ols = LinearRegression().fit(x.numpy(), y.numpy())
    assert abs(ols.coef_ - ridge.coef_).max() > 1e-2  # the penalty matters at this λ


# -- param groups added after attach --------------------------------------------------------------


def unfreezing(model, opt_factory, reference_after_step=None, steps=(2, 3)):
    """Train the head only, then unfreeze the rest with add_param_group (lr 0.05) and go on."""
    body, head = list(model[:3].parameters()) + list(model[3:5].parameters()), list(model[6].parameters())
    for p in body:
        p.requires_grad_(False)
    opt = opt_factory(head)
    x, y = data()

    def run(n):
        for _ in range(n):
            opt.zero_grad()
            nn.functional.mse_loss(model(x), y).backward()
            opt.step()
            if reference_after_step is not None:
                reference_after_step(opt)

    run(steps[0])
    for p in body:
        p.requires_grad_(True)
    opt.add_param_group({"params": body, "lr": 0.05})
    run(steps[1])
    return opt


def test_late_param_groups_coupled_equals_weight_decay():
    lam = 0.3
    a = make_model()
    b = copy.deepcopy(a)
    unfreezing(a, lambda ps: torch.optim.SGD(ps, lr=0.1, weight_decay=lam))
    reg = Regularizer(b, L2(lam, on=rl.everything()))
    unfreezing(b, lambda ps: reg.attach(torch.optim.SGD(ps, lr=0.1)))
    assert_same_params(a, b, atol=1e-10)


def test_late_param_groups_decoupled_equals_adamw():
    lam = 0.3
    a = make_model()
    b = copy.deepcopy(a)
    start = copy.deepcopy(a)
    unfreezing(a, lambda ps: torch.optim.AdamW(ps, lr=0.01, weight_decay=lam))
    reg = Regularizer(b, L2(lam, on=rl.everything()), mode="decoupled")
    unfreezing(b, lambda ps: reg.attach(torch.optim.AdamW(ps, lr=0.01, weight_decay=0.0)))
    assert_same_params(a, b, atol=1e-10)
    assert not torch.equal(b[0].weight, start[0].weight)


def test_late_param_groups_proximal_equals_prox_by_hand():
    lam = 0.2
    a = make_model()
    b = copy.deepcopy(a)
    selected = {id(p) for _, p in rl.weights().resolve(a)}

    def soft_threshold(opt):
        with torch.no_grad():
            for group in opt.param_groups:
                for p in group["params"]:
                    if id(p) in selected and p.grad is not None:
                        p.copy_(torch.nn.functional.softshrink(p, group["lr"] * lam))

    unfreezing(a, lambda ps: torch.optim.SGD(ps, lr=0.1), reference_after_step=soft_threshold)
    reg = Regularizer(b, L1(lam), mode="proximal")
    unfreezing(b, lambda ps: reg.attach(torch.optim.SGD(ps, lr=0.1)))
    assert_same_params(a, b, atol=1e-12)
    assert (b[0].weight == 0).any()  # the unfrozen layer got the prox with its own group's lr


# -- penalty in the loss as well as attached --------------------------------------------------------


def test_penalty_in_the_loss_while_attached_warns_once():
    m = make_model()
    reg = Regularizer(m, L2(0.1))
    with pytest.warns(UserWarning, match="applied twice") as record:
        train(m, reg.attach(torch.optim.SGD(m.parameters(), lr=0.1)), 3, penalty_in_loss=reg.penalty)
    assert sum("applied twice" in str(w.message) for w in record) == 1


def test_no_double_counting_warning_without_double_counting():
    m = make_model()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reg = Regularizer(m, L2(0.1))
        train(m, torch.optim.SGD(m.parameters(), lr=0.1), 2, penalty_in_loss=reg.penalty)  # not attached
        opt = reg.attach(torch.optim.SGD(m.parameters(), lr=0.1))
        train(m, opt, 2)
        reg.values()
        with torch.no_grad():
            reg.penalty()
        train(m, opt, 1)


# -- wrapped models ---------------------------------------------------------------------------------

SELECTION = rl.weights() - rl.named("6.*")  # every weight but the head's
EXPECTED = ["0.weight", "3.weight"]


def check_wrapped(wrapped):
    """The wrapped model's selection has the plain names; train it 3 steps with the regularizer."""
    reg = Regularizer(wrapped, L2(0.5, on=SELECTION))
    assert [n for n, _ in SELECTION.resolve(wrapped)] == EXPECTED
    assert "6.weight" not in reg.describe().split("untouched")[0]
    train(wrapped, reg.attach(torch.optim.SGD(wrapped.parameters(), lr=0.1)), 3)


@pytest.fixture
def plain_and_reference():
    plain = make_model()
    reference = copy.deepcopy(plain)
    reg = Regularizer(reference, L2(0.5, on=SELECTION))
    train(reference, reg.attach(torch.optim.SGD(reference.parameters(), lr=0.1)), 3)
    return plain, reference


def unwrapped(model):
    return {n: p for n, p, _ in rl.selection.named_parameters(model)}


def assert_same_as(reference, wrapped, atol=1e-12):
    got = unwrapped(wrapped)
    for n, p in reference.named_parameters():
        torch.testing.assert_close(got[n], p, atol=atol, rtol=0, msg=n)


def test_torch_compile_names(plain_and_reference):
    plain, reference = plain_and_reference
    # the eager backend: the real torch.compile wrapper and dynamo tracing, without a C++ toolchain
    compiled = torch.compile(plain, backend="eager")
    assert next(iter(dict(compiled.named_parameters()))).startswith("_orig_mod.")
    check_wrapped(compiled)
    assert_same_as(reference, compiled)


def test_data_parallel_names(plain_and_reference):
    plain, reference = plain_and_reference
    wrapped = nn.DataParallel(plain)
    check_wrapped(wrapped)
    assert_same_as(reference, wrapped)


@pytest.fixture
def process_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/pg", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_ddp_names(process_group, plain_and_reference):
    plain, reference = plain_and_reference
    wrapped = nn.parallel.DistributedDataParallel(plain)
    check_wrapped(wrapped)
    assert_same_as(reference, wrapped)


def test_fsdp_and_checkpoint_wrapper_names(process_group, plain_and_reference):
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
    from torch.distributed.fsdp import FullyShardedDataParallel

    plain, reference = plain_and_reference
    plain[3] = checkpoint_wrapper(plain[3])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "FSDP is switching to use `NO_SHARD`")
        wrapped = FullyShardedDataParallel(plain, device_id=torch.device("cpu"), use_orig_params=True)
    raw = [n for n, _ in wrapped.named_parameters()]
    assert "_fsdp_wrapped_module.3._checkpoint_wrapped_module.weight" in raw
    check_wrapped(wrapped)
    assert_same_as(reference, wrapped)


def test_a_named_pattern_that_matches_nothing_warns():
    m = make_model()
    with pytest.warns(UserWarning, match=r"named\('head\.\*'\) matches no parameter"):
        Regularizer(m, L2(0.1, on=rl.weights() - rl.named("head.*")))
