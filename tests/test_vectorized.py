"""A stack of models gives each config of a group the results of its separate run.

Every test trains the same configs twice, once one after another as single runs (``reglab.train.run``,
a stack of one) and once together with ``reglab.train.batched.run_many``, and compares the run
folders: final losses to 1e-5 relative, accuracies exactly, and the per-epoch metrics, weights and
statuses. tests/test_engine.py checks single runs against a plain torch loop.
"""

import math

import pytest
import torch

from reglab.config import load_config
from reglab.runs import load_weights, read_run
from reglab.train import Member, prepare, run
from reglab.train.batched import run_many, vectorizable
from reglab.train.batched_net import BatchedLinear
from reglab.train.stacked import StackedModels, learning_rate

RTOL = 1e-5
TINY_MLP = ["data.n_train=300", "train.epochs=3", "model.hidden=[32,16]", "train.plots=false"]
SEEDS_X_LAMS = [["seed=0", "reg.lam=1e-3"], ["seed=1", "reg.lam=1e-3"],
                ["seed=0", "reg.lam=3e-2"], ["seed=1", "reg.lam=3e-2"]]  # fmt: skip


def train_both(recipe, base, variants, tmp_path):
    configs = [load_config(recipe, base + v) for v in variants]
    assert vectorizable(configs) is None
    separate = [run(c, tmp_path / "separate", progress=False) for c in configs]
    together = run_many(configs, tmp_path / "vectorized", progress=False)
    return separate, together


def close(a, b, key):
    """Accuracies and zero fractions exactly; differences of values of order 1 (the gaps, the
    distances to the optimum) to 1e-6 absolute; the rest to RTOL relative."""
    if isinstance(a, list):
        return len(a) == len(b) and all(close(x, y, key) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        if key.endswith("_acc") or key.startswith("zeros"):
            return a == b
        abs_tol = 1e-6 if key.startswith(("reference_max_abs", "gap_")) else 1e-9
        return math.isclose(a, b, rel_tol=RTOL, abs_tol=abs_tol) or (math.isnan(a) and math.isnan(b))
    return a == b


def assert_same(separate, together, weight_atol=1e-7):
    for s, v in zip(separate, together):
        assert v.summary["vectorized"] is True and v.summary["group_size"] == len(together)
        assert v.summary["seconds"] == v.summary["group_seconds"] / len(together)
        assert "vectorized" not in s.summary and "group_seconds" not in s.summary
        shared = set(s.summary) - {"seconds", "path"}
        assert shared <= set(v.summary)
        for key in sorted(shared):
            assert close(s.summary[key], v.summary[key], key), (key, s.summary[key], v.summary[key])
        epochs_s, epochs_v = read_run(s.path)["metrics"], read_run(v.path)["metrics"]
        assert [list(r) for r in epochs_s] == [list(r) for r in epochs_v]
        for rs, rv in zip(epochs_s, epochs_v):
            for key in rs:
                assert close(rs[key], rv[key], key), (rs["epoch"], key, rs[key], rv[key])
        if s.ok:
            ws, wv = load_weights(s.path), load_weights(v.path)
            assert list(ws) == list(wv)
            for name in ws:
                torch.testing.assert_close(wv[name], ws[name], rtol=RTOL, atol=weight_atol)


def test_mlp_with_dropout_clipping_and_plateau(tmp_path):
    # mlp-l2: dropout 0.2, coupled L2, Adam, plateau LR, and gradient clipping by norm at a
    # threshold that the tiny models' gradient norms exceed
    separate, together = train_both("mlp-l2", TINY_MLP + ["train.clip_norm=0.1"], SEEDS_X_LAMS, tmp_path)
    assert_same(separate, together)
    assert len({r.summary["val_loss"] for r in separate}) == 4  # four different models
    # all four end after the last epoch: the same time of the group, shared out over its four models
    assert len({r.summary["group_seconds"] for r in together}) == 1


def test_dropout_rates_differ_per_model(tmp_path):
    variants = [["reg=dropout", f"reg.dropout={p}", f"seed={seed}"] for p in (0.1, 0.5) for seed in (0, 1)]
    separate, together = train_both("mlp-l2", TINY_MLP, variants, tmp_path)
    assert_same(separate, together)


def test_early_stopping_restore_best_and_plateau_are_per_model(tmp_path):
    base = ["data.n_train=300", "train.epochs=10", "model.hidden=[32,16]", "optim.lr=0.01",
            "train.early_stopping=3", "train.plateau_patience=0", "train.plots=false"]
    variants = [["seed=0", "reg.lam=1e-4"], ["seed=1", "reg.lam=0.3"], ["seed=2", "reg.lam=1e-2"]]
    separate, together = train_both("mlp-l2", base, variants, tmp_path)
    assert_same(separate, together)
    runs = [read_run(r.path) for r in together]
    assert len({r["summary"]["epochs_run"] for r in runs}) > 1
    stopped = [r for r in runs if r["summary"].get("stopped_early")]
    assert stopped and stopped[0]["summary"]["best_epoch"] < stopped[0]["summary"]["epochs_run"]
    assert stopped[0]["metrics"][-1]["lr"] < stopped[0]["metrics"][0]["lr"]  # its own plateau


def test_linear_regression_by_full_batch_gradient_descent(tmp_path):
    separate, together = train_both("ridge-gd", ["train.epochs=60", "train.plots=false"],
                                    [["seed=0", "reg.lam=0.1"], ["seed=1", "reg.lam=0.1"],
                                     ["seed=0", "reg.lam=1.0"], ["seed=1", "reg.lam=1.0"]], tmp_path)
    assert_same(separate, together)
    assert all("reference_max_abs_dw" in r.summary for r in together)


def test_cnn_on_digits(tmp_path):
    base = ["data.name=digits", "data.n_train=300", "model.channels=[4,8]", "model.dense=[16]",
            "train.epochs=2", "train.plots=false"]
    separate, together = train_both("cnn-l2", base, [["seed=0", "reg.lam=1e-3"], ["seed=1", "reg.lam=3e-2"]],
                                    tmp_path)
    assert_same(separate, together)


BATCHNORM_CNN = ["data.name=digits", "data.n_train=300", "model.channels=[4,8]", "model.dense=[16]", "train.epochs=3",
                 "train.plots=false", "model.activation=tanh", "model.pool=false"]
"""A CNN whose batch normalizations feed tanh and no pooling, no kinks: see ``reglab.train.stacked``'s
docstring."""


@pytest.mark.parametrize("recipe, overrides", [("mlp-l2", TINY_MLP), ("cnn-l2", BATCHNORM_CNN)], ids=["mlp", "cnn"])
def test_batch_normalization_keeps_running_statistics_per_model(recipe, overrides, tmp_path):
    """Each model normalizes by its own batch's statistics and keeps its own running mean and
    variance (saved with its weights and used in evaluation), as its own ``nn.BatchNorm`` does.
    SGD: the bias of a layer in front of a batch normalization has a zero gradient in exact
    arithmetic, which Adam would scale from rounding noise to steps of ±lr."""
    base = overrides + ["model.batchnorm=true", "optim.name=sgd", "optim.lr=0.05"]
    separate, together = train_both(recipe, base, [["seed=0", "reg.lam=1e-3"], ["seed=1", "reg.lam=3e-2"]], tmp_path)
    # a CNN alone runs its own convolutions, a batch their grouped form (vmap), which round
    # differently; the biases in front of a normalization (zero gradient in exact arithmetic) then
    # drift apart by a few 1e-6; statistics pooled over the models would differ by 1e-2 and more
    assert_same(separate, together, weight_atol=1e-5 if recipe == "cnn-l2" else 1e-7)
    for r in together:
        weights = load_weights(r.path)
        assert any(name.endswith("running_var") and not torch.equal(w, torch.ones_like(w)) for name, w in weights.items())


def test_proximal_l1_gives_the_same_exact_zeros(tmp_path):
    separate, together = train_both("l1-sparsity", TINY_MLP + ["train.plots=true"],
                                    [["seed=0", "reg.lam=0.03"], ["seed=1", "reg.lam=0.1"]], tmp_path)
    assert_same(separate, together)
    assert all(r.summary["zeros_total"] > 5 for r in together)
    for r in together:
        for name in ("config.yaml", "env.json", "weights.pt", "plots/learning_curve.png", "plots/weights.png"):
            assert (r.path / name).is_file(), name


@pytest.mark.parametrize("overrides, variants", [
    (["optim.name=adamw", "reg=none"],
     [["seed=0", "optim.weight_decay=0.1"], ["seed=1", "optim.weight_decay=0", "optim.lr=0.003"]]),
    (["optim.name=sgd", "optim.momentum=0.9", "optim.lr=0.05", "reg=elastic", "reg.mode=decoupled"],
     [["reg.lam=0.01", "reg.l1_ratio=0.2"], ["reg.lam=0.03", "reg.l1_ratio=0.7"]]),
    (["reg=group", "reg.mode=proximal"], [["reg.lam=0.01"], ["seed=1", "reg.lam=0.1"]]),
    (["reg=group", "reg.mode=coupled", "optim.weight_decay=1e-3"], [["reg.lam=0.01"], ["seed=1", "reg.lam=0.1"]]),
    (["reg=l1", "reg.warmup_epochs=1", "train.schedule=cosine", "train.clip_norm=null", "train.clip_value=0.05"],
     [["reg.lam=0.001"], ["seed=1", "reg.lam=0.01"]]),
])  # fmt: skip
@pytest.mark.filterwarnings("ignore:the optimizer's own weight_decay also applies")  # meant here
def test_optimizers_penalties_and_modes(overrides, variants, tmp_path):
    separate, together = train_both("mlp-l2", TINY_MLP + overrides, variants, tmp_path)
    assert_same(separate, together)


def test_divergence_is_per_model(tmp_path):
    base = TINY_MLP + ["optim.name=sgd", "train.clip_norm=null", "model.dropout=0"]
    separate, together = train_both("mlp-l2", base, [["optim.lr=0.05"], ["optim.lr=1e4"]], tmp_path)
    assert [r.summary["status"] for r in together] == ["ok", "failed"]
    assert together[1].summary["reason"].startswith("diverged: loss became")
    assert_same(separate, together)


def test_batched_linear_gradients_match_finite_differences():
    g = torch.Generator().manual_seed(0)
    h, weight, bias = (torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
                       for shape in ((3, 5, 4), (3, 6, 4), (3, 6)))
    assert torch.autograd.gradcheck(BatchedLinear.apply, (h, weight, bias))
    expected = torch.stack([torch.nn.functional.linear(h[m], weight[m], bias[m]) for m in range(3)])
    torch.testing.assert_close(BatchedLinear.apply(h, weight, bias), expected)


def test_vectorizable_gives_reasons():
    def configs(*variants, base=("data.n_train=300",)):
        return [load_config("mlp-l2", list(base) + list(v)) for v in variants]

    assert vectorizable(configs(["seed=0"], ["seed=1", "reg.lam=0.1", "optim.lr=0.01"])) is None
    assert vectorizable(configs(["seed=0"])) == "a single run"
    assert "model.hidden" in vectorizable(configs(["model.hidden=[8]"], ["model.hidden=[16]"]))
    assert "reg.penalty" in vectorizable(configs(["reg=l1"], ["reg=l2"]))
    assert "dropout layers" in vectorizable(configs(["reg=none", "model.dropout=0"], ["reg=dropout"]))
    assert "data.fold" in vectorizable(configs(["data.n_folds=3", "data.fold=0"], ["data.n_folds=3", "data.fold=1"]))
    assert vectorizable(configs(["seed=0"], ["seed=1"], base=["model.batchnorm=true"])) is None
    assert "reg.on" in vectorizable(configs(["seed=0"], ["seed=1"], base=["reg.on=weights - head.*"]))


def test_run_many_trains_one_after_another_when_it_cannot_vectorize(tmp_path):
    configs = [load_config("mlp-l2", TINY_MLP + [f"model.hidden=[{h}]", "train.epochs=1"]) for h in (8, 16)]
    results = run_many(configs, tmp_path, progress=False)
    assert [r.ok for r in results] == [True, True]
    assert not any("vectorized" in r.summary for r in results)


def test_a_config_that_cannot_be_built_fails_alone_without_a_run_folder(tmp_path):
    configs = [load_config("ridge-gd", ["train.epochs=5", "train.plots=false", f"seed={s}"]) for s in (0, 1)]
    configs.insert(1, load_config("ridge-gd", ["model.kind=cnn"]))  # x is (n, 1): no cnn fits
    results = run_many(configs, tmp_path / "runs", progress=False)
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].path is None and "model.kind=cnn" in results[1].summary["reason"]
    assert len(list((tmp_path / "runs").glob("*/*/summary.json"))) == 2


def test_a_diverging_model_leaves_its_batch_alone(tmp_path):
    # λ = 10⁴ with lr 0.5 explodes within a few steps; its weights, huge but finite before the
    # loss turns inf, cannot be drawn as a histogram. The λ = 0.01 runs finish as they would alone.
    variants = [[f"seed={s}", f"reg.lam={lam}"] for s in (0, 1) for lam in ("1e-2", "1e4")]
    separate, together = train_both("ridge-gd", ["train.epochs=50"], variants, tmp_path)
    assert [r.summary["status"] for r in together] == ["ok", "failed"] * 2
    for r in together[1::2]:
        assert r.summary["reason"].startswith("diverged: loss became inf")
    assert_same(separate, together)


BIT_FOR_BIT = {  # every penalty in every mode, each optimizer, dropout 0.2 from the recipe
    "l2 coupled, adam, clip by norm": (["train.clip_norm=0.1"], [["reg.lam=1e-3"], ["seed=1", "reg.lam=3e-2"]]),
    "l2 decoupled": (["reg.mode=decoupled"], [["reg.lam=0.01"], ["seed=1", "reg.lam=0.1"]]),
    "l2 proximal, sgd": (["reg.mode=proximal", "optim.name=sgd", "optim.lr=0.05"], [["reg.lam=0.01"], ["seed=1", "reg.lam=0.1"]]),
    "l1 coupled, warm-up, clip by value": (["reg=l1", "reg.warmup_epochs=1", "train.clip_norm=null", "train.clip_value=0.05"],
                                           [["reg.lam=0.001"], ["seed=1", "reg.lam=0.01"]]),
    "l1 decoupled": (["reg=l1", "reg.mode=decoupled"], [["reg.lam=0.01"], ["seed=1", "reg.lam=0.1"]]),
    "l1 proximal": (["reg=l1", "reg.mode=proximal"], [["reg.lam=0.01"], ["seed=1", "reg.lam=0.1"]]),
    "elastic coupled": (["reg=elastic"], [["reg.lam=0.01", "reg.l1_ratio=0.3"], ["seed=1", "reg.lam=0.1", "reg.l1_ratio=0.8"]]),
    "elastic decoupled, sgd momentum": (["reg=elastic", "reg.mode=decoupled", "optim.name=sgd", "optim.momentum=0.9",
                                         "optim.lr=0.05"], [["reg.lam=0.01", "reg.l1_ratio=0.2"], ["reg.lam=0.03", "reg.l1_ratio=0.7"]]),
    "elastic proximal, sgd": (["reg=elastic", "reg.mode=proximal", "optim.name=sgd", "optim.lr=0.05"],
                              [["reg.lam=0.01", "reg.l1_ratio=0.3"], ["seed=1", "reg.lam=0.1", "reg.l1_ratio=0.8"]]),
    "group proximal": (["reg=group", "reg.mode=proximal"], [["reg.lam=0.01"], ["seed=1", "reg.lam=0.1"]]),
    "adamw weight decay": (["optim.name=adamw", "reg=none", "model.dropout=0.2"],
                           [["optim.weight_decay=0.1"], ["seed=1", "optim.weight_decay=0", "optim.lr=0.003"]]),
}  # fmt: skip
"""Group lasso in coupled and decoupled mode agrees to float rounding only (≤ 2e-8 here): its
per-group norms are reduced over a stack of models (test_optimizers_penalties_and_modes)."""


@pytest.mark.parametrize("case", list(BIT_FOR_BIT))
def test_batched_and_separate_runs_are_equal_bit_for_bit(case, tmp_path):
    overrides, variants = BIT_FOR_BIT[case]
    separate, together = train_both("mlp-l2", TINY_MLP + overrides, variants, tmp_path)
    for s, t in zip(separate, together):
        assert s.summary["val_loss"] == t.summary["val_loss"]
        ws, wt = load_weights(s.path), load_weights(t.path)
        assert all(torch.equal(ws[name], wt[name]) for name in ws), case


def test_a_step_and_an_evaluation_read_nothing_back_per_model(monkeypatch):
    """No host syncs inside a step of the group, and one ``tolist()`` per evaluation for all models."""
    configs = [load_config("mlp-l2", TINY_MLP + [f"seed={s}", f"reg.lam={lam}"]) for s, lam in ((0, 1e-3), (1, 1e-2), (2, 0.1))]
    group = StackedModels([Member.of(prepare(c)) for c in configs])
    x, y = group.members[0].exp.tensors["train"]
    idx = torch.arange(3 * 64).view(3, 64)
    lr, lam = group.vector(learning_rate), group.vector(lambda m: m.exp.config.reg.lam)
    group.optimizer.shared_lr = configs[0].optim.lr  # all three share it

    def read_back(*args, **kwargs):
        raise AssertionError("a value was read back to the host")

    read_backs = []
    tolist = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda t: read_backs.append(t.shape) or tolist(t))
    for name in ("__float__", "__int__", "__bool__", "item"):
        monkeypatch.setattr(torch.Tensor, name, read_back)
    for _ in range(2):
        group.train_step(x[idx], y[idx], lr, lam, None)
    metrics = group.evaluate()
    assert read_backs == [torch.Size([3, 4])]  # train and val loss and accuracy of the three models
    assert [sorted(m) for m in metrics] == [["gap_acc", "gap_loss", "train_acc", "train_loss", "val_acc", "val_loss"]] * 3
