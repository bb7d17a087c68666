"""One answer to "which config won" on tiny real studies (SQLite, real training): the sweep's
line, ``Study.chosen()``, the report and the study's ``chosen`` attribute name the same config,
when two configs tie exactly, when the otherwise best point diverged on one seed, and when storage
holds a trial twice."""

import statistics
from collections import defaultdict

import optuna
import pytest
from optuna.trial import TrialState, create_trial

import reglab as rl
from reglab.report import build_report
from reglab.report.verdicts import display_label
from reglab.study.execute import train_all
from reglab.study.records import load_study
from reglab.study.spec import config_for
from reglab.study.storage import default_url, open_storage
from reglab.study import transactions
from reglab.study.worker import Worker, identity

MLP = ["data.n_train=1000", "train.epochs=10", "model.hidden=[32]", "train.plots=false", "train.save_weights=false"]
RIDGE = ["train.epochs=30", "train.plots=false", "train.save_weights=false"]


def run_study(tmp_path, recipe, overrides, grid, seeds, name, workers=1):
    lines = []
    study = rl.sweep(recipe, *overrides, grid=grid, seeds=seeds, name=name, studies_dir=tmp_path / "studies",
                     workers=workers, echo=lines.append)
    return study, lines


def chosen_line(lines):
    (line,) = [line for line in lines if line.startswith("chosen on validation")]
    return line


def stored_choice(study):
    loaded = optuna.load_study(study_name=study.name, storage=default_url(study.folder))
    return loaded.user_attrs["chosen"]


def seed_values(records, metric):
    """label → seed → the run's value, read from the records (one fold per seed here)."""
    values = defaultdict(dict)
    for r in records:
        if r.status == "ok":
            values[r.label][r.seed] = r.summary[metric]
    return values


def test_an_exact_tie_gets_one_answer_everywhere_and_is_said(tmp_path):
    """l2 and l1 at λ = 1e-12 train the same classifier to the same correct counts on every seed:
    an exact tie. The stronger regularization is equal, so the simpler family (l2) wins, and every
    place says so; before, the sweep took the first point in grid order and the report the first
    family in alphabetical order."""
    study, lines = run_study(tmp_path, "mlp-l2", MLP, {"reg": ["l2", "l1"], "reg.lam": [1e-12]}, "0-1", "tie")
    assert study.finished
    spec, records = study.records()
    values = seed_values(records, "val_acc")
    assert values["l2 λ=1e-12"] == values["l1 λ=1e-12"], "the two points must tie exactly for this test"
    line = chosen_line(lines)
    assert ": l2 λ=1e-12 (" in line and line.endswith("(tie with l1 λ=1e-12, broken by the simpler family)")
    choice = study.chosen().choice  # the chooser's whole answer
    assert (choice.label, choice.tied, choice.broken_by) == ("l2 λ=1e-12", ("l1 λ=1e-12",), "the simpler family")
    assert choice.score == pytest.approx(statistics.mean(values["l2 λ=1e-12"].values())) and choice.seeds == 2
    analysis = build_report([study.folder], tmp_path / "report").analysis
    assert analysis.choice == choice
    assert analysis.best.startswith("Chosen on validation among all configs: L2 λ=1e-12, ")
    assert "a tie on validation with L1 λ=1e-12, broken by the simpler family" in analysis.best
    assert "a tie on validation with L1 λ=1e-12" in (tmp_path / "report" / "index.html").read_text()
    assert stored_choice(study) == choice.to_dict()


def diverge(storage, name, folder, label, seed):
    """The trial of ``label`` on ``seed`` ends as a run that diverged: it is claimed as a worker
    claims it, and its outcome is that of a real run of its config at a learning rate of 1e6."""
    study = optuna.load_study(study_name=name, storage=storage)
    spec = study.user_attrs["spec"]
    (trial,) = [t for t in study.get_trials(states=(TrialState.WAITING,))
                if t.user_attrs["label"] == label and t.user_attrs["seed"] == seed]
    attrs = trial.user_attrs
    trial_id = storage.get_trial_id_from_study_id_trial_number(storage.get_study_id_from_name(name), trial.number)
    assert transactions.claim(storage, [trial_id], 1, identity()) == [trial_id]
    config = config_for(spec, {**attrs["point"], "optim.lr": 1e6}, attrs["seed"], attrs.get("fold"))
    (out,) = train_all([config], folder / "runs", False)
    assert out["status"] == "failed" and out["reason"].startswith("diverged")
    waiting = transactions.Waiting(trial_id, trial.number, attrs, trial.params)
    Worker(storage, name, folder / "runs", 1, lambda line: None).complete([waiting], [out])
    return out["reason"]


def test_a_point_that_diverged_on_one_seed_is_passed_over_and_named_everywhere(tmp_path):
    grid, seeds = {"reg.l2": [1e-3, 1e-1, 1]}, "0-2"
    clean, _ = run_study(tmp_path, "ridge-gd", RIDGE, grid, seeds, "clean")
    means = {label: statistics.mean(v.values()) for label, v in seed_values(clean.records()[1], "val_loss").items()}
    best, runner_up = sorted(means, key=means.get)[:2]
    # the same study, whose best point diverges on seed 1
    _, lines = run_study(tmp_path, "ridge-gd", RIDGE, grid, seeds, "failed", workers=0)
    folder = tmp_path / "studies" / "failed"
    reason = diverge(open_storage(default_url(folder)), "failed", folder, best, 1)
    study, lines = run_study(tmp_path, "ridge-gd", RIDGE, grid, seeds, "failed")
    survivors = statistics.mean(v for s, v in seed_values(study.records()[1], "val_loss")[best].items())
    assert survivors < means[runner_up], "on its two finished seeds the diverged point must still look best"

    line = chosen_line(lines)
    assert f": {runner_up} (" in line
    named = f"{best} ({survivors:.4g} on 2 seeds) failed on seed 1: {reason}"
    assert f"  not chosen, as a run failed: {named}" in lines
    choice = study.chosen().choice  # the chooser's whole answer
    assert choice.label == runner_up and choice.score == pytest.approx(means[runner_up]) and choice.seeds == 3
    (passed,) = choice.passed_over
    assert (passed.label, passed.failed_seeds, passed.seeds) == (best, (1,), 2)
    analysis = build_report([study.folder], tmp_path / "report").analysis
    assert analysis.choice == choice
    assert analysis.best.startswith(f"Chosen on validation among all configs: {display_label(runner_up)}, ")
    assert f"not chosen, as a run failed: {display_label(named)}" in analysis.best
    (selection,) = analysis.selections  # the l2 family's λ_min follows the same rule
    assert selection.chosen == choice and selection.choice.lam_min == choice.lam
    assert any(note.startswith("l2: not chosen as λ_min, as a run failed: " + named) for note in analysis.notes)
    assert stored_choice(study)["label"] == runner_up
    assert stored_choice(study)["passed_over"][0]["failed_seeds"] == [1]


def test_a_trial_stored_twice_counts_once(tmp_path):
    """The queue of a study holds one planned trial twice (as two processes that both completed an
    interrupted queue could leave it before the queue was filled under a lock): both are trained. Records, the choice and the report count the key once."""
    grid, seeds = {"reg.l2": [1e-3, 1]}, "0-1"
    run_study(tmp_path, "ridge-gd", RIDGE, grid, seeds, "dup", workers=0)
    storage = open_storage(default_url(tmp_path / "studies" / "dup"))
    twice = optuna.load_study(study_name="dup", storage=storage)
    first = twice.get_trials(deepcopy=False)[0]
    twice.add_trial(create_trial(state=TrialState.WAITING, params=first.params,
                                 distributions=first.distributions, user_attrs=first.user_attrs))
    study, lines = run_study(tmp_path, "ridge-gd", RIDGE, grid, seeds, "dup")
    complete = [t for t in twice.get_trials() if t.state == TrialState.COMPLETE]
    assert len(complete) == 5 and sum(t.user_attrs["key"] == first.user_attrs["key"] for t in complete) == 2

    _, records = load_study(study.folder)
    assert len(records) == 4 and len({(r.label, r.seed) for r in records}) == 4
    values = seed_values(records, "val_loss")
    means = {label: statistics.mean(v.values()) for label, v in values.items()}
    choice = study.chosen().choice  # the chooser's whole answer
    assert choice.label == min(means, key=means.get) and choice.seeds == 2
    assert choice.score == pytest.approx(min(means.values()))
    assert chosen_line(lines).startswith("chosen on validation (mean val_loss over 2 seeds): ")
    result = build_report([study.folder], tmp_path / "report")
    assert result.message == "this report covers all 4 trials"
    assert result.analysis.choice == choice
    assert all(c.n == 2 and len(c.records) == 2 for c in result.analysis.configs)
