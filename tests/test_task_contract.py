"""Every task the engine can build fulfils the Task contract: each declared hook is there."""

import inspect

import pytest

from reglab.adversarial.task import AdversarialTask
from reglab.config import load_config
from reglab.gan.task import GanTask
from reglab.tasks.base import Task
from reglab.tasks.supervised import SupervisedTask
from reglab.train import prepare

CASES = [
    ("mlp-l2", ["data.n_train=100", "model.hidden=[8]"], SupervisedTask),
    ("adversarial-l2", ["data.name=digits", "data.n_train=100", "model.channels=[4]", "model.dense=[8]"],
     AdversarialTask),
    ("gan-ring", ["data.n_samples=300", "gan.g_hidden=[8]", "gan.d_hidden=[8]"], GanTask),
]  # fmt: skip
HOOKS = [name for name, member in vars(Task).items() if inspect.isfunction(member) and not name.startswith("_")]
ATTRIBUTES = list(Task.__annotations__)


@pytest.mark.parametrize(("recipe", "overrides", "cls"), CASES, ids=[c[0] for c in CASES])
def test_each_task_has_every_hook_the_engine_calls(recipe, overrides, cls):
    task = prepare(load_config(recipe, overrides)).task
    assert type(task) is cls
    assert {"targets", "train_step", "final_metrics", "write_plots"} <= set(HOOKS)
    for name in HOOKS:
        declared = inspect.signature(getattr(Task, name)).parameters
        actual = inspect.signature(getattr(task, name)).parameters
        assert list(actual)[: len(declared) - 1] == list(declared)[1:], name
    for name in ATTRIBUTES:
        assert hasattr(task, name), name
    assert task.stop_reason is None
