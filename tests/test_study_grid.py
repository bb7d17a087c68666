"""Grid and seed specs, point normalization and labels, and the trial plan of a study."""

import math

import pytest

from reglab.errors import UserError
from reglab.study.grid import Range, parse_grid, parse_seeds, product
from reglab.study.points import settings, grid_points, trial_plan
from reglab.study.spec import config_for, default_name, make_spec


def test_log_range_is_geometric_and_inclusive():
    values = parse_grid("reg.l2=1e-5:1e-1:log:5").values()
    expected = [10.0**k for k in range(-5, 0)]
    assert values == pytest.approx(expected, rel=1e-12)
    nine = parse_grid("reg.lam=1e-4:1:log:9").values()
    ratios = [b / a for a, b in zip(nine, nine[1:])]
    assert ratios == pytest.approx([10 ** 0.5] * 8, rel=1e-9)
    assert (nine[0], nine[-1]) == (1e-4, 1.0)


def test_lin_range_mixed_with_scalars_keeps_order_and_drops_repeats():
    grid = parse_grid("reg.lam=0,0:1:lin:5,2")
    assert grid.values() == pytest.approx([0, 0.25, 0.5, 0.75, 1.0, 2])
    assert isinstance(grid.tokens[1], Range) and grid.tokens[1].scale == "lin"


def test_scalars_lists_and_yaml_numbers():
    assert parse_grid("reg=none,l2,l1,dropout").values() == ["none", "l2", "l1", "dropout"]
    assert parse_grid("reg.l2=1e-3,0.5").values() == [1e-3, 0.5]
    assert all(isinstance(v, float) for v in parse_grid("reg.l2=1e-3,2E-4").values())
    assert parse_grid("model.hidden=[64,32],[16]").values() == [[64, 32], [16]]


def test_several_grids_make_a_product():
    points = product([parse_grid("reg=l1,l2"), parse_grid("reg.lam=1e-3,1e-2,1e-1")])
    assert len(points) == 6
    assert {(p["reg"], p["reg.lam"]) for p in points} == {(r, lam) for r in ("l1", "l2") for lam in (1e-3, 1e-2, 1e-1)}
    with pytest.raises(UserError, match="reg.lam.*two --grid"):
        product([parse_grid("reg.lam=1"), parse_grid("reg.lam=2")])


@pytest.mark.parametrize("spec, token, why", [
    ("reg.l2=0,1e-5:1e-1:lug:9", "1e-5:1e-1:lug:9", "'lug' is neither log nor lin"),
    ("reg.l2=1e-5:1e-1:log", "1e-5:1e-1:log", "3 parts"),
    ("reg.l2=0,a:1:lin:3", "a:1:lin:3", "must be numbers"),
    ("reg.l2=1e-5:1e-1:log:x", "1e-5:1e-1:log:x", "not a whole number"),
    ("reg.l2=0:1e-1:log:3", "0:1e-1:log:3", "above 0"),
    ("reg.l2=1:2:lin:0", "1:2:lin:0", "at least 1"),
])  # fmt: skip
def test_bad_token_is_quoted_with_its_position(spec, token, why):
    with pytest.raises(UserError) as err:
        parse_grid(spec)
    message = str(err.value)
    assert f"bad grid token '{token}'" in message and f"--grid '{spec}'" in message
    assert "START:STOP:log|lin:COUNT" in message and why in message
    position = spec.split("=", 1)[1].split(",").index(token) + 1
    assert f"(value {position})" in message
    assert "\n" not in message


def test_empty_token_and_missing_equals():
    with pytest.raises(UserError, match=r"bad grid token '' \(value 2\)"):
        parse_grid("reg.l2=1,,2")
    with pytest.raises(UserError, match="expected KEY=VALUE"):
        parse_grid("reg.l2")


def test_unknown_key_names_the_closest_valid_key():
    with pytest.raises(UserError, match=r"unknown config key 'reg.lamda'.*did you mean 'reg.lam'\?"):
        parse_grid("reg.lamda=1,2")
    with pytest.raises(UserError, match="did you mean 'optim.weight_decay'"):
        parse_grid("optim.weight_decy=0,1e-4")
    with pytest.raises(UserError, match="--seeds"):
        parse_grid("seed=0,1")


@pytest.mark.parametrize("text, seeds", [("5", [5]), ("0-9", list(range(10))), ("0,3,7", [0, 3, 7]),
                                         ("0-2,10", [0, 1, 2, 10]), (" 1 , 1-2 ", [1, 2])])
def test_seed_specs(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", "a", "3-1", "1-", "-2", "1.5"])
def test_bad_seed_specs(text):
    with pytest.raises(UserError, match="bad --seeds"):
        parse_seeds(text)


def test_none_times_a_lambda_grid_is_one_point():
    spec = make_spec("mlp-l2", ["model.dropout=0"], ["reg=none,l2,dropout", "reg.lam=1e-4:1e-2:log:3"], "0", None)
    points = grid_points(spec)
    labels = [p.label for p in points]
    assert labels == ["none", "l2 λ=0.0001", "l2 λ=0.001", "l2 λ=0.01", "dropout p=0.2"]
    none = points[0]
    assert none.values == {"reg": "none"} and none.lam is None and none.family == "none"
    assert {p.family for p in points[1:4]} == {"l2"} and [p.lam for p in points[1:4]] == pytest.approx([1e-4, 1e-3, 1e-2])
    dropout = points[-1]
    assert dropout.values == {"reg": "dropout"} and dropout.lam == config_for(spec, {"reg": "dropout"}, 0, None).model.dropout


def test_dropout_is_a_model_setting_and_its_family_is_derived():
    """reg=dropout is no weight penalty and model.dropout=p: on mlp-l2, whose model has dropout 0.2
    of its own, reg=dropout at 0.2 trains what reg=none trains, so the two are one point."""
    spec = make_spec("mlp-l2", [], ["reg=none,dropout", "reg.dropout=0.2,0.5"], "0", None)
    points = grid_points(spec)
    assert [p.label for p in points] == ["none", "dropout p=0.5"]
    config = config_for(spec, points[1].values, 0, None)
    assert (config.reg.penalty, config.model.dropout) == ("none", 0.5)
    # a dropout rate among a point's keys makes the dropout family; beside a penalty it is a setting
    spec = make_spec("mlp-l2", [], ["reg=none,l2", "reg.lam=1e-3", "model.dropout=0,0.3"], "0", None)
    assert [p.label for p in grid_points(spec)] == ["none", "dropout p=0.3", "l2 model.dropout=0 λ=0.001",
                                                    "l2 model.dropout=0.3 λ=0.001"]


def test_the_grid_keeps_only_the_chosen_penaltys_settings():
    """l1_ratio is elastic's setting: an l2 point does not keep it, so the l2 × l1_ratio points
    that would train identical models are one point, and each elastic point keeps its own."""
    spec = make_spec("mlp-l2", [], ["reg=l2,elastic", "reg.l1_ratio=0.2,0.8"], "0", None)
    points = grid_points(spec)
    assert [p.label for p in points] == ["l2 λ=0.0001", "elastic reg.l1_ratio=0.2 λ=0.0001",
                                         "elastic reg.l1_ratio=0.8 λ=0.0001"]
    assert points[0].values == {"reg": "l2"}
    configs = [config_for(spec, p.values, 0, None) for p in points]
    assert [c.reg.penalty_settings() for c in configs] == [{}, {"l1_ratio": 0.2}, {"l1_ratio": 0.8}]
    assert "reg.l1_ratio" not in settings(configs[0])


def test_a_label_names_one_config():
    """``reg.l2`` after ``reg=none`` sets the penalty again: both grid values give the same config,
    which must be one point (it was two points sharing one label, pooled in the report)."""
    spec = make_spec("ridge-gd", [], ["reg=none,l2", "reg.l2=1e-4,1e-2"], "0", None)
    points = grid_points(spec)
    assert [p.label for p in points] == ["l2 λ=0.0001", "l2 λ=0.01"]
    settings_of = [settings(config_for(spec, p.values, 0, None)) for p in points]
    assert settings_of[0] != settings_of[1]


def test_gan_presets_collapse_and_read_sensibly():
    spec = make_spec("gan-grid", ["train.epochs=1"], ["gan.regularizer=none,l1,gp,r1,sn", "gan.strength=1,3"],
                     "0", None)
    points = grid_points(spec)
    assert [p.label for p in points] == ["none", "l1 λ=0.0001", "l1 λ=0.0003", "gp λ=0.1", "gp λ=0.3",
                                         "r1 γ=0.1", "r1 γ=0.3", "sn"]
    assert [p.family for p in points] == ["none", "l1", "l1", "gp", "gp", "r1", "r1", "sn"]
    assert points[0].lam is None and points[-1].lam is None and points[4].lam == pytest.approx(0.3)


def test_strength_of_dropout_and_weight_decay_grids():
    spec = make_spec("mlp-l2", [], ["reg=dropout", "reg.dropout=0.1,0.3"], "0", None)
    assert [(p.label, p.lam) for p in grid_points(spec)] == [("dropout p=0.1", 0.1), ("dropout p=0.3", 0.3)]
    spec = make_spec("mlp-l2", ["reg=none", "optim.name=adamw"], ["optim.weight_decay=0,1e-2"], "0", None)
    points = grid_points(spec)
    assert [p.lam for p in points] == [0, 1e-2]
    assert {p.family for p in points} == {"adamw weight_decay"}


def test_plan_has_one_trial_per_point_seed_and_fold():
    spec = make_spec("ridge-gd", [], ["reg=none,l2", "reg.lam=0.1,1"], "0-2", 3)
    plan = trial_plan(spec)
    assert len(plan) == 3 * 3 * 3  # (none, l2 λ=0.1, l2 λ=1) × 3 seeds × 3 folds
    assert len({t["key"] for t in plan}) == len(plan)
    assert {(t["seed"], t["fold"]) for t in plan} == {(s, f) for s in range(3) for f in range(3)}
    config = config_for(spec, plan[-1]["point"], plan[-1]["seed"], plan[-1]["fold"])
    assert (config.data.n_folds, config.data.fold, config.seed) == (3, plan[-1]["fold"], plan[-1]["seed"])


def test_spec_checks_and_names():
    spec = make_spec("ridge-gd", ["train.epochs=5"], ["reg.lam=0,1"], "0-1", None)
    assert spec["metric"] == "val_loss" and spec["direction"] == "minimize"
    assert default_name(spec) == default_name(make_spec("ridge-gd", ["train.epochs=5"], ["reg.lam=0,1"], "0-1", None))
    assert default_name(spec) != default_name(make_spec("ridge-gd", ["train.epochs=6"], ["reg.lam=0,1"], "0-1", None))
    assert make_spec("mlp-l2", [], [], "0", None)["metric"] == "val_acc"
    adversarial = make_spec("adversarial-l2", [], [], "0", None)  # robustness is what it trains for
    assert (adversarial["metric"], adversarial["direction"]) == ("robust_val_acc", "maximize")
    gan = make_spec("gan-grid", [], [], "0", None)
    assert (gan["metric"], gan["direction"]) == ("reverse_kl", "minimize")
    for args, fragment in [
        ((["seed=3"], [], "0", None), "--seeds"),
        (([], [], "0", 1), "at least 2 folds"),
        ((["optim.lrr=1"], [], "0", None), "did you mean 'optim.lr'"),
    ]:
        with pytest.raises(UserError, match=fragment):
            make_spec("ridge-gd", *args)
    with pytest.raises(UserError, match="invalid value for 'reg.lam'"):
        grid_points(make_spec("ridge-gd", [], ["reg.lam=-1,1"], "0", None))
    with pytest.raises(UserError, match="needs --trials"):
        make_spec("ridge-gd", [], ["reg.lam=0,1"], "0", None, search="tpe")
    assert math.isclose(parse_grid("reg.lam=1:100:log:3").values()[1], 10.0)
