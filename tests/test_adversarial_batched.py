"""Adversarial training of K models at once (``reglab.train.batched``) gives each model its run alone.

The attacks act on a stack of models (``Attack.stacked``) and the module form is the same code with
a stack of one, so on CPU a model's adversarial examples, losses, weights and metrics are the same
bit for bit alone (its task's own step on its module, ``ModuleStack``, or a stack of one) and in a
batch of three with other seeds and λ.
"""

import pytest
import torch

from reglab.adversarial.attacks import FGSM, PGD, TRADES
from reglab.config import load_config
from reglab.counter_random import CounterStream
from reglab.runs import RunFolder, load_weights, read_run
from reglab.train import Member, prepare, run
from reglab.train.batched import run_many, vectorizable
from reglab.train.engine import train_stack
from reglab.train.module_stack import ModuleStack
from reglab.train.stacked import StackedModels, learning_rate

TINY = [
    "data.name=digits", "data.n_train=192", "model.kind=mlp", "model.hidden=[24]", "model.dropout=0.2",
    "train.epochs=2", "train.batch_size=64", "train.plots=false", "adv.eps=0.1", "adv.steps=2",
    "adv.eval_eps=[]", "adv.eval_steps=2", "adv.eval_restarts=2", "adv.eval_examples=48",
    "adv.monitor_examples=48", "adv.monitor_steps=2",
]  # fmt: skip
SEEDS_X_LAMS = [["seed=0", "reg.lam=1e-3"], ["seed=1", "reg.lam=1e-2"], ["seed=2", "reg.lam=1e-3"]]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def group_of(*overrides: str, variants=SEEDS_X_LAMS) -> StackedModels:
    return StackedModels([Member.of(prepare(load_config("adversarial-l2", TINY + list(overrides) + v)))
                          for v in variants])


def stacked_batch(group: StackedModels, n: int = 16):
    """Each model its own batch: rows m·n … (m+1)·n − 1 of the training set."""
    x, y = group.members[0].exp.tensors["train"]
    idx = torch.arange(len(group.members) * n).view(len(group.members), n)
    return x[idx], y[idx]


ATTACKS = {
    "pgd linf, 2 restarts": PGD(0.1, steps=3, restarts=2),
    "pgd l2": PGD(1.0, steps=3, norm="l2"),
    "fgsm-rs": PGD(0.1, alpha=0.125, steps=1),
    "trades linf": TRADES(0.1, steps=3),
    "trades l2": TRADES(1.0, steps=3, norm="l2"),
    "fgsm": FGSM(0.1),
    "pgd in training mode (dropout), 2 restarts": PGD(0.1, steps=3, restarts=2, eval_mode=False),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_the_stacked_attack_gives_each_model_its_module_attack(name):
    attack = ATTACKS[name]
    group = group_of()
    x, y = stacked_batch(group)
    x_adv = attack.stacked(group, x, y, group.random)
    for m, member in enumerate(group.members):
        model = member.exp.model.train()  # a fresh model: its dropout layers count from step 0 as the group does
        noise = CounterStream(group.seeds[m : m + 1], 0)
        alone = attack(model, x[m], y[m], noise)
        assert torch.equal(x_adv[m], alone), m
        assert not torch.equal(alone, x[m])
    assert not torch.equal(x_adv[0], x_adv[2]) and not torch.equal(x_adv[0] - x[0], x_adv[1] - x[1])


def test_counter_based_random_starts_are_uniform_in_the_ball_and_the_same_alone_and_in_a_batch():
    seeds = torch.tensor([7, -3, 11], dtype=torch.int32)
    like = torch.zeros(())
    batch = CounterStream(seeds, 5).uniform((3, 4000), -0.1, 0.1, like)
    alone = CounterStream(seeds[1:2], 5).uniform((1, 4000), -0.1, 0.1, like)
    assert torch.equal(batch[1:2], alone)
    assert batch.min() >= -0.1 and batch.max() < 0.1
    assert abs(float(batch.mean())) < 0.005 and abs(float(batch.var()) - 0.2**2 / 12) < 2e-4
    normal = CounterStream(seeds, 5).normal((3, 20000), like.double())
    assert abs(float(normal.mean())) < 0.03 and abs(float(normal.std()) - 1) < 0.02
    assert torch.equal(CounterStream(seeds[2:], 5).normal((1, 20000), like.double()), normal[2:])
    # a later step, another seed, the next draw of a step: other numbers
    assert not torch.equal(CounterStream(seeds, 6).uniform((3, 4000), -0.1, 0.1, like), batch)
    stream = CounterStream(seeds, 5)
    stream.uniform((3, 4000), -0.1, 0.1, like)
    assert not torch.equal(stream.uniform((3, 4000), -0.1, 0.1, like), batch)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_counter_based_random_starts_are_the_same_on_cuda():
    # the bits are integer arithmetic, the uniform draws exact float64 products rounded once; the
    # Gaussian ones go through log and cos, which may differ in the last place of float64
    seeds, like = torch.tensor([7, -3], dtype=torch.int32), torch.zeros(())
    cpu, cuda = CounterStream(seeds, 4), CounterStream(seeds.cuda(), 4)
    assert torch.equal(cpu.uniform((2, 5000), -0.1, 0.1, like), cuda.uniform((2, 5000), -0.1, 0.1, like.cuda()).cpu())
    torch.testing.assert_close(cpu.normal((2, 5000), like), cuda.normal((2, 5000), like.cuda()).cpu(),
                               rtol=1e-6, atol=1e-6)


def run_by_module(config, root):
    """The run of ``config`` alone, trained by its task's own step on its module (``AdversarialTask.loss``)."""
    member = Member.of(prepare(config))
    member.tracker.folder = RunFolder.create(config, member.exp.device, root)
    train_stack(ModuleStack(member), progress=False)
    return member.result


def assert_equal_runs(alone, together):
    for a, t in zip(alone, together, strict=True):
        assert a.ok and t.ok, (a.summary, t.summary)
        for key in set(a.summary) - {"seconds", "path"}:
            assert a.summary[key] == t.summary[key], key
        assert read_run(a.path)["metrics"] == read_run(t.path)["metrics"]
        wa, wt = load_weights(a.path), load_weights(t.path)
        assert all(torch.equal(wa[name], wt[name]) for name in wa)


CASES = {  # every method; L2 coupled and L1 proximal; dropout 0.2; the attack in eval and in train mode
    "pgd, l2 coupled": ["adv.method=pgd"],
    "fgsm-rs, l1 proximal": ["adv.method=fgsm-rs", "reg=l1", "reg.mode=proximal"],
    "trades l2-ball, l2 coupled": ["adv.method=trades", "adv.norm=l2", "adv.eps=1.0"],
    "weighted, attack in train mode": ["adv.method=weighted", "adv.attack_mode=train"],
    "pgd, 2 restarts, attack in train mode, l1 proximal": ["adv.method=pgd", "adv.restarts=2",
                                                           "adv.attack_mode=train", "reg=l1", "reg.mode=proximal"],
}  # fmt: skip


@pytest.mark.parametrize("case", list(CASES))
def test_batched_adversarial_training_equals_each_run_alone_bit_for_bit(case, tmp_path):
    configs = [load_config("adversarial-l2", TINY + CASES[case] + v) for v in SEEDS_X_LAMS]
    assert vectorizable(configs) is None
    alone = [run_by_module(c, tmp_path / "alone") for c in configs]
    together = run_many(configs, tmp_path / "batched", progress=False)
    assert all(t.summary["vectorized"] and t.summary["group_size"] == 3 for t in together)
    for t in together:
        del t.summary["vectorized"], t.summary["group_size"], t.summary["group_seconds"]
    assert_equal_runs(alone, together)
    assert len({t.summary["val_loss"] for t in together}) == 3
    assert all("robust_test_acc" in t.summary and "val_robust_acc" in read_run(t.path)["metrics"][0] for t in together)


def test_a_single_adversarial_run_is_a_stack_of_one_equal_to_its_module_trained_alone(tmp_path):
    config = load_config("adversarial-l2", TINY + ["adv.method=trades", "seed=3"])
    by_module = run_by_module(config, tmp_path / "module")
    alone = run(config, tmp_path / "alone", progress=False)  # a stack of one (StackedModels)
    assert_equal_runs([by_module], [alone])


def test_adversarial_configs_are_vectorized_unless_they_differ_in_the_attack():
    def configs(*variants):
        return [load_config("adversarial-l2", TINY + list(v)) for v in variants]

    assert vectorizable(configs(["seed=0"], ["seed=1", "reg.lam=0.1"])) is None
    assert "adv.eps" in vectorizable(configs(["adv.eps=0.1"], ["adv.eps=0.2"]))
    assert "reg.on" in vectorizable(configs(["seed=0", "reg.on=weights - head.*"],
                                            ["seed=1", "reg.on=weights - head.*"]))


def test_batched_adversarial_cnns_agree_with_their_runs_alone_to_float_rounding(tmp_path):
    # Batched convolutions (under vmap) sum in another order than a single model's, so inputs'
    # gradients differ in the last place; PGD's sign steps can turn such a difference into a step
    # of ±α on an element whose gradient is ~0. The runs then agree to ~1e-4 of the weights' scale
    # (a wrong seed, start or mask would differ by the scale itself).
    cnn = ["model.kind=cnn", "model.channels=[4,8]", "model.dense=[16]", "model.dropout=0", "adv.method=trades"]
    configs = [load_config("adversarial-l2", TINY + cnn + v) for v in SEEDS_X_LAMS[:2]]
    alone = [run_by_module(c, tmp_path / "alone") for c in configs]
    together = run_many(configs, tmp_path / "batched", progress=False)
    for a, t in zip(alone, together):
        assert t.summary["vectorized"] and a.summary["val_loss"] == pytest.approx(t.summary["val_loss"], rel=1e-4)
        wa, wt = load_weights(a.path), load_weights(t.path)
        for name in wa:
            assert float((wa[name] - wt[name]).abs().max()) <= 1e-3 * float(wa[name].abs().max()), name


def test_an_adversarial_step_of_the_group_reads_nothing_back(monkeypatch):
    """The stacked attack, its counter-based starts and the loss stay on the device: no host sync."""
    group = group_of("adv.method=pgd", "adv.restarts=2", "adv.norm=l2", "adv.eps=1.0")
    x, y = stacked_batch(group)
    lr, lam = group.vector(learning_rate), group.vector(lambda m: m.exp.config.reg.lam)

    def read_back(*args, **kwargs):
        raise AssertionError("a value was read back to the host")

    for name in ("__float__", "__int__", "__bool__", "item", "tolist"):
        monkeypatch.setattr(torch.Tensor, name, read_back)
    losses = group.train_step(x, y, lr, lam, None)
    monkeypatch.undo()
    assert losses.shape == (3,) and bool(torch.isfinite(losses).all())


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_batched_adversarial_training_with_batch_normalization_agrees_with_its_module_alone(mode, tmp_path):
    # attack_mode=train: each attack step's forward uses and moves each model's own running
    # statistics, as the module's BatchNorm does. Batch normalization over the stacked models
    # rounds differently in the last place; SGD keeps that at rounding (Adam before a
    # normalization would scale it up, tests/test_vectorized.py), so agreement to 1e-5 relative.
    bn = ["model.batchnorm=true", "model.dropout=0", "optim.name=sgd", "optim.lr=0.05", f"adv.attack_mode={mode}"]
    configs = [load_config("adversarial-l2", TINY + bn + v) for v in SEEDS_X_LAMS[:2]]
    assert vectorizable(configs) is None
    alone = [run_by_module(c, tmp_path / "alone") for c in configs]
    together = run_many(configs, tmp_path / "batched", progress=False)
    for a, t in zip(alone, together):
        assert t.summary["vectorized"] and a.summary["val_loss"] == pytest.approx(t.summary["val_loss"], rel=1e-5)
        wa, wt = load_weights(a.path), load_weights(t.path)
        for name in wa:
            torch.testing.assert_close(wt[name], wa[name], rtol=1e-5, atol=1e-6, msg=name)
