"""A penalty class plus one ``register`` call is all the lab needs: the config accepts its name
(``reg.penalty=NAME`` and the shorthand ``reg.NAME=λ``), and a run and a batched run train with its
own math."""

import math

import pytest
import torch

from reglab import Penalty, UserError, register
from reglab.config import load_config
from reglab.shorthands import shorthand_keys
from reglab.config_yaml import annotated_yaml
from reglab.penalties import PENALTIES, penalty_from_name, penalty_names
from reglab.runs import load_weights
from reglab.train import prepare, run
from reglab.train.batched import run_many, vectorizable

TINY_MLP = ["data.n_train=300", "train.epochs=3", "model.hidden=[32,16]", "train.plots=false",
            "reg.penalty=quartic"]  # fmt: skip


def cube_root(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * x.abs().pow(1 / 3)


class Quartic(Penalty):
    """λ/4·Σw⁴: gradient λ·w³; prox the real root z of z + t·z³ = w (Cardano)."""

    name = "quartic"

    def _value(self, w, lam):
        return 0.25 * lam * w.pow(4).sum()

    def _grad(self, w, lam):
        return lam * w.pow(3)

    def _prox(self, w, t):
        t = torch.as_tensor(t, dtype=w.dtype).clamp_min(1e-30)
        q, p = w / (2 * t), 1 / (3 * t)
        root = torch.sqrt(q * q + p**3)
        return cube_root(q + root) + cube_root(q - root)


@pytest.fixture
def quartic():
    register(Quartic)
    yield Quartic
    del PENALTIES[Quartic.name]


def test_math_of_the_test_penalty():
    w = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    penalty = Quartic(0.3)
    (autograd,) = torch.autograd.grad(penalty.value(w), w)
    torch.testing.assert_close(penalty.grad(w.detach()), autograd)
    z = penalty.prox(w.detach(), 0.5)
    torch.testing.assert_close(z + 0.5 * 0.3 * z.pow(3), w.detach())  # the prox's optimality condition


def test_registering_makes_the_name_known(quartic):
    assert penalty_names()[-1] == "quartic" and "reg.quartic" in shorthand_keys()
    assert isinstance(penalty_from_name("quartic", 0.1), Quartic)
    assert load_config("mlp-l2", ["reg.penalty=quartic"]).reg.penalty == "quartic"
    config = load_config("mlp-l2", ["reg.quartic=0.02"])
    assert (config.reg.penalty, config.reg.lam) == ("quartic", 0.02)
    assert "one of none|l1|l2|elastic|group|quartic;" in annotated_yaml(config)


def test_an_unregistered_name_is_refused():
    with pytest.raises(UserError, match="reg.penalty"):
        load_config("mlp-l2", ["reg.penalty=quartic"])
    with pytest.raises(UserError, match="reg.quartic"):
        load_config("mlp-l2", ["reg.quartic=0.02"])


def test_a_name_taken_is_refused(quartic):
    class Other(Quartic):
        pass

    with pytest.raises(ValueError, match="registered already"):
        register(Other)


@pytest.mark.parametrize("mode", ["coupled", "proximal"])
def test_run_and_batched_run_train_with_its_math(quartic, mode, tmp_path):
    variants = [["seed=0", "reg.lam=0.5"], ["seed=1", "reg.lam=2.0"]]
    configs = [load_config("mlp-l2", TINY_MLP + [f"reg.mode={mode}"] + v) for v in variants]
    assert vectorizable(configs) is None
    separate = []
    for config in configs:
        exp = prepare(config)
        assert isinstance(exp.task.regularizer.terms[0].penalty, Quartic)
        separate.append(run(config, tmp_path / "separate", progress=False))
    together = run_many(configs, tmp_path / "batched", progress=False)
    for config, alone, batched in zip(configs, separate, together):
        assert batched.summary["vectorized"] is True
        for key in ("train_loss", "test_loss", "penalty/quartic"):
            assert math.isclose(alone.summary[key], batched.summary[key], rel_tol=1e-5), key
        weights = load_weights(batched.path)
        quartic_value = sum(0.25 * config.reg.lam * float(w.double().pow(4).sum())
                            for name, w in weights.items() if name.endswith("weight"))
        assert math.isclose(batched.summary["penalty/quartic"], quartic_value, rel_tol=1e-4)
