"""``--prune halving``: the rung schedule, and real SQLite studies pruned by successive halving: the
pruned trials are Optuna's PRUNED, never chosen, listed by the report, cost fewer model-epochs,
leave the kept points' results as a full grid gives them, and are never rerun on resume."""

import json
import math
from fractions import Fraction
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import reglab as rl
from reglab.cli import main
from reglab.report import build_report
from reglab.study.choose import choose_point
from reglab.study.records import TrialRecord
from reglab.study.storage import default_url
from reglab.study.worker import Worker
from reglab.train.halving import Halving, halvings, kept, rungs, survivors

TINY = ["data.n_train=400", "model.hidden=[32]", "model.dropout=0", "train.epochs=9", "train.plots=false",
        "train.save_weights=false"]
GRID = {"reg": ["none", "l2", "l1", "dropout"], "reg.lam": [1e-5, 1e-4, 1e-3], "reg.dropout": [0.1, 0.3, 0.5]}


# --- the schedule ---------------------------------------------------------------------------

def reference_rungs(epochs, points, eta, min_epochs=1):
    """The rule written out with exact fractions: s is the largest integer with η^s ≤ n, rungs at
    ⌈E/η^k⌉ for k = s..1."""
    s = max(k for k in range(0, 64) if eta ** k <= points)
    return sorted({math.ceil(Fraction(epochs, eta ** k)) for k in range(1, s + 1)} - set(range(min_epochs))
                  - {epochs})


@pytest.mark.parametrize("epochs", [1, 2, 3, 9, 10, 30, 60, 100])
@pytest.mark.parametrize("points", [1, 2, 3, 8, 9, 10, 27, 28, 100])
@pytest.mark.parametrize("eta", [2, 3, 4])
def test_the_rungs_are_the_ceiling_of_epochs_over_powers_of_eta(epochs, points, eta):
    assert rungs(epochs, points, eta) == reference_rungs(epochs, points, eta)
    assert halvings(points, eta) == math.floor(math.log(points, eta) + 1e-12)


def test_the_demo_grid_has_rungs_after_epochs_4_and_10_keeping_4_then_2_points():
    assert rungs(30, 10, 3) == [4, 10]
    assert (kept(10, 3), kept(4, 3)) == (4, 2)
    # model-epochs per seed: 10 points × 4 + 4 × 6 + 2 × 20 of 10 × 30
    assert (10 * 4 + 4 * 6 + 2 * 20) / (10 * 30) < 0.40


def test_no_rung_before_min_epochs_and_none_for_a_single_point():
    assert rungs(30, 10, 3, min_epochs=5) == [10]
    assert rungs(30, 1, 3) == []
    assert rungs(3, 10, 3) == [1]  # ⌈3/9⌉ = ⌈3/3⌉ = 1: one rung, once


def test_a_rung_keeps_the_best_third_and_those_tied_with_the_last_kept_and_drops_failed_points():
    acc = Halving("val_acc", "maximize")
    scores = {"a": 0.9, "b": 0.8, "c": 0.7, "d": 0.6, "e": 0.5, "f": None}
    assert survivors(scores, acc) == ["a", "b"]  # ⌈6/3⌉ = 2
    assert survivors({**scores, "c": 0.8}, acc) == ["a", "b", "c"]  # c ties b
    loss = Halving("val_loss", "minimize")
    assert survivors({"a": 0.9, "b": 0.1, "c": 0.5}, loss) == ["b"]


# --- the chooser ----------------------------------------------------------------------------

def rec(label, seed, value, status="ok"):
    return TrialRecord({"label": label}, label, label.split()[0], None, seed, None, status,
                       summary={"val_acc": value})


def test_the_chooser_never_picks_a_pruned_point_even_when_its_numbers_are_best():
    """A pruned run's summary may hold a better number (here 0.99) than any finished point's; a
    point with a pruned run, even one whose other seed finished first (early stopping), is out."""
    records = [rec("l2 λ=0.1", 0, 0.99, "pruned"), rec("l2 λ=0.1", 1, 0.99, "pruned"),
               rec("l1 λ=0.1", 0, 0.98), rec("l1 λ=0.1", 1, 0.98, "pruned"),
               rec("none", 0, 0.5), rec("none", 1, 0.6)]
    choice = choose_point({"metric": "val_acc", "direction": "maximize"}, records)
    assert choice.label == "none" and not choice.passed_over


# --- real studies ---------------------------------------------------------------------------

def sweep(tmp_path, name, prune, lines=None, **kw):
    return rl.sweep("mlp-l2", *TINY, grid=GRID, seeds="0-2", name=name, studies_dir=tmp_path / "studies",
                    echo=(lines.append if lines is not None else None), prune=prune, **kw)


def trials(study):
    return optuna.load_study(study_name=study.name, storage=default_url(study.folder)).get_trials()


def model_epochs(study):
    return sum(r.summary["epochs_run"] for r in study.records()[1])


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("prune")
    lines = []
    pruned = sweep(tmp, "pruned", "halving", lines)
    full = sweep(tmp, "full", None)
    return tmp, pruned, full, lines


def test_pruned_trials_are_optunas_pruned_with_their_curve_and_count_as_done(studies):
    tmp, pruned, _, lines = studies
    assert pruned.finished
    all_trials = trials(pruned)
    states = {t.state for t in all_trials}
    assert states == {TrialState.COMPLETE, TrialState.PRUNED}
    # 10 points, 9 epochs, η = 3: rungs after epochs 1 and 3 (⌈9/9⌉, ⌈9/3⌉)
    cut = [t for t in all_trials if t.state == TrialState.PRUNED]
    assert cut and len(cut) % 3 == 0  # whole points: all three seeds
    for t in cut:
        assert t.user_attrs["status"] == "pruned" and "successive halving" in t.user_attrs["reason"]
        epoch = t.system_attrs["summary"]["epoch"]
        assert epoch in (1, 3) and t.system_attrs["summary"]["epochs_run"] == epoch
        assert sorted(t.intermediate_values) == list(range(1, epoch + 1))
        summary = json.loads((Path(t.user_attrs["run_dir"]) / "summary.json").read_text())
        assert summary["status"] == "pruned" and summary["epoch"] == epoch
    assert any(line.startswith(f"{len(all_trials)} trials done ({len(cut)} of them pruned)") for line in lines)


def test_pruning_costs_fewer_model_epochs_and_leaves_the_kept_points_as_the_full_grid_trains_them(studies):
    _, pruned, full, _ = studies
    assert model_epochs(pruned) < 0.8 * model_epochs(full)
    full_runs = {(r.label, r.seed): r.summary for r in full.records()[1]}
    kept_runs = [r for r in pruned.records()[1] if r.status == "ok"]
    assert kept_runs
    for r in kept_runs:
        assert r.summary["val_acc"] == full_runs[r.label, r.seed]["val_acc"], r.label


def test_the_chooser_and_the_report_never_choose_or_compare_a_pruned_point(studies):
    tmp, pruned, _, _ = studies
    cut = {r.label for r in pruned.records()[1] if r.status == "pruned"}
    assert pruned.chosen().label not in cut
    stored = optuna.load_study(study_name=pruned.name, storage=default_url(pruned.folder)).user_attrs["chosen"]
    assert stored["label"] == pruned.chosen().label
    result = build_report([str(pruned.folder)], tmp / "report")
    analysis = result.analysis
    assert analysis.progress.complete
    assert not {c.label for c in analysis.configs} & cut
    assert not {c.chosen.label for c in analysis.comparisons} & cut
    assert not {c.baseline.label for c in analysis.comparisons} & cut
    page = (tmp / "report" / "index.html").read_text()
    assert "Pruned configs" in page and all(label in page for label in cut)
    from_folders = build_report([str(pruned.folder / "runs")], tmp / "report-runs")  # the run folders alone
    assert from_folders.analysis.progress.complete
    assert {r.label for r in from_folders.analysis.pruned} == cut
    assert from_folders.analysis.choice.label == pruned.chosen().label


def test_reglab_studies_shows_the_pruned_count(studies, capsys, monkeypatch):
    tmp, pruned, _, _ = studies
    monkeypatch.setattr("sys.argv", ["reglab", "studies", "--dir", str(tmp / "studies")])
    main()
    out = capsys.readouterr().out
    n_pruned = sum(t.state == TrialState.PRUNED for t in trials(pruned))
    header = next(line for line in out.splitlines() if "pruned" in line)
    row = next(line for line in out.splitlines() if line.strip("│ ").startswith("pruned "))
    cells = [c.strip() for c in row.split("│") if c.strip()]
    names = [c.strip() for c in header.replace("┃", "│").split("│") if c.strip()]
    assert cells[names.index("pruned")] == str(n_pruned)


def test_rerunning_the_command_trains_nothing_and_keeps_every_pruned_trial(studies):
    tmp, pruned, _, _ = studies
    before = {t.number: (t.state, t.user_attrs.get("run_dir")) for t in trials(pruned)}
    folders = sorted(p.name for p in (pruned.folder / "runs" / "mlp-l2").iterdir())
    lines = []
    again = sweep(tmp, "pruned", "halving", lines)
    assert again.finished
    assert {t.number: (t.state, t.user_attrs.get("run_dir")) for t in trials(again)} == before
    assert sorted(p.name for p in (pruned.folder / "runs" / "mlp-l2").iterdir()) == folders
    assert not any("successive halving (η" in line for line in lines)


def test_a_worker_interrupted_after_one_fold_resumes_the_other_and_never_reruns_a_pruned_trial(tmp_path, monkeypatch):
    """With --cv 2 a prune group is a fold. A worker stopped (Ctrl-C) right after storing fold 0's
    outcomes leaves fold 1 waiting; the same command then trains fold 1 only."""
    stored = Worker.complete

    def complete_then_stop(self, claimed, outcomes):
        stored(self, claimed, outcomes)
        raise KeyboardInterrupt

    monkeypatch.setattr(Worker, "complete", complete_then_stop)
    with pytest.raises(KeyboardInterrupt):
        sweep(tmp_path, "cv", "halving", cv=2)
    first = trials_of(tmp_path, "cv")
    done = {t.number: t for t in first if t.state in (TrialState.COMPLETE, TrialState.PRUNED)}
    assert len({t.user_attrs.get("fold") for t in done.values()}) == 1  # one prune group: one whole fold
    assert any(t.state == TrialState.PRUNED for t in done.values())
    assert all(t.state == TrialState.WAITING for t in first if t.number not in done)
    monkeypatch.setattr(Worker, "complete", stored)
    study = sweep(tmp_path, "cv", "halving", cv=2)
    assert study.finished
    after = trials_of(tmp_path, "cv")
    assert len(after) == len(first)  # no retry, no trial added
    for t in after:
        if t.number in done:
            assert (t.state, t.user_attrs["run_dir"]) == (done[t.number].state, done[t.number].user_attrs["run_dir"])
    assert {t.state for t in after} == {TrialState.COMPLETE, TrialState.PRUNED}


def trials_of(tmp_path, name):
    return optuna.load_study(study_name=name, storage=default_url(tmp_path / "studies" / name)).get_trials()


def test_points_that_train_one_at_a_time_are_pruned_rung_by_rung_too(tmp_path):
    """``reg.on`` other than the default selection is not vectorized: each run is a stack of one
    by the task's own step, and the rungs still compare every point on all its seeds."""
    grid = {"reg.lam": [1e-5, 1e-3, 1e-1, 3e-1]}
    base = [*TINY, "reg.on=weights - head.*"]
    pruned = rl.sweep("mlp-l2", *base, grid=grid, seeds="0-1", name="alone", studies_dir=tmp_path / "studies",
                      echo=None, prune="halving")
    full = rl.sweep("mlp-l2", *base, grid=grid, seeds="0-1", name="alone-full", studies_dir=tmp_path / "studies",
                    echo=None)
    records = pruned.records()[1]
    assert {r.status for r in records} == {"ok", "pruned"}
    assert all(r.summary.get("vectorized") is None for r in records)
    # 4 points, η = 3: one rung after ⌈9/3⌉ = 3 epochs keeping ⌈4/3⌉ = 2 points (ties aside)
    assert {r.summary["epoch"] for r in records if r.status == "pruned"} == {3}
    full_runs = {(r.label, r.seed): r.summary["val_acc"] for r in full.records()[1]}
    for r in records:
        if r.status == "ok":
            assert r.summary["val_acc"] == full_runs[r.label, r.seed]
    assert pruned.chosen().label == full.chosen().label or pruned.chosen().label in {
        r.label for r in records if r.status == "ok"}


@pytest.mark.parametrize("flags, message", [
    (["--prune", "prune-it"], "--prune must be none or halving, got 'prune-it'"),
    (["--prune", "halving", "--prune-eta", "1"], "--prune-eta must be at least 2, got 1"),
    (["--prune", "halving", "--prune-min-epochs", "0"], "--prune-min-epochs must be at least 1, got 0"),
    (["--prune", "halving", "--search", "tpe", "--trials", "2"], "--prune halving applies to --search grid"),
    (["--prune", "halving", "--grid", "train.epochs=2,4"], "do not put train.epochs in a --grid"),
])
def test_a_bad_prune_flag_is_one_error_line_and_leaves_no_study(tmp_path, monkeypatch, capsys, flags, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("sys.argv", ["reglab", "sweep", "ridge-gd", "train.epochs=2", "--grid", "reg.lam=0.1,1",
                                     *flags])
    with pytest.raises(SystemExit) as exit_:
        main()
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "studies").exists() or not any((tmp_path / "studies").iterdir())


def test_the_python_api_reads_a_pruned_study_as_finished_and_its_pruned_configs_as_pruned(studies):
    _, pruned, _, _ = studies
    opened = rl.Study.open(pruned.folder)
    assert opened.finished  # every trial has ended: pruned ones never run again
    table = opened.summary()
    cut = {r.label for r in pruned.records()[1] if r.status == "pruned"}
    assert cut and set(table.loc[table["status"] == "pruned", "label"]) == cut
    assert not table.loc[table["label"].isin(cut), "chosen"].any()
    assert f"{len(pruned.records()[1])} of" in opened._repr_html_()  # all trials counted as finished
