"""The one chooser (``reglab.study.choose``) on records built directly: seed means, exact ties
whatever the summation order, the tie rule, the failed-seed rule, a key held twice counted once."""

import math
import random

import pytest

from reglab.study.choose import Candidate, choose, choose_point, one_per_key, simplicity
from reglab.study.records import TrialRecord

ACC = {"metric": "val_acc", "direction": "maximize"}


def rec(label, seed, value=None, status="ok", fold=None, lam=None, family=None, reason=None):
    family = family or label.split(" ")[0]
    summary = {} if value is None else {"val_acc": value}
    return TrialRecord({"label": label}, label, family, lam, seed, fold, status, reason=reason, summary=summary)


def tie_records():
    """Two configs with equal correct counts over three seeds (2400 of 3000 examples each), per
    seed 700, 800, 900 and 900, 700, 800 of 1000: their float sums differ in the last bit."""
    records = []
    for seed, (l1, drop) in enumerate([(700, 900), (800, 700), (900, 800)]):
        records.append(rec("l1 λ=0.0001", seed, l1 / 1000, lam=1e-4))
        records.append(rec("dropout p=0.1", seed, drop / 1000, lam=0.1))
        records.append(rec("none", seed, 0.75))
    return records


def test_float_sums_of_the_tie_differ_so_a_plain_mean_would_pick_by_rounding():
    a, b = [0.7, 0.8, 0.9], [0.9, 0.7, 0.8]
    assert sum(a) != sum(b)  # the rounding that picked the demo's winner
    assert math.fsum(a) == math.fsum(b)


def test_an_exact_tie_is_broken_by_the_stronger_regularization_in_any_record_order():
    records = tie_records()
    orders = [records, records[::-1]] + [random.Random(i).sample(records, len(records)) for i in range(50)]
    choices = [choose_point(ACC, order) for order in orders]
    assert len({(c.label, c.tied, c.broken_by, c.score) for c in choices}) == 1
    choice = choices[0]
    assert choice.label == "dropout p=0.1"  # p = 0.1 > λ = 1e-4: the stronger regularization
    assert choice.tie and choice.tied == ("l1 λ=0.0001",)
    assert choice.broken_by == "the stronger regularization"
    assert choice.tie_text() == "tie with l1 λ=0.0001, broken by the stronger regularization"
    assert choice.score == pytest.approx(0.8) and choice.seeds == 3


def test_a_tie_at_equal_strength_goes_to_the_simpler_family_then_the_label():
    for first, second in [("l2", "l1"), ("l1", "elastic"), ("none", "l2"), ("l2", "dropout")]:
        records = [rec(f"{f} λ=0.01", s, 0.5, lam=0.01, family=f) for f in (second, first) for s in (0, 1)]
        choice = choose_point(ACC, records)
        assert choice.label == f"{first} λ=0.01" and choice.broken_by == "the simpler family"
    # a family with an extra setting is less simple than the plain one
    records = [rec("l2 optim.lr=0.1 λ=0.01", 0, 0.5, lam=0.01, family="l2 optim.lr=0.1"),
               rec("l2 λ=0.01", 0, 0.5, lam=0.01, family="l2")]
    assert choose_point(ACC, records).label == "l2 λ=0.01"
    records = [rec("l2 optim.lr=0.1 λ=0.01", 0, 0.5, lam=0.01, family="l2 optim.lr=0.1"),
               rec("l2 optim.lr=0.01 λ=0.01", 0, 0.5, lam=0.01, family="l2 optim.lr=0.01")]
    choice = choose_point(ACC, records)
    assert choice.label == "l2 optim.lr=0.01 λ=0.01" and choice.broken_by == "the labels' alphabetical order"
    # the stronger regularization comes before the family: none (strength 0) loses a tie to l1 λ=1e-4
    records = [rec("none", 0, 0.5), rec("l1 λ=0.0001", 0, 0.5, lam=1e-4)]
    assert choose_point(ACC, records).label == "l1 λ=0.0001"


def test_the_family_order_is_the_documented_one():
    order = ["none", "l2", "l1", "elastic", "group", "dropout", "adamw weight_decay", "gp", "r1", "sn", "mypenalty",
             "l2 + adamw weight_decay"]
    assert sorted(order, key=simplicity) == order
    assert simplicity("l2 optim.lr=0.01") > simplicity("l2")


def test_no_tie_without_equal_scores():
    records = [rec("a", 0, 0.8), rec("b", 0, 0.8 + 1e-6)]
    choice = choose_point(ACC, records)
    assert choice.label == "b" and not choice.tie and choice.broken_by is None and choice.tie_text() == ""


def test_folds_are_averaged_within_a_seed_before_the_seeds():
    # a: seed 0 has folds 0.9, 0.9, 0.9 and seed 1 one fold 0.5; the seed means are 0.9 and 0.5: 0.7
    # (a flat mean over the four runs would give 0.8 and beat b's 0.75)
    records = [rec("a", 0, 0.9, fold=f) for f in range(3)] + [rec("a", 1, 0.5, fold=0)]
    records += [rec("b", s, 0.75, fold=0) for s in (0, 1)]
    choice = choose_point(ACC, records)
    assert (choice.label, choice.seeds) == ("b", 2)
    assert choose(
        [Candidate("a", "a", None, {}, [r for r in records if r.label == "a"])], "val_acc", "maximize"
    ).score == pytest.approx(0.7)


def test_a_point_that_failed_on_one_seed_is_not_chosen_and_is_named():
    records = [rec("l2 λ=0.001", s, 0.9, lam=1e-3) for s in (0, 1, 2)]
    records.append(rec("l2 λ=0.001", 3, status="failed", lam=1e-3, reason="diverged: loss became nan at step 4"))
    records += [rec("l1 λ=0.0001", s, 0.8, lam=1e-4) for s in (0, 1, 2, 3)]
    records += [rec("none", s, 0.7) for s in (0, 1, 2, 3)]
    choice = choose_point(ACC, records)
    assert choice.label == "l1 λ=0.0001" and choice.seeds == 4
    (passed,) = choice.passed_over
    assert (passed.label, passed.seeds, passed.failed_seeds) == ("l2 λ=0.001", 3, (3,))
    assert passed.text() == "l2 λ=0.001 (0.9 on 3 seeds) failed on seed 3: diverged: loss became nan at step 4"
    # a failed point that would not have won is not named
    records[0:3] = [rec("l2 λ=0.001", s, 0.1, lam=1e-3) for s in (0, 1, 2)]
    assert choose_point(ACC, records).passed_over == ()
    # nothing to choose when every point failed somewhere
    assert choose_point(ACC, [rec("a", 0, 0.9), rec("a", 1, status="failed")]) is None


def test_a_key_held_twice_counts_once():
    # seed 0 of "a" is in storage twice (queued twice): a flat mean would count it double
    records = [rec("a", 0, 0.9), rec("a", 0, 0.9), rec("a", 1, 0.6), rec("b", 0, 0.76), rec("b", 1, 0.76)]
    assert len(one_per_key(records)) == 4
    choice = choose_point(ACC, records)
    assert (choice.label, choice.seeds, choice.score) == ("b", 2, pytest.approx(0.76))  # a: (0.9 + 0.6) / 2
    # of a key held twice, a finished attempt counts before a failed or unfinished one
    lost = rec("a", 1, status="failed", reason="its worker stopped sending heartbeats")
    kept = one_per_key([lost, rec("a", 1, status="running"), rec("a", 1, 0.6)])
    assert [(r.status, r.summary) for r in kept] == [("ok", {"val_acc": 0.6})]
    assert one_per_key([rec("a", 1, status="waiting"), lost])[0] is lost


def test_the_choice_is_json_ready_for_the_study_attribute():
    import json

    choice = choose_point(ACC, tie_records())
    stored = json.loads(json.dumps(choice.to_dict()))
    assert stored["label"] == "dropout p=0.1" and stored["tie"] is True and stored["tied"] == ["l1 λ=0.0001"]
    assert stored["point"] == {"label": "dropout p=0.1"} and stored["seeds"] == 3
