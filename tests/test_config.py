"""The config schema: overrides, shorthands, and readable errors for bad input."""

import pytest

import yaml

from reglab.config import (RECIPE_DIR, RegConfig, apply_overrides, load_config, penalty_choices, read_yaml,
                           recipe_path, validate)
from reglab.errors import UserError


def test_every_builtin_recipe_validates():
    names = sorted(p.stem for p in RECIPE_DIR.glob("*.yaml"))
    assert {"ridge-gd", "mlp-l2", "cnn-l2", "l1-sparsity"} <= set(names)
    for name in names:
        cfg = load_config(name)
        assert cfg.name == name
        assert cfg.description


def test_overrides_and_shorthands():
    cfg = load_config("mlp-l2", ["reg.l1=1e-3", "seed=3", "model.hidden=[64, 32]", "optim.lr=0.01"])
    assert (cfg.reg.penalty, cfg.reg.lam, cfg.seed) == ("l1", 1e-3, 3)
    assert cfg.model.hidden == [64, 32] and cfg.optim.lr == 0.01
    none = load_config("mlp-l2", ["reg=none"])
    assert none.reg.penalty == "none" and none.model.dropout == 0.2  # "none" removes the penalty only
    assert load_config("mlp-l2", ["reg=none", "model.dropout=0"]).model.dropout == 0.0
    dropout = load_config("mlp-l2", ["reg=dropout", "reg.dropout=0.3"])
    assert dropout.reg.penalty == "none" and dropout.model.dropout == 0.3  # dropout is a model setting


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("reg.lamda=1", "did you mean 'reg.lam'"),
        ("optim.lr=fast", "invalid value for 'optim.lr'"),
        ("reg.lam=-1", "invalid value for 'reg.lam'"),
        ("reg.l1_ratio=1.5", "invalid value for 'reg.l1_ratio'"),
        ("reg.mode=sideways", "invalid value for 'reg.mode'"),
        ("trian.epochs=3", "did you mean 'train.epochs'"),
        ("epochs", "not of the form key=value"),
    ],
)
def test_bad_overrides_name_the_problem(override, fragment):
    with pytest.raises(UserError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_config("mlp-l2", [override])


def test_unknown_recipe_suggests_the_closest():
    with pytest.raises(UserError, match="did you mean 'mlp-l2'"):
        load_config("mlp-l3")


def test_yaml_file_with_unknown_key(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("data:\n  name: digits\nmodle:\n  kind: mlp\n")
    with pytest.raises(UserError, match="did you mean 'model'"):
        load_config(str(path))


def test_reg_dropout_is_a_shorthand_for_model_dropout():
    assert "dropout" not in penalty_choices() and "dropout" not in RegConfig.model_fields
    # the rate is the list's reg.dropout wherever it stands; without one, 0.2
    assert load_config("cnn-l2", ["reg.dropout=0.4", "reg=dropout"]).model.dropout == 0.4
    assert load_config("cnn-l2", ["reg=dropout"]).model.dropout == 0.2
    # reg.dropout alone sets nothing: a grid over it leaves the penalized points as they are, and a
    # single run is told so
    l2 = validate(apply_overrides(read_yaml(recipe_path("cnn-l2")), [("reg", "l2"), ("reg.dropout", 0.4)]))
    assert (l2.reg.penalty, l2.model.dropout) == ("l2", 0.0)
    with pytest.raises(UserError, match="reg.dropout is the rate of reg=dropout and sets nothing without it"):
        load_config("cnn-l2", ["reg=l2", "reg.dropout=0.4"])


def test_a_config_written_with_reg_penalty_dropout_reads_in_todays_form(tmp_path):
    """Older reglab saved reg.dropout in every config and reg.penalty: dropout for dropout runs."""
    old = load_config("mlp-l2", ["model.dropout=0.3"]).to_dict()
    old["reg"] = {**old["reg"], "penalty": "dropout", "dropout": 0.3}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(old))
    config = load_config(str(path))
    assert (config.reg.penalty, config.model.dropout) == ("none", 0.3)
    old["reg"] = {**old["reg"], "penalty": "l2", "lam": 0.01, "dropout": 0.5}
    config = validate(old)
    assert (config.reg.penalty, config.model.dropout) == ("l2", 0.3)  # reg.dropout was ignored then too
