"""Bad input, as a hostile user would type it: every case must end in the error contract.

The contract: exit code 2, exactly one line on stderr that starts with ``error:``, no traceback,
and nothing left behind that looks like a result (no run folder, no study). The commands run
in this process through the command line's own entry point (``reglab.cli.main``), so stderr and
the exit code checked are the real ones; one case also runs as a real process.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_runner import cli

TINY = ["train.epochs=5", "train.plots=false", "train.save_weights=false"]


def results_in(root: Path) -> list[Path]:
    """Anything under ``root`` that a run or a study leaves: run folders and study databases."""
    return sorted([*root.glob("**/summary.json"), *root.glob("**/study.db"), *root.glob("**/storage.json")])


def assert_error(code: int, err: str, fragment: str = "") -> None:
    assert code == 2, err
    assert err.startswith("error: ") and err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    assert fragment in err, (fragment, err)


# ---- the inputs the issue lists -----------------------------------------------------------------

@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Bad files: a binary .yaml, a YAML list, an NPZ with a huge label, a recipe file whose name
    is markup, a plain file where a folder is expected, and a good run folder to damage."""
    tmp = tmp_path_factory.mktemp("files")
    out = {"binary": tmp / "binary.yaml", "list": tmp / "list.yaml", "syntax": tmp / "syntax.yaml",
           "huge_label": tmp / "huge.npz", "a_file": tmp / "a_file", "markup": tmp / '"><img src=x onerror=alert(1)>.yaml'}
    out["binary"].write_bytes(bytes(range(256)))
    out["list"].write_text("- 1\n- 2\n")
    out["syntax"].write_text("train: {epochs: [1,\n")
    rng = np.random.default_rng(0)
    np.savez(out["huge_label"], x=rng.normal(size=(40, 3)).astype("float32"), y=np.r_[np.zeros(39), 100000000])
    out["a_file"].write_text("not a folder\n")
    out["markup"].write_text((Path(__file__).parents[1] / "src/reglab/recipes/ridge-gd.yaml").read_text())
    return out


@pytest.fixture(scope="module")
def good_run(tmp_path_factory) -> Path:
    """One real, finished run folder of ridge-gd."""
    from reglab.config import load_config
    from reglab.train import run

    root = tmp_path_factory.mktemp("good")
    return run(load_config("ridge-gd", TINY), root=root, progress=False).path


def damaged(good_run: Path, tmp: Path, name: str, content: bytes | None) -> Path:
    """A copy of the good run folder with ``name`` replaced by ``content`` (None: removed)."""
    folder = tmp / "damaged" / good_run.name
    shutil.copytree(good_run, folder)
    if content is None:
        (folder / name).unlink()
    else:
        (folder / name).write_bytes(content)
    return folder


LISTED_RUN = {
    "negative width": (["mlp-l2", "model.hidden=[-5]"], "model.hidden"),
    "zero width": (["mlp-l2", "model.hidden=[0]"], "model.hidden"),
    "huge seed": (["mlp-l2", "seed=99999999999999999999999"], "seed"),
    "betas out of range": (["mlp-l2", "optim.betas=[2,3]"], "optim.betas"),
    "run name up the tree": (["ridge-gd", "name=../../escaped_run"], "'../../escaped_run' must be letters"),
    "absolute run name": (["ridge-gd", "name={tmp}/abs_run"], "'{tmp}/abs_run' must be letters"),
    "infinite lambda": (["ridge-gd", "reg.lam=inf"], "reg.lam"),
}


@pytest.mark.parametrize("case", sorted(LISTED_RUN))
def test_listed_run_inputs(case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args = [arg.replace("{tmp}", str(tmp_path)) for arg in LISTED_RUN[case][0]]
    fragment = LISTED_RUN[case][1].replace("{tmp}", str(tmp_path))
    code, out, err = cli(monkeypatch, capsys, "run", *args)
    assert_error(code, err, fragment)
    assert results_in(tmp_path) == [] and not (tmp_path.parent / "escaped_run").exists()


def test_listed_file_inputs(files, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for args, fragment in [
        (["run", str(files["binary"])], "is not a YAML text file"),
        (["run", "ridge-gd", "--out", str(files["a_file"])], "is a file"),
        (["run", "mlp-l2", "data.name=npz", f"data.path={files['huge_label']}"], "more than 10000 classes"),
        (["run", str(files["markup"])], "the run name (the recipe's file name unless name=… is given)"),
        (["sweep", str(files["markup"]), *TINY, "--workers", "0"], "the run name"),
        (["sweep", str(files["markup"]), *TINY, "name=fine", "--workers", "0"], "study name (from the recipe's file name; pass --name)"),
    ]:
        code, out, err = cli(monkeypatch, capsys, *args)
        assert_error(code, err, fragment)
        assert results_in(tmp_path) == [] and not (tmp_path / "studies").exists(), args


def test_a_huge_label_is_refused_before_anything_is_allocated(files):
    """The label is checked against the class limit, so no output layer of 10⁸ units is built."""
    from reglab.config import load_config
    from reglab.data import load_dataset
    from reglab.errors import UserError

    config = load_config("mlp-l2", ["data.name=npz", f"data.path={files['huge_label']}"])
    with pytest.raises(UserError, match="class label 1e\\+08 means more than 10000 classes"):
        load_dataset(config.data)


NOT_A_RUN = "is neither a run folder nor a folder holding run folders"  # the report looks for config.yaml


@pytest.mark.parametrize("name,content,fragment,report_fragment", [
    ("summary.json", b'{"status": "ok", ', "summary.json is damaged (not valid JSON", None),
    ("summary.json", b'[1, 2, 3]', "summary.json is damaged (it holds a list", None),
    ("summary.json", bytes(range(256)), "summary.json is damaged", None),
    ("metrics.jsonl", b'{"epoch": 1}\n{"epoch": 2, \n', "metrics.jsonl line 2 is damaged", None),
    ("metrics.jsonl", b'{"epoch": 1}\n[3]\n', "metrics.jsonl line 2 is damaged (not a JSON object)", None),
    ("config.yaml", None, "has no config.yaml", NOT_A_RUN),
    ("config.yaml", b"train: {epochs: [1,\n", "config.yaml is damaged", None),
])
def test_show_and_report_on_a_damaged_run_folder(name, content, fragment, report_fragment, good_run, tmp_path,
                                                 monkeypatch, capsys):
    folder = damaged(good_run, tmp_path, name, content)
    code, out, err = cli(monkeypatch, capsys, "show", str(folder))
    assert_error(code, err, fragment)
    code, out, err = cli(monkeypatch, capsys, "report", str(folder), "--out", str(tmp_path / "report"))
    assert_error(code, err, report_fragment or fragment)
    assert not (tmp_path / "report" / "index.html").exists()


@pytest.mark.parametrize("content,fragment", [
    (b'{"storage": "sqlite:///x.db", ', "storage.json is damaged (not valid JSON"),
    (b'["sqlite:///x.db"]', "storage.json is damaged (it must hold"),
    (b'{"storage": 5, "name": "x"}', "storage.json is damaged (it must hold"),
    (bytes(range(256)), "storage.json is damaged"),
])
def test_report_on_a_garbled_storage_json(content, fragment, tmp_path, monkeypatch, capsys):
    (tmp_path / "study").mkdir()
    (tmp_path / "study" / "storage.json").write_bytes(content)
    code, out, err = cli(monkeypatch, capsys, "report", str(tmp_path / "study"), "--out", str(tmp_path / "report"))
    assert_error(code, err, fragment)


def test_every_grid_point_is_checked_before_the_study_exists(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for grid, fragment in [("reg.lam=1e-5:inf:log:3", "START and STOP must be finite"),
                           ("reg.lam=1e-3,inf", "reg.lam"), ("reg.lam=1e-3,nan", "reg.lam"),
                           ("model.hidden=[4],[0]", "model.hidden")]:
        code, out, err = cli(monkeypatch, capsys, "sweep", "ridge-gd", *TINY, "--grid", grid, "--workers", "0")
        assert_error(code, err, fragment)
        assert not (tmp_path / "studies").exists(), grid


def test_a_study_above_the_size_limit_is_refused_at_once(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    for args, fragment in [(["--grid", "reg.lam=1e-5:1e-1:log:200000"], "would hold 200000 runs"),
                           (["--seeds", "0-200000"], "names 200001 seeds"),
                           (["--seeds", "0-99999999999999999999"], "a seed must be at most"),
                           (["--grid", "reg.lam=1e-5:1e-1:log:101", "--seeds", "0-99"], "--max-runs")]:
        code, out, err = cli(monkeypatch, capsys, "sweep", "ridge-gd", *TINY, *args, "--workers", "0")
        assert_error(code, err, fragment)
        assert not (tmp_path / "studies").exists(), args
    code, out, err = cli(monkeypatch, capsys, "sweep", "ridge-gd", *TINY, "--grid", "reg.lam=1e-5:1e-1:log:3",
                         "--seeds", "0-1", "--max-runs", "5", "--workers", "0")
    assert_error(code, err, "would hold 6 runs (3 points × 2 seeds), more than the limit of 5")
    code, out, err = cli(monkeypatch, capsys, "sweep", "ridge-gd", *TINY, "--grid", "reg.lam=1e-5:1e-1:log:3",
                         "--seeds", "0-1", "--max-runs", "6", "--workers", "0", "--name", "six")
    assert code == 0 and "6 trials" in out, err


def test_a_diverged_run_says_so_and_plotting_does_not_crash(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(monkeypatch, capsys, "run", "ridge-gd", "train.epochs=50", "optim.lr=1e6")
    assert code == 1 and err == "", err
    assert "run failed: diverged: loss became inf at step" in out
    (summary,) = tmp_path.glob("runs/ridge-gd/*/summary.json")
    data = json.loads(summary.read_text())
    assert data["status"] == "failed" and data["reason"].startswith("diverged: loss became inf at step")
    assert (summary.parent / "plots" / "weights.png").is_file()
    assert (summary.parent / "plots" / "learning_curve.png").is_file()


def test_plots_leave_out_non_finite_values_and_say_how_many():
    """Both kinds of weight plot (bars for few weights, a histogram for many) and the learning curve."""
    from reglab import plots

    few = np.array([[1.0, np.inf], [np.nan, -2.0]], dtype=np.float32)
    many = np.r_[np.linspace(-1, 1, 60), np.inf, -np.inf, np.nan].astype(np.float32)
    same_huge = np.full(60, 3e38, dtype=np.float32)  # 120 bins over a zero-width range
    titles = [plots.weight_figure({"w": w}, "t").axes[0].get_title() for w in (few, many, same_huge)]
    assert "2 non-finite values not shown" in titles[0]
    assert "3 non-finite values not shown" in titles[1]
    assert "not shown" not in titles[2]
    metrics = [{"epoch": 1, "train_loss": 1.0, "val_loss": 2.0}, {"epoch": 2, "train_loss": np.inf, "val_loss": np.nan}]
    assert "2 non-finite values not shown" in plots.learning_curve_figure(metrics, "t")._suptitle.get_text()
    plots.plt.close("all")


def test_a_name_cannot_lead_a_folder_out_of_its_root(tmp_path, monkeypatch, capsys):
    """Also through a link: the folder is resolved, then checked to lie inside its root."""
    monkeypatch.chdir(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "ridge-gd").symlink_to(outside)
    code, out, err = cli(monkeypatch, capsys, "run", "ridge-gd", *TINY)
    assert_error(code, err, "would put a folder outside 'runs'")
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "linked").symlink_to(outside)
    code, out, err = cli(monkeypatch, capsys, "sweep", "ridge-gd", *TINY, "--name", "linked", "--workers", "0")
    assert_error(code, err, "would put a folder outside 'studies'")
    assert list(outside.iterdir()) == []


# ---- the table-driven fuzz: at least 100 bad inputs across run, sweep, worker, show, report -----

NUMBER_KEYS = ["train.epochs", "train.batch_size", "optim.lr", "reg.lam", "reg.l1_ratio", "model.dropout",
               "data.val_fraction", "seed", "train.clip_norm", "optim.momentum", "train.early_stopping"]
BAD_NUMBERS = ["-1", "abc", "inf", "nan", "[1, 2]", "{a: 1}", "1e999"]
BAD_NAMES = ["../x", "/abs/x", "a/b", "..", ".hidden", "-dash", "a b", "<img src=x>", "x" * 101, "a\\b"]


def fuzz_cases(tmp: Path) -> list[tuple[str, list[str]]]:
    """(label, argv) pairs; each must give the error contract."""
    cases = [(f"run {k}={v}", ["run", "ridge-gd", f"{k}={v}"]) for k in NUMBER_KEYS for v in BAD_NUMBERS
             if not (k == "train.batch_size" and v == "inf")]
    cases += [(f"run name={n}", ["run", "ridge-gd", f"name={n}"]) for n in BAD_NAMES]
    cases += [(f"run {a}", ["run", *a.split()]) for a in [
        "nope", "ridge-gd reg.lamda=1", "ridge-gd train", "ridge-gd =3", "ridge-gd reg=bogus",
        "ridge-gd model.kind=transformer", "ridge-gd optim.betas=[0.9]", "ridge-gd optim.betas=[0.9,-0.1]",
        "mlp-l2 model.channels=[0]", "mlp-l2 model.dense=[-3]", "ridge-gd data.fold=1",
        "ridge-gd data.name=nosuchdata", "ridge-gd seed=-1", "missing.yaml", "ridge-gd device=tpu9"]]
    cases += [(f"sweep --grid {g}", ["sweep", "ridge-gd", "--grid", g, "--workers", "0"]) for g in [
        "", "reg.lam", "reg.lam=", "=1,2", "reg.lam=1,,2", "reg.lam=1e-5:inf:log:3", "reg.lam=nan:1:lin:3",
        "reg.lam=0:1:log:3", "reg.lam=1:2:cubic:3", "reg.lam=1:2:log:x", "reg.lam=1:2:log:0", "reg.lam=1:2:log",
        "seed=1,2", "data.fold=0,1", "reg.lamda=1,2", "reg.lam=-1,1", "reg.lam=1e-5:1e-1:log:20000",
        "model.hidden=[0],[4]", "reg.l1_ratio=0.5,2"]]
    cases += [(f"sweep --seeds {s}", ["sweep", "ridge-gd", "--seeds", s, "--workers", "0"]) for s in [
        "a", "1-", "-1", "5-2", "0-200000", "1,,2", "٣", "0-99999999999999999999", ""]]
    cases += [(f"sweep --name {n}", ["sweep", "ridge-gd", "--name", n, "--workers", "0"]) for n in BAD_NAMES]
    cases += [(f"sweep {a}", ["sweep", "ridge-gd", *a.split()]) for a in [
        "--workers -1", "--batch 0", "--cv 1", "--search bayes", "--search tpe", "--trials 3",
        "--search tpe --trials 0", "--max-runs 0", "--workers x", f"--dir {tmp / 'a_file'}",
        "--storage nonsense", "--storage sqlite:////no/such/folder/x.db", "--heartbeat 0", "--heartbeat 5 --grace 5",
        "name=../../../x", "--search tpe --trials 2 --grid model.hidden=[4],[8]"]]
    cases += [(f"worker {a}", ["worker", *a.split()]) for a in [
        "", "--study", "--study nothere", "--study ../x", "--study a/b", "--study .. --dir studies",
        f"--study x --dir {tmp / 'a_file'}", "--study x --batch 0", "--study x --storage nonsense",
        "--study x --heartbeat 0", "--study x --heartbeat 3 --grace 2", "--study x --storage sqlite:////no/such/x.db"]]
    cases += [(f"show {a}", ["show", *a.split()]) for a in [
        "", str(tmp / "nothere"), str(tmp / "a_file"), str(tmp), "a b"]]
    cases += [(f"report {a}", ["report", *a.split()]) for a in [
        "", str(tmp / "nothere"), str(tmp / "a_file"), f"{tmp / 'empty'} --storage nonsense",
        "x --storage sqlite:////no/such/x.db", str(tmp / "empty")]]
    return cases


def test_fuzz_bad_inputs_across_every_command(tmp_path, monkeypatch, capsys):
    (tmp_path / "a_file").write_text("a file\n")
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path)
    cases = fuzz_cases(tmp_path)
    assert len(cases) >= 100
    broken = []
    for label, args in cases:
        code, out, err = cli(monkeypatch, capsys, *args)
        one_line = err.startswith("error: ") and err.count("\n") == 1
        left = results_in(tmp_path) + ([tmp_path / "studies"] if (tmp_path / "studies").exists() else [])
        if code != 2 or not one_line or "Traceback" in err or left:
            broken.append(f"{label!r}: exit {code}, stderr {err!r}, left {left}")
        for path in left:
            shutil.rmtree(path if path.is_dir() else path.parent, ignore_errors=True)
    assert broken == [], "\n".join(broken)


def test_the_contract_holds_in_a_real_process(files, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "reglab.cli", "run", str(files["binary"])], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr == f"error: {files['binary']} is not a YAML text file (it is not UTF-8 text)\n"


# ---- every input and every environment: the inputs of the second audit ---------------------------

def alias_bomb(levels: int = 9) -> str:
    """A "billion laughs" flow list: 9 aliases of 9 aliases … , 9**levels strings once expanded."""
    parts = ['&l0 ["x","x","x","x","x","x","x","x","x"]']
    parts += [f"&l{i} [{','.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "[" + ", ".join(parts) + "]"


FACTORY_MODULES = {
    "raises_on_import": "raise RuntimeError('broken at import')\n",
    "factories": (
        "import torch.nn as nn\n"
        "def raises(shape, n):\n    raise ValueError('no model for you')\n"
        "def wrong_input(shape, n):\n    return nn.Linear(3, n)\n"
        "def wrong_output(shape, n):\n    return nn.Sequential(nn.Flatten(), nn.LazyLinear(n + 1))\n"
        "def not_a_tensor(shape, n):\n    class Odd(nn.Module):\n        def forward(self, x):\n"
        "            return 'text'\n    return Odd()\n"
        "def exits(shape, n):\n    raise SystemExit(3)\n"
    ),
}


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, Path]:
    """The audit's files: alias bombs, deep YAML, an empty YAML file, bad data files, factory modules."""
    tmp = tmp_path_factory.mktemp("hostile")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    labels = np.arange(40) % 2
    out = {name: tmp / name for name in ("bomb_description.yaml", "bomb_name.yaml", "deep.yaml", "empty.yaml",
                                         "recursive.yaml", "only_target.csv", "zero_features.npz", "target_2x2.npz",
                                         "huge_value.csv", "one_class.csv", "complex.npz", "huge.yaml")}
    out["bomb_description.yaml"].write_text(f"name: bomb\ndescription: {alias_bomb()}\n")
    out["bomb_name.yaml"].write_text(f"name: {alias_bomb()}\n")
    out["deep.yaml"].write_text("description: " + "[" * 20_000 + "]" * 20_000 + "\n")
    out["empty.yaml"].write_text("")
    out["recursive.yaml"].write_text("description: &a [1, *a]\n")
    out["huge.yaml"].write_text("name: huge\n" + "# padding\n" * 120_000)
    out["only_target.csv"].write_text("label\n" + "".join(f"{v}\n" for v in labels))
    np.savez(out["zero_features.npz"], x=np.zeros((40, 0)), y=labels)
    np.savez(out["target_2x2.npz"], x=x, y=rng.normal(size=(40, 2, 2)))
    out["huge_value.csv"].write_text("a,b,label\n" + "".join(f"{1e308 if i == 7 else i},{i},{i % 2}\n" for i in range(40)))
    out["one_class.csv"].write_text("a,b,label\n" + "".join(f"{i},{i * 2},same\n" for i in range(40)))
    np.savez(out["complex.npz"], x=x + 1j, y=labels)
    for name, text in FACTORY_MODULES.items():
        (tmp / f"{name}.py").write_text(text)
    return out


FACTORY = ["ridge-gd", "model.kind=custom"]
AUDIT_RUN = {
    "alias bomb in description": (["{bomb_description.yaml}"], "expands to more than 100000 values through its aliases"),
    "alias bomb in name": (["{bomb_name.yaml}"], "expands to more than 100000 values through its aliases"),
    "alias bomb in an override": (["ridge-gd", f"description={alias_bomb()}"], "expands to more than 100000 values"),
    "YAML nested 20,000 deep": (["{deep.yaml}"], "is nested deeper than 64 levels"),
    "recursive YAML": (["{recursive.yaml}"], "a YAML alias refers to a node that holds it"),
    "YAML above the size limit": (["{huge.yaml}"], "is too large (1200011 bytes; reglab reads at most 1 MiB)"),
    "empty YAML file": (["{empty.yaml}"], "is empty: a config file holds a mapping of config keys"),
    "epochs given as true": (["ridge-gd", "train.epochs=true"], "'train.epochs': a number is expected here, not true"),
    "a width given as false": (["mlp-l2", "model.hidden=[32, false]"], "'model.hidden': a number is expected here"),
    "a huge hidden layer": (["mlp-l2", "model.hidden=[1000000000]"],
                            "(51,000,000,010 parameters for inputs (1, 40)) needs about 816 GB of memory"),
    "a huge dataset": (["ridge-gd", "data.n_samples=1000000000000"],
                       "data.n_samples=1000000000000 of 'synthetic-linear' needs about 12 TB of memory"),
    "factory os:system": ([*FACTORY, "model.factory=os:system"],
                          "model.factory=os:system failed when called as function((1,), 1): TypeError"),
    "factory os:getcwd": ([*FACTORY, "model.factory=os:getcwd"], "model.factory=os:getcwd failed when called"),
    "factory sys:exit": ([*FACTORY, "model.factory=sys:exit"], "model.factory=sys:exit failed when called"),
    "factory torch.nn:Linear": ([*FACTORY, "model.factory=torch.nn:Linear"], "model.factory=torch.nn:Linear failed"),
    "factory module raising on import": ([*FACTORY, "model.factory=raises_on_import:net"],
                                         "importing 'raises_on_import' failed (RuntimeError: broken at import)"),
    "factory raising": ([*FACTORY, "model.factory=factories:raises"], "ValueError: no model for you"),
    "factory raising SystemExit": ([*FACTORY, "model.factory=factories:exits"], "failed when called as function((1,), 1): SystemExit: 3"),
    "factory model taking another input": ([*FACTORY, "model.factory=factories:wrong_input"],
                                           "the model of model.factory=factories:wrong_input does not fit the data's input shape (1,)"),
    "factory model with other outputs": ([*FACTORY, "model.factory=factories:wrong_output"],
                                         "returns shape (2,), the data needs (1,)"),
    "factory model returning text": ([*FACTORY, "model.factory=factories:not_a_tensor"], "returns a str, not a tensor"),
    "CSV of the target alone": (["mlp-l2", "data.name=csv", "data.path={only_target.csv}", "data.target=label"],
                                "no feature columns: the file holds only the target column 'label'"),
    "NPZ without features": (["mlp-l2", "data.name=npz", "data.path={zero_features.npz}"], "array 'x' has no features"),
    "NPZ target (40, 2, 2)": (["mlp-l2", "data.name=npz", "data.path={target_2x2.npz}"],
                              "targets must be one value per example (N,) or a row of values (N, k), got shape (40, 2, 2)"),
    "a value beyond float32": (["mlp-l2", "data.name=csv", "data.path={huge_value.csv}", "data.target=label"],
                               "value 1e+308 at index (7, 0) is beyond float32's range"),
    "one class": (["mlp-l2", "data.name=csv", "data.path={one_class.csv}", "data.target=label"],
                  "column 'label': every example has the same class; a classifier needs at least two classes"),
    "complex values": (["mlp-l2", "data.name=npz", "data.path={complex.npz}"], "array 'x' holds complex numbers"),
    "validation larger than the training part": (["ridge-gd", "data.val_fraction=0.999"],
                                                 "validation would get 85 and training 0 of 85 examples; "
                                                 "change data.val_fraction"),
}


@pytest.mark.parametrize("case", sorted(AUDIT_RUN))
def test_audit_run_inputs(case, hostile, tmp_path, monkeypatch, capsys):
    """Each input of the audit ends in the contract, with reglab's words, and leaves nothing."""
    monkeypatch.chdir(hostile["empty.yaml"].parent)
    args, fragment = AUDIT_RUN[case]
    for name, path in hostile.items():
        args = [arg.replace("{" + name + "}", str(path)) for arg in args]
    code, out, err = cli(monkeypatch, capsys, "run", args[0], *TINY, *args[1:], "--out", str(tmp_path / "runs"))
    assert_error(code, err, fragment)
    assert "test_size" not in err and results_in(tmp_path) == []


def test_a_numeric_target_of_rows_is_still_a_regression(hostile):
    """(N, k) targets stay allowed: the refusal above is about (N, 2, 2)."""
    from reglab.config import load_config
    from reglab.data import load_dataset

    path = hostile["target_2x2.npz"].with_name("rows.npz")
    rng = np.random.default_rng(1)
    np.savez(path, x=rng.normal(size=(40, 3)), y=rng.normal(size=(40, 2)))
    ds = load_dataset(load_config("mlp-l2", ["data.name=npz", f"data.path={path}"]).data)
    assert ds.kind == "regression" and ds.y.shape == (40, 2) and ds.y.dtype == np.float32


def test_val_fraction_is_a_fraction_of_the_training_part():
    """With an official test set, val_fraction cuts the training part only: 0.4 of mnist1d's 4000
    training signals is 1600, and the 1000 official test signals are untouched."""
    from reglab.config import load_config
    from reglab.data import load_dataset, make_splits

    cfg = load_config("mlp-l2", ["data.val_fraction=0.4"]).data
    splits = make_splits(load_dataset(cfg), cfg)
    assert splits.sizes() == {"train": 2400, "val": 1600, "test": 1000}


def test_the_config_help_says_what_val_fraction_is_a_fraction_of(monkeypatch, capsys):
    code, out, err = cli(monkeypatch, capsys, "config", "ridge-gd")
    line = next(line for line in out.splitlines() if line.lstrip().startswith("val_fraction:"))
    assert "fraction of the training part (what the test split leaves)" in line


AUDIT_SWEEP = {
    "a million workers": (["--workers", "1000000"], "--workers 1000000 is more than"),
    "in-memory SQLite with workers": (["--storage", "sqlite:///:memory:", "--workers", "2"],
                                      "lives in this process's memory only: it works with --workers 1"),
    "in-memory SQLite without workers": (["--storage", "sqlite://", "--workers", "0"], "memory only"),
    "a port that is no number": (["--storage", "postgresql://me@localhost:abc/db", "--workers", "0"],
                                 "storage 'postgresql://me@localhost:abc/db' is not a database URL"),
    "a driver not installed": (["--storage", "postgresql+psycopg://me@localhost:5432/db", "--workers", "0"],
                               "pip install 'psycopg[binary]'"),
}


@pytest.mark.parametrize("case", sorted(AUDIT_SWEEP))
def test_audit_sweep_inputs(case, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    args, fragment = AUDIT_SWEEP[case]
    code, out, err = cli(monkeypatch, capsys, "sweep", "ridge-gd", *TINY, *args)
    assert_error(code, err, fragment)
    assert results_in(tmp_path) == [] and not (tmp_path / "studies").exists()


def test_the_worker_limit_is_four_per_core_unless_forced(tmp_path):
    from reglab.study.sweep import check_workers
    from reglab.train.threads import cores
    from reglab.errors import UserError

    limit = 4 * cores()
    check_workers(limit, force=False)
    with pytest.raises(UserError, match=f"--workers {limit + 1} is more than {limit} \\(4 × the {cores()} usable "
                                        "cores\\).*pass --force-workers"):
        check_workers(limit + 1, force=False)
    check_workers(limit + 1, force=True)


def test_a_password_in_the_query_string_is_hidden(tmp_path, monkeypatch, capsys):
    """In error lines, and in what is stored: the storage line, the worker command and storage.json
    go through the same two functions."""
    from reglab.redact import redact
    from reglab.study.storage import shown_url, without_password

    url = "postgresql://me@localhost:abc/db?sslmode=disable&password=hunter2"
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(monkeypatch, capsys, "sweep", "ridge-gd", "--storage", url, "--workers", "0")
    assert_error(code, err, "password=***")
    assert "hunter2" not in err
    assert redact(f"tried {url} and PASSWORD=x") == "tried postgresql://me@localhost:abc/db?sslmode=disable&password=*** and PASSWORD=x"
    good = "postgresql://me@db.example:5432/studies?password=hunter2&sslmode=require"
    assert shown_url(good) == "postgresql://me@db.example:5432/studies?password=***&sslmode=require"
    assert without_password(good) == "postgresql://me@db.example:5432/studies?sslmode=require"


def test_the_readme_postgresql_form_takes_the_installed_driver():
    """SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; reglab gives it the driver that is
    installed (psycopg2 from reglab[postgres] here), and names the package for a missing one."""
    import importlib.util

    from reglab.study.storage import driver_hint, with_driver

    installed = [d for d in ("psycopg2", "psycopg") if importlib.util.find_spec(d)]
    url = "postgresql://me:pw@host:5432/db"
    assert with_driver(url) == (url.replace("postgresql:", f"postgresql+{installed[0]}:") if installed else url)
    assert with_driver("postgresql+psycopg://me@host/db") == "postgresql+psycopg://me@host/db"
    assert with_driver("sqlite:///x.db") == "sqlite:///x.db"
    assert driver_hint("postgresql+psycopg2://h/db") == "pip install 'reglab[postgres]'"
    assert driver_hint("postgresql+psycopg://h/db") == "pip install 'psycopg[binary]'"


NESTED_JSON = b'{"status": "ok", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


@pytest.mark.parametrize("name,content,fragment", [
    ("summary.json", NESTED_JSON, "summary.json is damaged (nested deeper than 64 levels)"),
    ("metrics.jsonl", b'{"epoch": 1}\n' + NESTED_JSON + b"\n", "metrics.jsonl is damaged (nested deeper than 64 levels)"),
    ("config.yaml", f"name: bomb\ndescription: {alias_bomb()}\n".encode(), "expands to more than 100000 values"),
    ("config.yaml", b"name: " + b"[" * 20_000 + b"]" * 20_000 + b"\n", "config.yaml is nested deeper than 64 levels"),
])
def test_nested_and_exploding_run_files(name, content, fragment, good_run, tmp_path, monkeypatch, capsys):
    folder = damaged(good_run, tmp_path, name, content)
    for args in (["show", str(folder)], ["report", str(folder), "--out", str(tmp_path / "report")]):
        code, out, err = cli(monkeypatch, capsys, *args)
        assert_error(code, err, fragment)
    assert not (tmp_path / "report" / "index.html").exists()


def test_run_and_study_files_above_the_size_limit(good_run, tmp_path, monkeypatch, capsys):
    """A sparse file of 64 MiB + 1 byte: refused from its size, never read."""
    from reglab.bounded import MAX_JSON_BYTES

    folder = damaged(good_run, tmp_path, "summary.json", b"")
    with open(folder / "summary.json", "wb") as handle:
        handle.truncate(MAX_JSON_BYTES + 1)
    code, out, err = cli(monkeypatch, capsys, "show", str(folder))
    assert_error(code, err, f"summary.json is too large ({MAX_JSON_BYTES + 1} bytes; reglab reads at most 64 MiB)")
    study = tmp_path / "study"
    study.mkdir()
    (study / "storage.json").write_bytes(b'{"storage": ' + b"[" * 100_000)
    code, out, err = cli(monkeypatch, capsys, "report", str(study), "--out", str(tmp_path / "report"))
    assert_error(code, err, "storage.json is damaged (nested deeper than 64 levels)")


# ---- the generated fuzz: mutated recipes, schema-driven overrides, damaged run and study files ----
#
# At least 300 inputs, made by a seeded generator, each run in this process through the command
# line's entry point; each must keep the contract within 10 s. A few also run as real processes.

FUZZ_SEED = 19
RECIPES = sorted(p.stem for p in (Path(__file__).parents[1] / "src/reglab/recipes").glob("*.yaml"))
NOT_A_SCALAR = ["{a: 1}", "[[1], {b: 2}]"]


def schema_leaves() -> dict[str, tuple[object, list]]:
    """Every leaf key of the schema with its type and its constraints."""
    from pydantic import BaseModel

    from reglab.config import Config

    leaves = {}

    def walk(model, prefix):
        for name, field in model.model_fields.items():
            kind = field.annotation
            if isinstance(kind, type) and issubclass(kind, BaseModel):
                walk(kind, f"{prefix}{name}.")
            else:
                leaves[prefix + name] = (kind, field.metadata)

    walk(Config, "")
    return leaves


def bad_values(kind, metadata) -> list[str]:
    """YAML texts the schema must refuse for a field of this type and these constraints:
    out-of-type (a mapping, nested lists, text for a number, true for a number), out-of-range
    (just past each bound) and extreme (±infinity, NaN, 1e999)."""
    from typing import Literal, get_args, get_origin

    args = [a for a in get_args(kind) if a is not type(None)]
    base = args[0] if get_origin(kind) in (type(int | None), __import__("typing").Union) and len(args) == 1 else kind
    values = list(NOT_A_SCALAR)
    if get_origin(base) is Literal:
        return values + ["not-a-choice", "[a]"]
    if get_origin(base) in (list, tuple):
        inner = get_args(base)[0]
        element = get_args(inner)[0] if get_args(inner) else inner
        values += ["5", "[abc]", "[true]", "[.nan]", "[-.inf]", "[[1]]"]
        if get_origin(base) is tuple:
            values += ["[0.9]", "[0.9, 0.9, 0.9]", "[-0.1, 0.5]", "[0.5, 1.0]"]
        elif element is int:
            values += ["[0]", "[-3]", "[1.5]"]
        return values
    if base is bool:
        return values + ["maybe", "2", "[true]"]
    if base is str:
        return values + ["[1, 2]", "5", "true"]
    values += ["abc", "true", ".inf", "-.inf", ".nan", "1e999", "[1, 2]"]
    if base is int:
        values.append("1.5")
    for m in metadata:
        if hasattr(m, "ge"):
            values.append(str(m.ge - 1 if base is int else m.ge - 0.5))
        if hasattr(m, "gt"):
            values.append(str(m.gt))
        if hasattr(m, "le"):
            values.append(str(m.le + 1 if base is int else m.le + 0.5))
        if hasattr(m, "lt"):
            values.append(str(m.lt))
    return values


def override_cases(rng) -> list[tuple[str, list[str]]]:
    """Random dotted overrides from the schema: one bad value on a tiny ridge-gd, sometimes beside
    a good override or a second bad one."""
    leaves = schema_leaves()
    pool = [(key, value) for key, (kind, meta) in leaves.items() for value in bad_values(kind, meta)]
    chosen = rng.sample(pool, 260)
    cases = []
    for i, (key, value) in enumerate(chosen):
        extra = [] if i % 3 else [f"{k}={v}" for k, v in [rng.choice(pool)]]
        cases.append((f"run {key}={value} {' '.join(extra)}".strip(), ["run", "ridge-gd", *TINY, f"{key}={value}", *extra]))
    return cases


def mutated_recipes(rng, folder: Path) -> list[tuple[str, list[str]]]:
    """Each built-in recipe damaged in ways that must be refused: a leaf given a bad value, an
    unknown key, a byte that is not UTF-8, truncation, deep nesting, an alias bomb, padding past
    the size limit, binary garbage."""
    import yaml

    from reglab.config import RECIPE_DIR, flat_keys

    leaves = schema_leaves()
    cases = []
    for recipe in RECIPES:
        text = (RECIPE_DIR / f"{recipe}.yaml").read_text()
        tree = yaml.safe_load(text)
        keys = sorted(k for k in flat_keys(tree) if k in leaves)
        mutations = {}
        for n in range(3):
            key = rng.choice(keys)
            value = rng.choice(bad_values(*leaves[key]))
            mutated = yaml.safe_load(yaml.safe_dump(tree))
            node = mutated
            *parents, leaf = key.split(".")
            for part in parents:
                node = node[part]
            node[leaf] = yaml.safe_load(value)
            mutations[f"{key}={value}"] = yaml.safe_dump(mutated).encode()
        section = rng.choice(["", "train.", "model.", "reg.", "data."])
        mutations["unknown key"] = text.encode() + f"\n{section.rstrip('.') + ': {' if section else ''}bogus_{rng.randrange(999)}: 1{'}' if section else ''}\n".encode()
        cut = rng.randrange(1, len(text))
        mutations[f"truncated at {cut}"] = text[:cut].encode() + b"\n{"
        at = rng.randrange(len(text))
        mutations[f"not UTF-8 at {at}"] = text[:at].encode() + b"\xff\xfe" + text[at:].encode()
        mutations["nested 200 deep"] = text.encode() + b"\npublished: " + b"{a: " * 200 + b"1" + b"}" * 200 + b"\n"
        mutations["alias bomb"] = text.encode() + f"\npublished: {{source: {alias_bomb()}}}\n".encode()
        mutations["past the size limit"] = text.encode() + b"\n" + b"# padding\n" * 110_000
        mutations["binary"] = bytes(rng.randrange(256) for _ in range(512))
        for i, (label, content) in enumerate(mutations.items()):
            path = folder / f"{recipe}-{i}.yaml"
            path.write_bytes(content)
            cases.append((f"recipe {recipe}: {label}", ["run", str(path)]))
    return cases


def damages(rng, text: bytes, yaml_file: bool) -> dict[str, bytes | int]:
    """A file's damaged versions: truncated (mid-line, so never a shorter valid file), nested
    100,000 deep, binary, and huge (an int: the size of a sparse file past the read limit)."""
    from reglab.bounded import MAX_JSON_BYTES, MAX_YAML_BYTES

    out: dict[str, bytes | int] = {}
    for _ in range(3):
        cut = rng.randrange(1, len(text) - 1)
        while text[cut - 1:cut] == b"\n" or text[cut:cut + 1] == b"\n":
            cut = rng.randrange(1, len(text) - 1)
        out[f"truncated at {cut}"] = text[:cut] + (b"\n{" if yaml_file else b"")
    out["nested"] = (b"a: " + b"[" * 100_000 if yaml_file else b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")
    out["binary"] = b"\xff" + bytes(rng.randrange(256) for _ in range(1024))
    out["huge"] = (MAX_YAML_BYTES if yaml_file else MAX_JSON_BYTES) + 1
    return out


def write_damage(path: Path, damage: bytes | int) -> None:
    if isinstance(damage, int):
        path.write_bytes(b"")
        with open(path, "r+b") as handle:
            handle.truncate(damage)
    else:
        path.write_bytes(damage)


@pytest.fixture(scope="module")
def good_study(tmp_path_factory) -> Path:
    """One real, finished study of two points on ridge-gd."""
    import io
    from contextlib import redirect_stdout

    from reglab.study.sweep import sweep

    root = tmp_path_factory.mktemp("good_study")
    with redirect_stdout(io.StringIO()):
        sweep("ridge-gd", TINY, ["reg.lam=1e-3,1e-2"], name="s", studies_dir=root / "studies", echo=lambda line: None)
    return root / "studies" / "s"


def damaged_file_cases(rng, good_run: Path, good_study: Path, folder: Path) -> list[tuple[str, list[str]]]:
    """show and report on run folders with one damaged file; report, studies, worker and sweep on
    study folders with a damaged study.db or storage.json."""
    import shutil

    cases = []
    for name in ("summary.json", "metrics.jsonl", "config.yaml"):
        for label, damage in damages(rng, (good_run / name).read_bytes(), name.endswith(".yaml")).items():
            run = folder / f"run-{name}-{label.replace(' ', '-')}" / good_run.name
            shutil.copytree(good_run, run)
            write_damage(run / name, damage)
            cases.append((f"show: {name} {label}", ["show", str(run)]))
            cases.append((f"report: {name} {label}", ["report", str(run), "--out", str(folder / "report")]))
    db = (good_study / "study.db").read_bytes()
    study_damages = {f"study.db truncated at {n}": db[:n] for n in (50, 1000, len(db) // 2)}
    study_damages |= {"study.db binary": b"\xff" + bytes(rng.randrange(256) for _ in range(8192)),
                      "study.db huge": 1 << 30}
    location = json.dumps({"storage": f"sqlite:///{good_study / 'study.db'}", "name": "s"}).encode()
    for label, damage in damages(rng, location, False).items():
        study_damages[f"storage.json {label}"] = damage
    for label, damage in study_damages.items():
        studies = folder / f"studies-{label.replace(' ', '-')}"
        shutil.copytree(good_study.parent, studies)
        target = studies / "s" / label.split()[0]
        if target.name == "storage.json":
            (studies / "s" / "study.db").unlink()
        write_damage(target, damage)
        cases.append((f"report: {label}", ["report", str(studies / "s"), "--out", str(folder / "report")]))
        if target.name == "study.db":
            cases.append((f"studies: {label}", ["studies", "--dir", str(studies)]))
            cases.append((f"worker: {label}", ["worker", "--study", "s", "--dir", str(studies)]))
            cases.append((f"sweep: {label}", ["sweep", "ridge-gd", *TINY, "--grid", "reg.lam=1e-3,1e-2", "--name", "s",
                                              "--dir", str(studies)]))
    return cases


def contract_broken(code, err: str, seconds: float, left: list) -> bool:
    one_line = err.startswith("error: ") and err.count("\n") == 1
    return code != 2 or not one_line or "Traceback" in err or seconds > 10 or bool(left)


def test_generated_fuzz_keeps_the_contract(good_run, good_study, tmp_path, monkeypatch, capsys):
    import random
    import time

    rng = random.Random(FUZZ_SEED)
    (tmp_path / "recipes").mkdir()
    (tmp_path / "damaged").mkdir()
    cases = (override_cases(rng) + mutated_recipes(rng, tmp_path / "recipes")
             + damaged_file_cases(rng, good_run, good_study, tmp_path / "damaged"))
    assert len(cases) >= 300
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    broken, slowest = [], 0.0
    for label, args in cases:
        started = time.perf_counter()
        code, out, err = cli(monkeypatch, capsys, *args)
        seconds = time.perf_counter() - started
        slowest = max(slowest, seconds)
        left = results_in(work) + sorted((tmp_path / "damaged").glob("report/index.html"))
        if contract_broken(code, err, seconds, left):
            broken.append(f"{label!r}: exit {code} in {seconds:.1f} s, stderr {err[-300:]!r}, left {left}")
        for path in left:
            shutil.rmtree(path.parent if path.name != "report" else path, ignore_errors=True)
    assert broken == [], f"{len(broken)} of {len(cases)} broke the contract:\n" + "\n".join(broken)


def test_generated_fuzz_in_real_processes(good_run, tmp_path):
    """A few generated cases as real processes: no traceback, for real."""
    import random

    rng = random.Random(FUZZ_SEED + 1)
    (tmp_path / "recipes").mkdir()
    cases = rng.sample(override_cases(rng), 2) + rng.sample(mutated_recipes(rng, tmp_path / "recipes"), 2)
    for label, args in cases:
        proc = subprocess.run([sys.executable, "-m", "reglab.cli", *args], cwd=tmp_path, capture_output=True,
                              text=True, timeout=60)
        assert proc.returncode == 2 and proc.stderr.startswith("error: ") and proc.stderr.count("\n") == 1, (label, proc.stderr)
