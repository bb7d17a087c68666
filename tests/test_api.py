"""The lab from Python (``reglab.run``, ``reglab.sweep``) and on a user's own model
(``model.kind=custom``). The README's "From Python / a notebook" and "Your own model" sections are
copied from these tests."""

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import yaml
import pytest
import torch

import reglab as rl
from reglab.stats import bootstrap_ci

TINY = ["data.n_train=300", "train.epochs=3", "train.plots=false"]

MY_MODELS = '''
from torch import nn


def small_mlp(input_shape, n_classes):
    """Any nn.Module: called with one example's shape and the number of classes."""
    width = 1
    for size in input_shape:
        width *= size
    return nn.Sequential(nn.Flatten(), nn.Linear(width, 32), nn.ReLU(), nn.Linear(32, n_classes))
'''


@pytest.fixture
def in_project(tmp_path, monkeypatch):
    """A working directory holding the user's own module ``my_models.py``."""
    (tmp_path / "my_models.py").write_text(textwrap.dedent(MY_MODELS))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    sys.modules.pop("my_models", None)


def test_run_from_python(tmp_path):
    run = rl.run("mlp-l2", "reg.l2=1e-3", "model.hidden=[32]", *TINY, out=tmp_path / "runs")
    assert run.ok and run.path.parent == tmp_path / "runs" / "mlp-l2"
    metrics = run.metrics()
    assert list(metrics["epoch"]) == [1, 2, 3]
    assert run.summary["test_acc"] == json.loads((run.path / "summary.json").read_text())["test_acc"]
    with pytest.raises(rl.UserError, match="unknown config key 'reg.lamda'"):
        rl.run("mlp-l2", "reg.lamda=1e-3")


def test_your_own_model_gets_the_whole_lab(in_project):
    # From Python: a run, then a study over seeds with its table and report
    run = rl.run("mlp-l2", "model.kind=custom", "model.factory=my_models:small_mlp", "model.dropout=0",
                 "reg.l2=1e-3", *TINY, out="runs")
    assert run.ok
    weights = torch.load(run.path / "weights.pt", weights_only=True)
    assert [tuple(w.shape) for w in weights.values()] == [(32, 40), (32,), (10, 32), (10,)]  # mnist1d: 40 → 10
    study = rl.sweep("mlp-l2", "model.kind=custom", "model.factory=my_models:small_mlp", "model.dropout=0",
                     *TINY, grid={"reg": ["none", "l2"], "reg.lam": [1e-3, 1e-1]}, seeds="0-1", echo=None)
    trials = study.trials()
    assert isinstance(trials, pd.DataFrame) and study.finished
    assert len(trials) == 3 * 2 and set(trials["status"]) == {"ok"}
    assert set(trials["label"]) == {"none", "l2 λ=0.001", "l2 λ=0.1"}
    means = trials.groupby("label")["val_acc"].mean()  # a classifier's study chooses on val_acc
    choice = study.chosen()
    best = pytest.approx(means.max())  # the best mean (a tie is broken by the chooser's rule)
    assert choice.n == 2 and choice.ci is None and choice.score == best and means[choice.label] == best
    index = study.report("report")
    assert index == in_project / "report" / "index.html" and "l2 λ=0.1" in index.read_text()
    for run_dir in trials["run_dir"]:  # every run trained the user's model
        assert yaml.safe_load(open(f"{run_dir}/config.yaml"))["model"]["factory"] == "my_models:small_mlp"


def test_bad_factory_is_one_line_and_exit_2(in_project, monkeypatch, capsys):
    from reglab.cli import main

    def reglab(*args):
        monkeypatch.setattr(sys, "argv", ["reglab", "run", "mlp-l2", "model.kind=custom", "model.dropout=0", *args])
        with pytest.raises(SystemExit) as exit:
            main()
        out, err = capsys.readouterr()
        return exit.value.code, out, err

    for factory, message in [("my_models:nope", "'my_models' has no function 'nope'"),
                             ("no_such_module:net", "cannot import 'no_such_module'"),
                             ("my_models", "is not of the form package.module:function")]:
        code, out, err = reglab(f"model.factory={factory}")
        assert code == 2 and out == ""
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
    code, _, err = reglab()  # no factory
    assert code == 2 and "model.kind=custom needs model.factory" in err
    assert not (in_project / "runs").exists()
    # and through a real process: no traceback, exit code 2
    proc = subprocess.run([sys.executable, "-m", "reglab.cli", "run", "mlp-l2", "model.kind=custom",
                           "model.factory=my_models:nope"], capture_output=True, text=True, cwd=in_project)
    assert proc.returncode == 2 and proc.stderr == "error: model.factory=my_models:nope: 'my_models' has no function 'nope'\n"


def readme_blocks(section: str, language: str) -> list[str]:
    text = (Path(__file__).parents[1] / "README.md").read_text()
    body = text.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    fenced = re.findall(r"^```(\w*)\n(.*?)^```$", body, flags=re.S | re.M)  # (language, text), in order
    return [text for lang, text in fenced if lang == language]


def test_the_readme_python_sections_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    (from_python,) = readme_blocks("From Python / a notebook", "python")
    (printed,) = readme_blocks("From Python / a notebook", "")
    module, own_sweep = readme_blocks("Your own model", "python")
    (tmp_path / "my_models.py").write_text(module)
    try:
        space = {}
        exec(from_python, space)
        out = capsys.readouterr().out
        # the effect it shows: proximal L1 gives exact zeros, the subgradient none, at the same λ
        dense, proximal, subgradient = (space[k].summary for k in ("dense", "proximal", "subgradient"))
        assert proximal["zeros_total"] > 50 and dense["zeros_total"] == subgradient["zeros_total"] == 0
        assert proximal["test_acc"] > subgradient["test_acc"] + 0.1
        # the lines it prints are those pasted in the README, whatever the numbers on this machine
        for pasted in printed.splitlines()[:3]:
            assert re.sub(r"[\d.]+", "#", pasted) in re.sub(r"[\d.]+", "#", out), (pasted, out)
        assert space["chosen"].n == 5 and space["chosen"].ci is not None
        assert (tmp_path / "report" / "index.html").is_file()
        exec(own_sweep, space)
        assert set(space["study"].trials()["status"]) == {"ok"}
        assert "model.factory=my_models:small_mlp" in " ".join(space["study"].records()[0]["overrides"])
    finally:
        sys.modules.pop("my_models", None)


def test_the_lab_is_in_dir_reglab():
    assert {"run", "sweep", "Run", "Study"} <= set(dir(rl))


@pytest.fixture(scope="module")
def five_seeds(tmp_path_factory):
    """A finished study of 3 configs × 5 seeds, and the lines its sweep printed."""
    lines = []
    study = rl.sweep("mlp-l2", "model.hidden=[16]", "model.dropout=0", *TINY,
                     grid={"reg": ["none", "l2"], "reg.lam": [1e-3, 1e-1]}, seeds="0-4",
                     studies_dir=tmp_path_factory.mktemp("studies"), echo=lines.append)
    return study, lines


def test_sweep_from_python_prints_no_command_line_hints(five_seeds):
    study, lines = five_seeds
    assert any(line.startswith("chosen on validation") for line in lines)
    assert not any("reglab report" in line for line in lines), lines


def test_trials_have_the_grid_values_as_columns(five_seeds):
    study, _ = five_seeds
    trials = study.trials()
    assert len(trials) == 3 * 5 and list(trials.columns[:3]) == ["label", "reg", "reg.lam"]
    assert {"seed", "fold", "status", "val_acc", "test_acc", "run_dir"} <= set(trials.columns)
    by_label = trials.groupby("label")
    assert set(by_label["reg"].first()) == {"none", "l2"}
    assert by_label["reg.lam"].first()["l2 λ=0.1"] == 0.1 and trials.loc[trials.reg == "none", "reg.lam"].isna().all()


def test_chosen_is_a_record_with_params_score_and_its_interval(five_seeds):
    study, _ = five_seeds
    trials = study.trials()
    chosen = study.chosen()
    mine = trials[trials.label == chosen.label].sort_values("seed")
    assert chosen.n == 5 and chosen.metric == "val_acc"
    assert chosen.best_params == {k: v for k, v in mine.iloc[0][["reg", "reg.lam"]].items() if pd.notna(v)}
    assert chosen.score == pytest.approx(mine["val_acc"].mean(), rel=1e-12)
    assert chosen.score == pytest.approx(trials.groupby("label")["val_acc"].mean().max(), rel=1e-12)
    # the interval is the report's: a percentile bootstrap of the seed values' mean
    assert chosen.ci == pytest.approx(bootstrap_ci(mine["val_acc"].to_numpy()))
    assert chosen.ci[0] <= chosen.score <= chosen.ci[1]
    assert chosen.family in ("none", "l2") and chosen.label == chosen.choice.label


def test_no_interval_below_five_seeds(five_seeds):
    from reglab.api import interval

    study, _ = five_seeds
    _, records = study.records()
    label = study.chosen().label
    mine = [r for r in records if r.label == label]
    assert interval(mine, "val_acc") is not None
    assert interval([r for r in mine if r.seed < 4], "val_acc") is None


def test_summary_open_and_notebook_view(five_seeds):
    study, _ = five_seeds
    summary = study.summary()
    assert list(summary.columns) == ["label", "family", "lam", "mean", "ci_low", "ci_high", "n", "status", "chosen"]
    trials = study.trials()
    means = trials.groupby("label")["val_acc"].mean()
    for row in summary.itertuples():
        assert row.mean == pytest.approx(means[row.label], rel=1e-12) and row.n == 5 and row.status == "ok"
        assert row.ci_low <= row.mean <= row.ci_high
    assert list(summary.loc[summary.chosen, "label"]) == [study.chosen().label]

    opened = rl.Study.open(study.folder)
    assert (opened.name, opened.finished) == (study.name, True)
    pd.testing.assert_frame_equal(opened.summary(), summary)
    with pytest.raises(rl.UserError, match="is not a study folder"):
        rl.Study.open(study.folder / "runs")

    html = study._repr_html_()
    assert f"<b>{study.chosen().label}</b>" in html and "15 of 15 trials finished" in html
    assert html.count("<li>") >= 2 and "over none" in html  # the report's verdicts, each against none
    assert "<table" in html and html.count("</tr>") == 1 + 3
