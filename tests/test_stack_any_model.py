"""A user's own model (``model.kind=custom``) trains K at a time in the stacked backend
(``torch.func.functional_call`` under ``vmap``, ``reglab.train.functional_net``), each model as it
trains alone.

Each test trains three configs (two seeds, two λ) of one factory of ``tests/stack_models.py`` once
alone (``run_or_fail``: the model's own module and optimizer) and once together (``run_many``: one
stack), and compares the run folders. The tolerance, per model, is on every weight and buffer
(batch normalization's running statistics included) relative to the tensor's largest magnitude,
and on the per-epoch losses:

* MLP with dropout: weights bit for bit (its linear layers add in the order of ``nn.Linear``'s
  own), the losses to 1e-6 (a batch's mean loss is reduced over the stack's rows);
* CNN with batch normalization: 1e-5 (convolutions and batch normalization under ``vmap`` add in
  another order: measured 1.2e-6 after 2 epochs);
* Transformer encoder, trained by SGD: 1e-5 (measured 1.2e-6). With Adam the attention's key bias,
  whose gradient is zero in exact arithmetic, takes ±lr steps from rounding noise alone, so that
  it parts by 1e-2 while every other weight agrees to 1e-7;
* the MLP trained adversarially (PGD): bit for bit, as without;
* LSTM: 1e-6 (its gates by :class:`~reglab.train.gated_lstm.GatedLSTM` against torch's kernel:
  measured 1.2e-7).
"""

import math
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import reglab as rl
from reglab.config import load_config
from reglab.models.dropout import CountedDropout, count_dropout_
from reglab.runs import load_weights, read_run
from reglab.train.batched import run_many, vectorizable
from reglab.train.engine import run_or_fail
from reglab.train.experiment import prepare
from reglab.train.functional_net import stack_problem
from reglab.train.gated_lstm import GatedLSTM

sys.path.insert(0, str(Path(__file__).parent))  # the factories' module, stack_models
import stack_models

TINY = ["model.kind=custom", "model.dropout=0", "data.n_train=200", "train.epochs=2", "train.batch_size=50",
        "train.plots=false"]
LOSS_ROUNDING = 1e-6  # the batch loss, a mean over the stack's rows [M, B], adds in another order
VARIANTS = [["seed=0", "reg.lam=1e-3"], ["seed=1", "reg.lam=1e-3"], ["seed=0", "reg.lam=3e-2"]]


ADVERSARIAL = ["data.name=digits", "adv.method=pgd", "adv.eps=0.1", "adv.steps=2", "adv.eval_eps=[]", "adv.eval_steps=2",
               "adv.eval_restarts=1", "adv.eval_examples=48", "adv.monitor_examples=48", "adv.monitor_steps=2"]


def configs_of(factory: str, extra: list[str] = (), recipe: str = "mlp-l2") -> list:
    return [load_config(recipe, TINY + [f"model.factory=stack_models:{factory}", *extra] + v) for v in VARIANTS]


def agree(a, b, tol: float) -> bool:
    """Equal when ``tol`` is 0, else within ``tol`` of the largest magnitude."""
    if tol == 0 or not a.is_floating_point():
        return torch.equal(a, b)
    return bool((a.double() - b.double()).abs().max() <= tol * b.double().abs().max())


def assert_alone_equals_stacked(configs, tol, tmp_path):
    assert vectorizable(configs) is None
    alone = [run_or_fail(c, tmp_path / "alone", progress=False) for c in configs]
    together = run_many(configs, tmp_path / "together", progress=False)
    assert len({r.summary["val_loss"] for r in alone}) == 3  # three different models
    for a, t in zip(alone, together):
        assert a.ok and t.ok and t.summary["vectorized"] is True and "vectorized" not in a.summary
        wa, wt = load_weights(a.path), load_weights(t.path)
        assert list(wa) == list(wt)
        for name in wa:
            assert agree(wt[name], wa[name], tol), name
        for ra, rt in zip(read_run(a.path)["metrics"], read_run(t.path)["metrics"]):
            for key in ("train_loss", "val_loss", "batch_loss"):
                assert math.isclose(rt[key], ra[key], rel_tol=max(tol, LOSS_ROUNDING)), (ra["epoch"], key)
    return together


def test_a_custom_mlp_with_dropout_stacked_is_bit_for_bit_its_run_alone(tmp_path):
    configs = configs_of("mlp")
    assert any(type(m) is nn.Dropout for m in stack_models.mlp((1, 40), 10).modules())  # the factory's dropout
    built = [m for m in prepare(configs[0]).model.modules() if isinstance(m, (nn.Dropout, CountedDropout))]
    assert [(type(m), m.p) for m in built] == [(CountedDropout, 0.2)]  # is counted when a run builds it
    together = assert_alone_equals_stacked(configs, 0, tmp_path)
    assert all(r.summary["group_size"] == 3 for r in together)


def test_a_custom_mlp_trained_adversarially_stacked_is_bit_for_bit_its_run_alone(tmp_path):
    # PGD's random starts and steps act on the stacked forward (its input gradients included)
    assert_alone_equals_stacked(configs_of("mlp", ADVERSARIAL, "adversarial-l2"), 0, tmp_path)


def test_a_custom_cnn_with_batch_normalization_stacked_is_its_run_alone_to_rounding(tmp_path):
    assert_alone_equals_stacked(configs_of("cnn"), 1e-5, tmp_path)


def test_a_transformer_encoder_stacked_is_its_run_alone_to_rounding(tmp_path):
    assert_alone_equals_stacked(configs_of("transformer", ["optim.name=sgd", "optim.lr=0.05"]), 1e-5, tmp_path)


def test_an_lstm_classifier_stacked_is_its_run_alone_to_rounding(tmp_path):
    assert_alone_equals_stacked(configs_of("lstm"), 1e-6, tmp_path)


def test_a_model_with_data_dependent_control_flow_trains_alone_and_says_why(tmp_path):
    configs = configs_of("branching")
    reason = vectorizable(configs)
    assert reason == ("model.factory=stack_models:branching: it cannot be stacked (RuntimeError: vmap: It looks "
                      "like you're attempting to use a Tensor in some data-dependent control flow)")
    results = run_many(configs[:2], tmp_path / "runs", progress=False)
    assert all(r.ok and "vectorized" not in r.summary for r in results)
    lines = []
    study = rl.sweep("mlp-l2", *TINY, "model.factory=stack_models:branching", seeds="0-1",
                     studies_dir=tmp_path / "studies", echo=lines.append)
    assert study.finished
    assert f"one after another: {reason}" in lines


def test_dropout_layers_are_counted_at_their_own_rate():
    model = count_dropout_(nn.Sequential(nn.Dropout(0.3), nn.Sequential(nn.Dropout2d(0.5), nn.Dropout1d(0.1))))
    counted = [m for m in model.modules() if isinstance(m, CountedDropout)]
    assert [(m.p, m.layer, m.channelwise) for m in counted] == [(0.3, 0, False), (0.5, 1, True), (0.1, 2, True)]
    x = torch.ones(64, 8, 3, 3)
    out = counted[1](x)  # channel-wise: each (example, channel) all kept (×2) or all dropped
    per_channel = out.flatten(2)
    assert torch.equal(per_channel.amin(2), per_channel.amax(2)) and set(out.unique().tolist()) == {0.0, 2.0}
    assert 0.4 < (per_channel[..., 0] == 0).double().mean() < 0.6


@pytest.mark.parametrize("model, why", [
    (stack_models.TokenTransformer(10), None),
    (nn.TransformerEncoderLayer(4, 2, 8, dropout=0.1, batch_first=True),
     "the attention dropout of nn.MultiheadAttention self_attn (dropout=0.1) draws from torch's own generator"),
    (nn.LSTM(4, 4, num_layers=2, dropout=0.2, batch_first=True),
     "nn.LSTM's dropout=0.2 between layers draws from torch's own generator"),
    (stack_models.Unused(), "its parameter unused.weight takes no gradient (it is not used)"),
])  # fmt: skip
def test_what_cannot_stack_is_found_before_training(model, why):
    problem = stack_problem(count_dropout_(model), torch.randn(4, 10, 4))
    assert problem is None if why is None else why in problem


@pytest.mark.parametrize("layers, bidirectional, batch_first, state", [
    (1, False, True, False), (2, True, False, True), (2, False, True, True),
])  # fmt: skip
def test_the_gated_lstm_is_torchs_lstm(layers, bidirectional, batch_first, state):
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 5, num_layers=layers, bidirectional=bidirectional, batch_first=batch_first)
    x = torch.randn(4, 7, 3) if batch_first else torch.randn(7, 4, 3)  # 4 sequences of 7 steps
    directions = 2 if bidirectional else 1
    hx = (torch.randn(layers * directions, 4, 5), torch.randn(layers * directions, 4, 5)) if state else None
    want, (h_want, c_want) = lstm(x, hx)
    got, (h_got, c_got) = GatedLSTM(lstm)(x, hx)
    for a, b in ((got, want), (h_got, h_want), (c_got, c_want)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    one, one_state = x[0] if batch_first else x[:, 0], None if hx is None else (hx[0][:, 0], hx[1][:, 0])
    torch.testing.assert_close(GatedLSTM(lstm)(one, one_state)[0], lstm(one, one_state)[0], rtol=1e-5, atol=1e-6)
