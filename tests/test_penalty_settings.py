"""A penalty declares its settings with their defaults; the penalty and the config check them against
its class, and a new penalty with a setting is its class plus its registration, run end to end by
``reglab run`` with ``reg.penalty=NAME reg.SETTING=…``."""

import json

import pytest
import torch
import yaml

from reglab import Penalty, UserError, register
from reglab.config import load_config
from reglab.penalties import PENALTIES, ElasticNet, Setting, penalty_from_name
from reglab.runs import load_weights

from cli_runner import cli


class Huber(Penalty):
    """The Huber penalty with threshold ε: λ·Σ h(w), h(w) = w²/(2ε) for |w| ≤ ε, else |w| − ε/2.

    grad  λ·clamp(w/ε, −1, 1)
    prox  w/(1 + t/ε) where |w| ≤ ε + t, else w − t·sign(w)    (t = step·λ)
    """

    name = "huber"
    settings = (Setting("eps", 0.1, 1e-6, 10.0, "ε: where the penalty turns from quadratic to linear"),)

    def _value(self, w, lam):
        a = w.abs()
        return lam * torch.where(a <= self.eps, w * w / (2 * self.eps), a - self.eps / 2).sum()

    def _grad(self, w, lam):
        return lam * torch.clamp(w / self.eps, -1, 1)

    def _prox(self, w, t):
        return torch.where(w.abs() <= self.eps + t, w / (1 + t / self.eps), w - t * torch.sign(w))


@pytest.fixture
def huber():
    register(Huber)
    yield Huber
    del PENALTIES[Huber.name]


def test_settings_have_defaults_and_are_checked_against_the_class():
    assert Huber(0.1).eps == 0.1 and Huber(0.1, eps=0.3).eps == 0.3
    assert ElasticNet(0.1).l1_ratio == 0.5 and repr(Huber(0.1, eps=0.3)) == "Huber(lam=0.1, eps=0.3)"
    with pytest.raises(UserError, match="Huber has no setting 'epsilon' \\(its settings: eps\\)"):
        Huber(0.1, epsilon=0.3)
    with pytest.raises(UserError, match="eps must be a number in"):
        Huber(0.1, eps=0.0)
    with pytest.raises(UserError, match="L2 has no setting 'l1_ratio'"):
        penalty_from_name("l2", 0.1, l1_ratio=0.5)


def test_the_math_of_the_test_penalty():
    w = torch.linspace(-1, 1, 21, dtype=torch.float64).reshape(3, 7).requires_grad_()
    penalty = Huber(0.7, eps=0.25)
    (autograd,) = torch.autograd.grad(penalty.value(w), w)
    torch.testing.assert_close(penalty.grad(w.detach()), autograd)
    # the prox's optimality condition, where h is differentiable: w − z = t·h'(z)
    z, t = penalty.prox(w.detach(), 0.5), 0.5 * 0.7
    torch.testing.assert_close(w.detach() - z, t * torch.clamp(z / 0.25, -1, 1))


def test_the_config_takes_the_chosen_penaltys_settings_only(huber):
    config = load_config("mlp-l2", ["reg.penalty=huber", "reg.eps=0.05"])
    assert config.reg.penalty_settings() == {"eps": 0.05}
    assert load_config("mlp-l2", ["reg.penalty=huber"]).reg.penalty_settings() == {"eps": 0.1}  # its default
    assert load_config("mlp-l2", ["reg=elastic"]).reg.penalty_settings() == {"l1_ratio": 0.5}
    assert load_config("mlp-l2", ["reg=l2", "reg.eps=0.05"]).reg.penalty_settings() == {}  # another's: dropped
    with pytest.raises(UserError, match="invalid value for 'reg.eps'"):
        load_config("mlp-l2", ["reg.penalty=huber", "reg.eps=20"])
    with pytest.raises(UserError, match="unknown config key 'reg.epsilon'"):
        load_config("mlp-l2", ["reg.penalty=huber", "reg.epsilon=0.05"])


def test_reglab_run_trains_a_new_penalty_with_its_setting(huber, monkeypatch, capsys, tmp_path):
    code, out, err = cli(monkeypatch, capsys, "run", "mlp-l2", "reg.penalty=huber", "reg.lam=0.01", "reg.eps=0.05",
                         "data.n_train=300", "train.epochs=2", "model.hidden=[16]", "train.plots=false",
                         f"out={tmp_path}")
    assert code == 0, err
    (folder,) = [p.parent for p in tmp_path.rglob("summary.json")]
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["reg"]["penalty"] == "huber" and config["reg"]["eps"] == 0.05
    summary = json.loads((folder / "summary.json").read_text())
    weights = [w.double() for name, w in load_weights(folder).items() if name.endswith("weight")]
    expected = sum(float(Huber(0.01, eps=0.05).value(w)) for w in weights)
    assert summary["penalty/huber"] == pytest.approx(expected, rel=1e-5)
    code, _, err = cli(monkeypatch, capsys, "run", "mlp-l2", "reg.penalty=huber", "reg.eps=-1", f"out={tmp_path}")
    assert code == 2 and err.startswith("error: invalid value for 'reg.eps'") and err.count("\n") == 1


def test_reglab_config_prints_the_penaltys_settings(monkeypatch, capsys):
    code, out, _ = cli(monkeypatch, capsys, "config", "mlp-l2", "reg=elastic", "reg.l1_ratio=0.3")
    assert code == 0 and "  l1_ratio: 0.3" in out and "a setting of elastic" in out
    code, out, _ = cli(monkeypatch, capsys, "config", "mlp-l2", "reg=l2")
    assert code == 0 and "l1_ratio" not in out


def test_a_batched_run_trains_each_model_with_its_own_setting(huber, tmp_path):
    from reglab.train import run
    from reglab.train.batched import run_many, vectorizable

    tiny = ["data.n_train=300", "train.epochs=2", "model.hidden=[16]", "train.plots=false",
            "reg.penalty=huber", "reg.mode=proximal", "reg.lam=0.05"]
    configs = [load_config("mlp-l2", tiny + [f"seed={i}", f"reg.eps={eps}"]) for i, eps in enumerate([0.01, 0.5])]
    assert vectorizable(configs) is None
    together = run_many(configs, tmp_path / "batched", progress=False)
    for config, batched in zip(configs, together):
        alone = run(config, tmp_path / "alone", progress=False)
        assert batched.summary["vectorized"] is True
        for key in ("train_loss", "test_loss", "penalty/huber"):
            assert alone.summary[key] == pytest.approx(batched.summary[key], rel=1e-5), key


def test_a_penalty_without_one_form_of_its_math_is_refused_where_it_is_defined():
    with pytest.raises(TypeError, match="NoProx defines neither stacked_prox nor _prox"):
        class NoProx(Penalty):
            def _value(self, w, lam):
                return lam * w.abs().sum()

            def _grad(self, w, lam):
                return lam * torch.sign(w)

    class OneModelForms(Penalty):  # each part in one of the two forms is enough
        def stacked_value(self, w, lam, settings=None):
            return w.abs().flatten(1).sum(1)

        def _grad(self, w, lam):
            return lam * torch.sign(w)

        def _prox(self, w, t):
            return w

    assert OneModelForms(0.1).grad(torch.tensor([-2.0, 3.0])).tolist() == pytest.approx([-0.1, 0.1])
