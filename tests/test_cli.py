"""End to end through the command line: every built-in recipe on a tiny setting, and bad input."""

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

TINY = {
    "ridge-gd": ["train.epochs=300"],
    "mlp-l2": ["data.n_train=300", "train.epochs=2", "model.hidden=[32, 16]"],
    "cnn-l2": ["data.n_train=200", "train.epochs=1", "model.channels=[4, 8]", "model.dense=[16]"],
    "l1-sparsity": ["data.n_train=300", "train.epochs=2"],
    "cnn-mnist1d": ["data.n_train=200", "train.epochs=1", "model.channels=[4]", "model.dense=[8]"],
}


def reglab(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "reglab.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300)


def run_folders(root: Path) -> list[Path]:
    return [p.parent for p in root.glob("**/summary.json")]


@pytest.mark.parametrize("recipe", sorted(TINY))
def test_recipe_runs_end_to_end(recipe, tmp_path):
    proc = reglab("run", recipe, *TINY[recipe], "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (folder,) = run_folders(tmp_path / "runs")
    assert folder.parent.name == recipe and folder.name.endswith("_s0")
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["status"] == "ok"
    for name in ("config.yaml", "env.json", "metrics.jsonl", "weights.pt",
                 "plots/learning_curve.png", "plots/weights.png"):
        assert (folder / name).is_file(), name
    first_epoch = json.loads((folder / "metrics.jsonl").read_text().splitlines()[0])
    for key in ("train_loss", "val_loss", "gap_loss", "weight_l2", "zeros_total"):
        assert key in first_epoch
    assert any(k.startswith("penalty/") for k in first_epoch)
    shown = reglab("show", str(folder), cwd=tmp_path)
    assert shown.returncode == 0 and "status" in shown.stdout


def test_ridge_recipe_reaches_the_closed_form(tmp_path):
    proc = reglab("run", "ridge-gd", "--out", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (folder,) = run_folders(tmp_path)
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["reference"] == "closed-form ridge"
    assert summary["reference_max_abs_dw"] < 1e-4


def test_listings(tmp_path):
    recipes = reglab("recipes", cwd=tmp_path)
    assert recipes.returncode == 0
    for name in TINY:
        assert name in recipes.stdout
    datasets = reglab("datasets", cwd=tmp_path)
    assert datasets.returncode == 0
    for name in ("synthetic-linear", "mnist1d", "digits", "mnist-5k", "mnist", "fashion-mnist"):
        assert name in datasets.stdout


def write_csv(path: Path, rows: list[str]) -> str:
    path.write_text("\n".join(rows) + "\n")
    return str(path)


def bad_inputs(tmp: Path) -> dict[str, tuple[list[str], str]]:
    rng = np.random.default_rng(0)
    good_rows = ["a,b,label"] + [f"{x:.3f},{z:.3f},{i % 3}" for i, (x, z) in enumerate(rng.normal(size=(60, 2)))]
    nan_csv = write_csv(tmp / "nan.csv", good_rows[:5] + ["0.1,,1"] + good_rows[5:])
    text_csv = write_csv(tmp / "text.csv", ["a,b,label"] + [f"{i},x{i},{i % 2}" for i in range(60)])
    good_csv = write_csv(tmp / "good.csv", good_rows)
    npz = tmp / "neg.npz"
    np.savez(npz, x=rng.normal(size=(60, 3)).astype("float32"), y=np.r_[np.arange(59) % 3, -1])
    return {
        "unknown key": (["mlp-l2", "reg.lamda=1e-3"], "did you mean 'reg.lam'"),
        "wrong type": (["mlp-l2", "train.epochs=many"], "train.epochs"),
        "negative lambda": (["mlp-l2", "reg.lam=-0.1"], "reg.lam"),
        "l1_ratio out of range": (["mlp-l2", "reg=elastic", "reg.l1_ratio=2"], "reg.l1_ratio"),
        "missing data file": (["mlp-l2", "data.name=csv", f"data.path={tmp / 'nope.csv'}", "data.target=y"], "nope.csv"),
        "csv with NaN": (["mlp-l2", "data.name=csv", f"data.path={nan_csv}", "data.target=label"], "b"),
        "non-numeric csv": (["mlp-l2", "data.name=csv", f"data.path={text_csv}", "data.target=label"], "b"),
        "labels out of range": (["mlp-l2", "data.name=npz", f"data.path={npz}"], "-1"),
        "shape mismatch": (["cnn-l2", "data.name=csv", f"data.path={good_csv}", "data.target=label"], "(C, H, W)"),
    }


BAD_CASES = ["unknown key", "wrong type", "negative lambda", "l1_ratio out of range", "missing data file",
             "csv with NaN", "non-numeric csv", "labels out of range", "shape mismatch"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_gives_one_clear_line(case, tmp_path):
    args, fragment = bad_inputs(tmp_path)[case]
    out = tmp_path / "runs"
    proc = reglab("run", *args, "--out", str(out), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert fragment in lines[0]
    assert "Traceback" not in proc.stderr
    assert run_folders(out) == []


@pytest.mark.parametrize("args, flags", [([], ["--version", "--help"]),
                                         (["sweep"], ["--tensorboard", "--force-workers", "--help"])])
def test_help_shows_flags_bare_and_examples(args, flags, monkeypatch, capsys):
    from cli_runner import cli

    monkeypatch.setenv("COLUMNS", "200")
    code, out, _ = cli(monkeypatch, capsys, *args, "--help")
    assert code == 0
    for flag in flags:  # an on/off flag is typed bare: no "<bool>" value beside it
        (line,) = [line for line in out.splitlines() if re.search(rf"│ {flag}\b", line)]
        assert "<" not in line.split(flag, 1)[1], line
    if args:  # an option that takes a value keeps its type
        assert re.search(r"│ --seeds\s+<str>", out)
    examples = out.split("Examples:", 1)[1]
    assert re.search(r"^ reglab sweep mlp-l2 --grid 'reg=none,l2", examples, flags=re.M)


def test_show_on_a_study_folder_points_to_report(tmp_path):
    folder = tmp_path / "studies" / "x"
    folder.mkdir(parents=True)
    (folder / "study.db").touch()
    proc = reglab("show", "studies/x", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert "'reglab report studies/x'" in proc.stderr
