"""The ``adv`` section: an attack and an objective, ``adv.method`` as their shorthand, and the
attack class's own checks refusing a config before a run."""

import pytest
import yaml

from reglab.adversarial.attacks import FGSMRS, PGD, TRADES
from reglab.adversarial.config import METHODS, training_attack
from reglab.config import load_config, validate
from reglab.errors import UserError


@pytest.mark.parametrize("method", sorted(METHODS))
def test_a_method_is_its_attack_and_objective(method):
    attack, objective = METHODS[method]
    by_method = load_config("adversarial-l2", [f"adv.method={method}"])
    by_pair = load_config("adversarial-l2", [f"adv.attack={attack}", f"adv.objective={objective}"])
    assert by_method == by_pair


def test_a_config_written_with_method_is_read_as_its_pair(tmp_path):
    tree = load_config("adversarial-l2").to_dict()
    del tree["adv"]["attack"], tree["adv"]["objective"]
    tree["adv"]["method"] = "weighted"
    config = validate(yaml.safe_load(yaml.safe_dump(tree)))
    assert (config.adv.attack, config.adv.objective) == ("pgd", "weighted")


def test_the_attack_is_its_class_with_the_adv_keys_of_its_fields():
    adv = load_config("adversarial-l2", ["adv.attack=pgd", "adv.steps=3", "adv.restarts=2", "adv.norm=l2",
                                         "adv.eps=0.5", "adv.alpha=0.2", "adv.attack_mode=train"]).adv
    assert training_attack(adv) == PGD(0.5, alpha=0.2, steps=3, norm="l2", restarts=2, eval_mode=False)
    adv = load_config("adversarial-l2", ["adv.attack=trades", "adv.steps=4"]).adv
    assert training_attack(adv) == TRADES(adv.eps, steps=4)
    adv = load_config("adversarial-l2", ["adv.attack=fgsm-rs", "adv.steps=9"]).adv
    assert training_attack(adv) == FGSMRS(adv.eps)  # one step: adv.steps is no field of it
    assert training_attack(load_config("adversarial-l2", ["adv.attack=none"]).adv) is None


@pytest.mark.parametrize("overrides, message", [
    (["adv.method=trades", "adv.restarts=2"], "adv.attack=trades: TRADES runs once"),
    (["adv.attack=fgsm-rs", "adv.norm=l2", "adv.eps=1"], "fgsm-rs is an L∞ method"),
    (["adv.method=madry"], "adv.method='madry' is not a method"),
    (["adv.attack=madry"], "adv.attack"),
])  # fmt: skip
def test_a_bad_attack_is_refused_by_the_config(overrides, message):
    with pytest.raises(UserError, match=message):
        load_config("adversarial-l2", overrides)
