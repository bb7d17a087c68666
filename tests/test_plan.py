"""A model's plan is resolved once from its config; the task's torch objects and the stacked
backend both read it."""

import dataclasses

import torch

from reglab.config import load_config
from reglab.tasks.plan import plan_of
from reglab.train import Member, prepare
from reglab.train.stacked import StackedModels, plan


def test_the_plan_of_a_config():
    config = load_config("mlp-l2", ["reg=elastic", "reg.lam=1e-3", "reg.l1_ratio=0.2", "optim.name=adamw",
                                    "optim.weight_decay=0.01", "train.schedule=plateau", "train.monitor=val_acc"])
    p = plan_of(config)
    assert (p.optimizer, p.lr, p.weight_decay, p.penalty, p.lam) == ("adamw", config.optim.lr, 0.01, "elastic", 1e-3)
    assert p.settings == {"l1_ratio": 0.2} and p.schedule.kind == "plateau" and p.schedule.maximize
    assert plan_of(load_config("mlp-l2", ["reg=l2", "reg.l1_ratio=0.2"])).settings == {}  # only its own settings


def test_the_task_builds_its_torch_objects_from_the_plan():
    exp = prepare(load_config("mlp-l2", ["optim.name=sgd", "optim.momentum=0.9", "train.schedule=step",
                                         "train.step_size=2", "train.step_gamma=0.3"]))
    p, task = exp.task.plan, exp.task
    group = task.optimizer.param_groups[0]
    assert isinstance(task.optimizer, torch.optim.SGD) and (group["lr"], group["momentum"]) == (p.lr, 0.9)
    assert (task.scheduler.step_size, task.scheduler.gamma) == (2, 0.3)


def test_the_stacked_backend_reads_each_models_plan():
    configs = [load_config("mlp-l2", ["reg=elastic", f"reg.lam={lam}", f"reg.l1_ratio={a}"])
               for lam, a in ((1e-3, 0.2), (1e-2, 0.7))]
    members = [Member.of(prepare(c)) for c in configs]
    changed = dataclasses.replace(members[1].exp.task.plan, lam=0.5, settings={"l1_ratio": 0.9})
    members[1].exp.task.plan = changed  # the stack reads the plan, not the config
    group = StackedModels(members)
    assert group.vector(lambda m: plan(m).lam).tolist() == [1e-3, 0.5]
    assert group.penalty.settings["l1_ratio"].tolist() == [0.2, 0.9]
    assert group.optimizer.plan is members[0].exp.task.plan
