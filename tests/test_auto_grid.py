"""``--grid reg.lam=auto:N``: λ_max against scikit-learn's alpha grid and direct computations, the
proximal edge it names, a study end to end, and bad input.

reglab's squared loss is (1/n)‖y − Xw − b‖² + λ·R(w), scikit-learn's (1/2n)‖y − Xw − b‖² + α·R(w),
so λ = 2α (:mod:`reglab.conventions`); both leave the intercept unpenalized and fit it, which
scikit-learn does by centering X and y.
"""

import json

import numpy as np
import optuna
import pytest
import torch
from sklearn.linear_model import ElasticNetCV, LassoCV
from sklearn.linear_model._coordinate_descent import _alpha_grid

from reglab.config import load_config
from reglab.errors import UserError
from reglab.penalties import L1, GroupLasso
from reglab.study.auto_grid import estimate
from reglab.study.grid import parse_grid
from reglab.train.experiment import prepare
from tests.cli_runner import cli
from tests.test_bad_input import TINY, assert_error

SPARSE = ["data.name=synthetic-sparse"]  # 100 features, a linear model (the ridge-gd recipe)
DIGITS = ["data.name=digits", "data.n_samples=null", "data.noise=null", "model.kind=linear", "train.batch_size=0"]  # 10 classes, 64 pixels


def train_split(config):
    """The training split reglab trains on, as float64 NumPy arrays."""
    x, y = prepare(config).tensors["train"]
    return x.double().flatten(1).numpy(), y.numpy().astype(np.float64 if y.is_floating_point() else np.int64)


@pytest.mark.parametrize("l1_ratio", [1.0, 0.3])
def test_l1_and_elastic_lam_max_is_twice_sklearns_alpha_max(l1_ratio, one_torch_thread):
    penalty = ["reg.penalty=l1"] if l1_ratio == 1 else ["reg.penalty=elastic", f"reg.l1_ratio={l1_ratio}"]
    config = load_config("ridge-gd", SPARSE + penalty)
    x, y = train_split(config)
    y = y[:, 0]
    alphas = _alpha_grid(x, y, l1_ratio=l1_ratio, fit_intercept=True, eps=1e-4, n_alphas=10)
    cv = (LassoCV(alphas=10, eps=1e-4, cv=2) if l1_ratio == 1 else
          ElasticNetCV(l1_ratio=l1_ratio, alphas=10, eps=1e-4, cv=2, max_iter=100_000)).fit(x, y)
    top = estimate(config)
    assert top == pytest.approx(2 * alphas[0], rel=1e-10)
    lams = parse_grid("reg.lam=auto:10").auto.values(top)
    np.testing.assert_allclose(lams, 2 * alphas, rtol=1e-10)
    np.testing.assert_allclose(lams, 2 * cv.alphas_, rtol=1e-10)


def test_a_ratio_sets_the_lowest_value():
    lams = parse_grid("reg.lam=auto:3:0.01").auto.values(2.0)
    assert lams == pytest.approx([2.0, 0.2, 0.02], rel=1e-12)
    assert parse_grid("reg.lam=auto:1").auto.values(2.0) == [2.0]


def test_l2_lam_max_is_the_gradient_norm_over_the_weight_norm_at_init(one_torch_thread):
    """λ_max·‖w0‖ = ‖∇L(w0)‖ at the model's initial weights, with ∇ of (1/n)‖Xw + b − y‖² in closed
    form: (2/n)·Xᵀ(Xw0 + b0 − y)."""
    config = load_config("ridge-gd", SPARSE + ["reg.penalty=l2"])
    weight, bias = [p.detach().double().numpy() for p in prepare(config).model.parameters()]
    x, y = train_split(config)
    grad = 2 / len(x) * x.T @ (x @ weight.T + bias - y)
    assert estimate(config) == pytest.approx(np.linalg.norm(grad) / np.linalg.norm(weight), rel=1e-10)


def test_a_linear_classifier_is_read_at_its_null_fit(one_torch_thread):
    """Cross-entropy at w = 0 and b = log(class frequency): ∇_W = (1/n)·(P̄ − Y)ᵀX with P̄ the class
    frequencies; L1's λ_max is its largest entry, group lasso's the largest row norm over √64."""
    x, labels = train_split(load_config("ridge-gd", DIGITS + ["reg.penalty=l1"]))
    onehot = np.eye(10)[labels]
    grad = (onehot.mean(0) - onehot).T @ x / len(x)
    assert estimate(load_config("ridge-gd", DIGITS + ["reg.penalty=l1"])) == pytest.approx(np.abs(grad).max(), rel=1e-10)
    group = np.linalg.norm(grad, axis=1).max() / 8
    assert estimate(load_config("ridge-gd", DIGITS + ["reg.penalty=group"])) == pytest.approx(group, rel=1e-10)


@pytest.mark.parametrize("penalty, extra", [(L1(1.0), SPARSE), (GroupLasso(1.0), DIGITS)])
def test_lam_max_is_the_smallest_lam_whose_proximal_step_keeps_the_null_fit(penalty, extra, one_torch_thread):
    """From the null fit (w = 0, the intercept fitted, so its gradient is 0), one proximal gradient
    step w ← prox(w − lr·g, lr·λ) keeps every weight at 0 at λ = λ_max·(1 + 1e-9), and not at
    λ_max·(1 − 1e-6): λ_max is the edge of the all-zero solution."""
    config = load_config("ridge-gd", extra + [f"reg.penalty={penalty.name}"])
    top = estimate(config)
    x, y = train_split(config)
    if penalty.name == "l1":
        grad = torch.from_numpy(2 / len(x) * x.T @ (y - y.mean(0))).T.neg()  # ∇ at w = 0, b = ȳ
    else:
        onehot = np.eye(10)[y]
        grad = torch.from_numpy((onehot.mean(0) - onehot).T @ x / len(x))
    lr = 0.1
    for lam, zero in ((top * (1 + 1e-9), True), (top * (1 - 1e-6), False)):
        step = penalty.stacked_prox((-lr * grad).unsqueeze(0), lr * lam)[0]
        assert bool((step == 0).all()) is zero, lam


def test_a_network_is_read_at_its_initial_weights(one_torch_thread):
    """An MLP's λ_max is max|∇L(w0)| over its weight matrices (not its biases) at its seed's init,
    the data loss on the whole training split in eval mode, in float64."""
    mlp = [*DIGITS[:3], "model.kind=mlp", "model.hidden=[16]", "reg.penalty=l1"]
    config = load_config("ridge-gd", mlp)
    exp = prepare(config)
    model = exp.model.double().eval()
    x, y = exp.tensors["train"]
    loss = torch.nn.functional.cross_entropy(model(x.double()), y)
    weights = [p for name, p in model.named_parameters() if p.dim() == 2]
    grads = torch.autograd.grad(loss, weights)
    assert estimate(config) == pytest.approx(max(float(g.abs().max()) for g in grads), rel=1e-10)
    assert estimate(load_config("ridge-gd", mlp + ["seed=1"])) != estimate(config)


def test_a_study_stores_each_familys_lam_and_resumes(tmp_path, monkeypatch, capsys, one_torch_thread):
    monkeypatch.chdir(tmp_path)
    args = ["sweep", "ridge-gd", *TINY, *SPARSE, "--grid", "reg=l1,l2,none", "--grid", "reg.lam=auto:5", "--name", "a"]
    code, out, err = cli(monkeypatch, capsys, *args)
    assert code == 0, err
    assert "11 trials: 11 points × 1 seed" in out
    storage = f"sqlite:///{tmp_path / 'studies' / 'a' / 'study.db'}"
    study = optuna.load_study(study_name="a", storage=storage)
    spec = study.user_attrs["spec"]
    assert spec["grids"][-1] == "reg.lam=auto:5:0.0001"
    l1, l2 = spec["auto"]
    assert (l1["penalty"], l2["penalty"], len(l1["lams"]), len(l2["lams"])) == ("l1", "l2", 5, 5)
    x, y = train_split(load_config("ridge-gd", SPARSE + ["reg.penalty=l1"]))
    alphas = _alpha_grid(x, y[:, 0], fit_intercept=True, eps=1e-4, n_alphas=5)
    np.testing.assert_allclose(l1["lams"], 2 * alphas, rtol=1e-10)
    assert l1["lams"][0] == l1["lam_max"] and l2["lams"][0] == l2["lam_max"] != l1["lam_max"]
    assert f"auto λ for l1: λ_max = {l1['lam_max']:.4g}, 5 values down to {l1['lams'][-1]:.4g}" in out
    trained = {(t.params.get("reg"), t.params.get("reg.lam")) for t in study.trials}
    assert trained == {("l1", lam) for lam in l1["lams"]} | {("l2", lam) for lam in l2["lams"]} | {("none", None)}
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials)
    lams = {json.loads(t.user_attrs["key"])[0].get("reg.lam") for t in study.trials}
    assert lams == {*l1["lams"], *l2["lams"], None}
    code, out, err = cli(monkeypatch, capsys, *args)
    assert code == 0 and "study 'a' resumed: 11/11 trials finished" in out, err


@pytest.mark.parametrize("args, fragment", [
    (["--grid", "reg.lam=auto:0"], "N must be at least 1"),
    (["--grid", "reg.lam=auto:x"], "N 'x' is not a whole number"),
    (["--grid", "reg.lam=auto"], "expected auto:N or auto:N:RATIO"),
    (["--grid", "reg.lam=auto:5:2"], "RATIO (λ_min/λ_max) must be between 0 and 1"),
    (["--grid", "reg.lam=auto:5:y"], "RATIO 'y' is not a number"),
    (["--grid", "reg.lam=auto:5,1e-3"], "auto must be the grid's only value"),
    (["--grid", "reg.l1=auto:5"], "auto chooses reg.lam only, not 'reg.l1'"),
    (["--grid", "model.dropout=auto:5"], "auto chooses reg.lam only"),
    (["reg.penalty=none", "--grid", "reg.lam=auto:5"], "no point of the study has a weight penalty"),
    (["--grid", "reg=none,dropout", "--grid", "reg.lam=auto:5"], "no point of the study has a weight penalty"),
    (["reg.penalty=elastic", "reg.l1_ratio=0", "--grid", "reg.lam=auto:5"], "l1_ratio=0"),
    (["--grid", "reg.lam=auto:5", "--search", "tpe", "--trials", "3"], "--search tpe takes a range"),
    (["--grid", "reg.lam=auto:5", "--grid", "reg.lam=1e-3"], "key 'reg.lam' is in two --grid flags"),
])
def test_bad_auto_grids_are_one_line_errors(args, fragment, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(monkeypatch, capsys, "sweep", "ridge-gd", *TINY, *args, "--workers", "0")
    assert_error(code, err, fragment)
    assert not (tmp_path / "studies").exists()


def test_a_gan_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(monkeypatch, capsys, "sweep", "gan-l1", *TINY, "--grid", "reg.lam=auto:5", "--workers", "0")
    assert_error(code, err, "reg.lam=auto needs a supervised task")
    assert not (tmp_path / "studies").exists()


def test_a_penalty_without_a_rule_is_refused():
    from reglab.lam_max import lam_max
    from reglab.penalties import Penalty

    class Cubic(Penalty):
        name = "cubic"

        def _value(self, w, lam):
            return lam * w.abs().pow(3).sum()

        def _grad(self, w, lam):
            return 3 * lam * w * w.abs()

        def _prox(self, w, t):
            return w

    with pytest.raises(UserError, match="'cubic' has no λ_max rule"):
        lam_max(Cubic(1.0), [torch.ones(2)], [torch.ones(2)])
