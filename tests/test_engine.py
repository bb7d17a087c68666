"""The engine's one loop: every single run is a stack of one, and it trains as a plain torch loop.

The reference is written here, independent of the engine: the config's own model, optimizer (with
reglab's regularizer attached) and shuffle, and per batch loss → backward → clip → step, nothing
else. A stacked single run (supervised Nets) agrees with it bit for bit where its kernels round as
the module's do, and to float rounding where they sum in another order (convolutions under ``vmap``;
group lasso's stacked coupled and decoupled forms; batch normalization of a CNN); a run by the
task's own step (other selections) agrees bit for bit.
"""

import inspect
import math

import pytest
import torch
import torch.nn.functional as F

from reglab.config import load_config
from reglab.runs import load_weights, read_run
from reglab.tasks.base import StackableTask
from reglab.train import Member, fit, prepare, run
from reglab.train.engine import stack_of
from reglab.train.module_stack import ModuleStack
from reglab.train.stacked import StackedModels

from test_vectorized import BATCHNORM_CNN, BIT_FOR_BIT, TINY_MLP

PLAIN = ["train.schedule=none", "train.early_stopping=null", "train.restore_best=false"]
"""Settings under which the plain loop below is the whole of a run's training."""


def plain_loop(config):
    """Train ``config``'s model with a plain torch loop; its weights, the mean batch loss of each
    epoch, and its validation loss and accuracy."""
    exp = prepare(config)
    model, optimizer, train = exp.model, exp.task.optimizer, config.train
    x, y = exp.tensors["train"]
    shuffle = torch.Generator().manual_seed(config.seed)
    batch_losses = []
    for _ in range(train.epochs):
        model.train()
        losses = []
        for idx in torch.randperm(len(x), generator=shuffle).split(train.batch_size):
            loss = F.cross_entropy(model(x[idx]), y[idx])
            optimizer.zero_grad()
            loss.backward()
            if train.clip_norm is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), train.clip_norm)
            if train.clip_value is not None:
                torch.nn.utils.clip_grad_value_(model.parameters(), train.clip_value)
            optimizer.step()
            losses.append(float(loss.detach()))
        batch_losses.append(sum(losses) / len(losses))
    model.eval()
    with torch.no_grad():
        xv, yv = exp.tensors["val"]
        out = model(xv)
        val = {"val_loss": float(F.cross_entropy(out, yv)), "val_acc": float((out.argmax(1) == yv).double().mean())}
    return {n: p.detach().clone() for n, p in model.state_dict().items()}, batch_losses, val


def train_both(recipe, overrides, tmp_path):
    config = load_config(recipe, overrides + PLAIN)
    result = run(config, tmp_path, progress=False)
    assert result.ok and "vectorized" not in result.summary
    return result, plain_loop(config)


def assert_batch_losses(result, reference):
    """The epochs' mean batch losses: one mean of per-example losses against a mean of batch means,
    equal to float rounding."""
    logged = [r["batch_loss"] for r in read_run(result.path)["metrics"]]
    assert len(logged) == len(reference)
    for a, b in zip(logged, reference):
        assert math.isclose(a, b, rel_tol=1e-6), (a, b)


BIT_FOR_BIT_ALONE = {**{case: overrides + variants[-1] for case, (overrides, variants) in BIT_FOR_BIT.items()},
                     "batch normalization": ["model.batchnorm=true"]}


@pytest.mark.parametrize("case", list(BIT_FOR_BIT_ALONE))
def test_a_stacked_single_run_is_the_plain_loop_bit_for_bit(case, tmp_path):
    result, (weights, batch_losses, val) = train_both("mlp-l2", TINY_MLP + BIT_FOR_BIT_ALONE[case], tmp_path)
    trained = load_weights(result.path)
    assert list(trained) == list(weights)
    assert all(torch.equal(trained[name], weights[name]) for name in weights), case
    assert result.summary["val_acc"] == val["val_acc"]
    assert math.isclose(result.summary["val_loss"], val["val_loss"], rel_tol=1e-6)
    assert_batch_losses(result, batch_losses)


@pytest.mark.parametrize("recipe, overrides", [
    ("cnn-l2", ["data.name=digits", "model.channels=[4,8]", "model.dense=[16]"]),
    ("mlp-l2", ["reg=group", "reg.mode=coupled", "reg.lam=0.05"]),
    ("mlp-l2", ["reg=group", "reg.mode=decoupled", "reg.lam=0.05"]),
    ("cnn-l2", BATCHNORM_CNN + ["model.batchnorm=true", "optim.name=sgd", "optim.lr=0.05"]),
])  # fmt: skip
def test_a_stacked_single_run_that_sums_in_another_order_is_the_plain_loop_to_rounding(recipe, overrides, tmp_path):
    overrides = ["data.n_train=300", "train.epochs=3", "model.hidden=[32,16]", "train.plots=false"] + overrides
    result, (weights, batch_losses, val) = train_both(recipe, overrides, tmp_path)
    trained = load_weights(result.path)
    for name in weights:
        torch.testing.assert_close(trained[name], weights[name], rtol=1e-5, atol=1e-6)
    assert math.isclose(result.summary["val_loss"], val["val_loss"], rel_tol=1e-5)
    assert_batch_losses(result, batch_losses)


def test_a_run_by_the_tasks_own_step_is_the_plain_loop_bit_for_bit(tmp_path):
    result, (weights, batch_losses, val) = train_both("mlp-l2", TINY_MLP + ["reg.on=weights - head.*"], tmp_path)
    trained = load_weights(result.path)
    assert all(torch.equal(trained[name], weights[name]) for name in weights)
    assert result.summary["val_acc"] == val["val_acc"]
    assert math.isclose(result.summary["val_loss"], val["val_loss"], rel_tol=1e-6)
    assert_batch_losses(result, batch_losses)


@pytest.mark.parametrize("recipe, overrides, backend", [
    ("mlp-l2", ["data.n_train=100"], StackedModels),
    ("cnn-l2", ["data.name=digits", "data.n_train=100", "model.channels=[4]", "model.dense=[8]"], StackedModels),
    ("mlp-l2", ["data.n_train=100", "reg=group", "reg.mode=coupled"], StackedModels),
    ("ridge-gd", [], StackedModels),
    ("mlp-l2", ["data.n_train=100", "model.batchnorm=true"], StackedModels),
    ("mlp-l2", ["data.n_train=100", "reg.on=weights - head.*"], ModuleStack),
    ("cnn-l2", ["data.name=digits", "data.n_train=100", "model.channels=[4]", "model.dense=[8]", "model.batchnorm=true"],
     StackedModels),
    ("adversarial-l2", ["data.name=digits", "data.n_train=100", "model.channels=[4]", "model.dense=[8]"], StackedModels),
    ("gan-ring", ["data.n_samples=300", "gan.g_hidden=[8]", "gan.d_hidden=[8]"], ModuleStack),
])  # fmt: skip
def test_a_single_run_takes_the_stacked_backend_where_it_can(recipe, overrides, backend):
    config = load_config(recipe, overrides)
    assert type(stack_of([Member.of(prepare(config))])) is backend


def test_what_a_stack_of_one_raises_fails_its_run_with_the_reason():
    exp = prepare(load_config("mlp-l2", TINY_MLP + ["reg.on=weights - head.*", "train.epochs=3"]))

    def broken_metrics(tensors):
        raise RuntimeError("a metric that cannot be computed")

    exp.task.epoch_metrics = broken_metrics
    summary = fit(exp)
    assert summary == {"status": "failed", "reason": "RuntimeError: a metric that cannot be computed", "epoch": 1}


def test_the_task_a_stack_trains_declares_what_the_stacked_backend_needs():
    task = prepare(load_config("mlp-l2", ["data.n_train=100", "model.hidden=[8]"])).task
    hooks = {name for name, member in vars(StackableTask).items() if inspect.isfunction(member) and not name.startswith("_")}
    assert hooks == {"criterion", "stacked_loss"}
    for name in hooks:
        declared = list(inspect.signature(getattr(StackableTask, name)).parameters)[1:]
        assert list(inspect.signature(getattr(task, name)).parameters) == declared, name
    for name in StackableTask.__annotations__:
        assert hasattr(task, name), name


def test_building_a_model_leaves_its_batch_normalization_untouched():
    model = prepare(load_config("cnn-l2", ["data.name=digits", "data.n_train=100", "model.channels=[4]",
                                           "model.dense=[8]", "model.batchnorm=true"])).model
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert len(norms) == 2
    for norm in norms:
        assert int(norm.num_batches_tracked) == 0
        assert torch.equal(norm.running_mean, torch.zeros_like(norm.running_mean))
        assert torch.equal(norm.running_var, torch.ones_like(norm.running_var))
