"""The report built from real run folders and a real study: files, numbers checked against the
run summaries and scipy, verdict sentences, failed and unfinished trials, and bad input."""

import base64
import csv
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy import stats as sps

from reglab.config import load_config
from reglab.errors import UserError
from reglab.report import analyse, build_report, records_from_runs, write_report
from reglab.stats import bootstrap_ci
from reglab.runs import RunFolder
from reglab.study.records import TrialRecord
from reglab.train import run

TINY = ["data.n_train=200", "train.epochs=3", "model.hidden=[16]", "train.plots=false", "train.save_weights=false"]
SEEDS = (0, 1, 2)
PLOTS = ("metric_vs_lambda", "curves", "gap_vs_lambda", "weights_vs_lambda")
CSVS = ("configs", "selection", "comparisons", "failed")


def train(root: Path, *overrides: str, recipe: str = "mlp-l2", tiny=TINY):
    return run(load_config(recipe, [*tiny, *overrides]), root=root, progress=False)


@pytest.fixture(scope="module")
def runs_root(tmp_path_factory) -> Path:
    """none, l2 at two λ, and dropout, each on three seeds; the model has no dropout of its own, so
    each differs from none in its regularizer only."""
    root = tmp_path_factory.mktemp("runs")
    for seed in SEEDS:
        train(root, "reg=none", "model.dropout=0", f"seed={seed}")
        for lam in (1e-3, 1e-1):
            train(root, "reg=l2", f"reg.lam={lam}", "model.dropout=0", f"seed={seed}")
        train(root, "reg=dropout", "reg.dropout=0.3", f"seed={seed}")
    return root


@pytest.fixture(scope="module")
def report(runs_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return build_report([runs_root], out), out


def summaries(root: Path) -> list[tuple[dict, dict]]:
    """(config, summary) of every run folder, read straight from disk."""
    import yaml

    return [(yaml.safe_load((p.parent / "config.yaml").read_text()), json.loads(p.read_text()))
            for p in sorted(root.glob("**/summary.json"))]


def by_config(root: Path, family: str, strength: float | None, key: str) -> dict[int, float]:
    """seed → summary[key] of the runs of this family (a penalty, dropout or none) and strength."""
    out = {}
    for config, summary in summaries(root):
        reg, rate = config["reg"], config["model"]["dropout"]
        if (reg["penalty"] if reg["penalty"] != "none" else "dropout" if rate else "none") != family:
            continue
        if strength is not None and (rate if family == "dropout" else reg["lam"]) != strength:
            continue
        out[config["seed"]] = summary[key]
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_report_writes_every_file_and_embeds_every_figure(report):
    result, out = report
    assert result.index == out / "index.html"
    for name in PLOTS:
        assert (out / "plots" / f"{name}.png").is_file(), name
    assert not (out / "plots" / "coefficient_paths.png").exists()  # no linear model here
    for name in CSVS:
        assert (out / f"{name}.csv").is_file(), name
    html = result.index.read_text()
    assert "http://" not in html and "https://" not in html and "<script" not in html
    sources = re.findall(r'<img src="([^"]+)"', html)
    assert len(sources) == len(PLOTS)
    embedded = {base64.b64decode(s.removeprefix("data:image/png;base64,")) for s in sources}
    assert all(s.startswith("data:image/png;base64,") for s in sources)
    assert embedded == {(out / "plots" / f"{name}.png").read_bytes() for name in PLOTS}
    assert not list(out.glob(".report-*")), "the scratch folder is removed"


def test_configs_table_matches_the_run_summaries(report, runs_root):
    _, out = report
    rows = {r["label"]: r for r in read_csv(out / "configs.csv")}
    assert set(rows) == {"none", "l2 λ=0.001", "l2 λ=0.1", "dropout p=0.3"}
    val = by_config(runs_root, "l2", 0.1, "val_acc")
    assert int(rows["l2 λ=0.1"]["n_seeds"]) == 3
    assert float(rows["l2 λ=0.1"]["val_mean"]) == pytest.approx(np.mean(list(val.values())))
    row = rows["l2 λ=0.1"]
    assert row["val_ci_low"] == row["val_ci_high"] == ""  # 3 seeds: no interval
    norms = by_config(runs_root, "none", None, "weight_l2")
    assert float(rows["none"]["weight_l2"]) == pytest.approx(np.mean(list(norms.values())))


def test_lambda_is_chosen_on_validation_by_the_one_se_rule(report, runs_root):
    _, out = report
    (row,) = [r for r in read_csv(out / "selection.csv") if r["family"] == "l2"]
    means = {lam: np.mean(list(by_config(runs_root, "l2", lam, "val_acc").values())) for lam in (1e-3, 1e-1)}
    lam_min = max(means, key=lambda lam: (means[lam], lam))
    best = list(by_config(runs_root, "l2", lam_min, "val_acc").values())
    se = np.std(best, ddof=1) / np.sqrt(len(best))
    lam_1se = max(lam for lam, m in means.items() if m >= means[lam_min] - se)
    assert float(row["lambda_min"]) == lam_min
    assert float(row["lambda_1se"]) == lam_1se
    assert float(row["se_at_lambda_min"]) == pytest.approx(se)
    test_at_min = by_config(runs_root, "l2", lam_min, "test_acc")
    assert float(row["test_at_min_mean"]) == pytest.approx(np.mean(list(test_at_min.values())))


def test_comparisons_are_paired_on_test_with_wilcoxon_and_holm(report, runs_root):
    result, out = report
    rows = {r["config"]: r for r in read_csv(out / "comparisons.csv")}
    assert len(rows) == 2  # l2 at its λ_min, and dropout, each against none
    base = by_config(runs_root, "none", None, "test_acc")
    raw = {}
    for selection in result.analysis.selections:
        lam = selection.choice.lam_min
        treated = by_config(runs_root, selection.family, lam, "test_acc")
        diffs = np.array([treated[s] - base[s] for s in SEEDS])
        row = rows[selection.at_min.label]
        assert row["baseline"] == "none" and int(row["pairs"]) == 3
        # L2 differs from none in L2 only, dropout p=0.3 in its rate only (it is no weight penalty)
        own = "reg.lam reg.penalty" if selection.family == "l2" else "model.dropout"
        assert row["baseline_differs_in"] == own
        assert float(row["mean_diff"]) == pytest.approx(diffs.mean())
        p = 1.0 if not diffs.any() else sps.wilcoxon(diffs).pvalue
        assert float(row["wilcoxon_p"]) == pytest.approx(p)
        raw[selection.at_min.label] = p
    small, large = sorted(raw.values())
    expected_holm = {small: min(1, 2 * small), large: max(min(1, 2 * small), large)}
    for label, p in raw.items():
        assert float(rows[label]["holm_p"]) == pytest.approx(expected_holm[p])


def test_run_folders_of_an_older_reglab_read_the_same(runs_root, tmp_path):
    """An older reglab wrote reg.dropout into every config and reg.penalty: dropout for dropout runs;
    such folders give the same points as today's."""
    import shutil

    import yaml

    old_root = tmp_path / "old"
    shutil.copytree(runs_root, old_root)
    for path in old_root.glob("**/config.yaml"):
        config = yaml.safe_load(path.read_text())
        rate = config["model"]["dropout"]
        config["reg"]["dropout"] = rate or 0.2
        if rate:
            config["reg"].update(penalty="dropout", lam=0.0)
        path.write_text(yaml.safe_dump(config, sort_keys=False))
    points = lambda root: sorted((r.label, r.family, r.lam, r.seed) for r in records_from_runs([root])[1])
    assert points(old_root) == points(runs_root)
    assert ("dropout p=0.3", "dropout", 0.3, 0) in points(old_root)


def test_verdict_sentences_are_in_the_page(report):
    result, out = report
    html = result.index.read_text()
    pattern = re.compile(r"^(L2 λ=\S+|Dropout p=0\.3) (raises|lowers|changes) test accuracy by −?\d+\.\d points "
                         r"over none"
                         r"(: no significant difference at 0\.05)? \(n = 3 seeds, Holm p(=[\d.e-]+|<0\.001)\)$")
    verdicts = [row["verdict"] for row in read_csv(out / "comparisons.csv")]
    assert len(verdicts) == 2
    for sentence in verdicts:
        assert pattern.match(sentence), sentence
        assert sentence.replace("'", "&#x27;") in html
    assert "Each family" in html and "λ_1se" in html


def synthetic_spec(name="s"):
    """A study spec for hand-made records: the schema's defaults as the recipe."""
    return {"name": name, "recipe": "defaults", "recipe_yaml": "{}", "overrides": [], "folds": None}


def records(diffs, base=0.8, key="acc", family="l2", lam=1e-3):
    """Records of a baseline and one λ on the same seeds; the λ's test metric is base + diff."""
    out = []
    for seed, d in enumerate(diffs):
        for fam, lam_, value in (("none", None, base), (family, lam, base + d)):
            summary = {f"val_{key}": value, f"test_{key}": value, f"train_{key}": value}
            if key == "acc":
                summary.update(val_loss=1.0, test_loss=1.0, train_loss=1.0)
            label = fam if lam_ is None else f"{fam} λ=1e-3"
            point = {"reg": fam} if lam_ is None else {"reg": fam, "reg.lam": lam_}
            out.append(TrialRecord(point=point, label=label, family=fam, lam=lam_, seed=seed, fold=None,
                                   status="ok", summary=summary))
    return out


def test_a_significant_gain_reads_as_raises_with_its_interval():
    diffs = np.random.default_rng(4).normal(0.02, 0.004, size=10)
    spec = synthetic_spec()
    (comparison,) = analyse(spec, records(diffs)).comparisons
    low, high = bootstrap_ci(diffs)
    p = sps.wilcoxon(diffs).pvalue
    assert comparison.verdict == (f"L2 λ=1e-3 raises test accuracy by {100 * diffs.mean():.1f} points "
                                  f"[{100 * low:.1f}, {100 * high:.1f}] over none (n = 10 seeds, Holm p={p:.2g})")


def test_no_significant_difference_is_said_plainly():
    diffs = np.array([0.01, -0.02, 0.005, -0.01, 0.0, 0.015, -0.005, 0.01])
    (comparison,) = analyse(synthetic_spec(), records(diffs)).comparisons
    assert "changes test accuracy by" in comparison.verdict
    assert ": no significant difference at 0.05 (n = 8 seeds, Holm p=" in comparison.verdict


def test_regression_verdict_speaks_of_mse():
    diffs = -np.linspace(0.1, 0.2, 8)  # lower MSE is better
    spec = synthetic_spec()
    (comparison,) = analyse(spec, records(diffs, base=1.0, key="loss")).comparisons
    assert comparison.verdict.startswith(f"L2 λ=1e-3 lowers test MSE by {-diffs.mean():.3g} [")
    assert comparison.result.p_improve == 1.0


def test_a_seed_on_which_the_baseline_failed_is_left_out_of_the_pairs_and_named():
    diffs = np.random.default_rng(4).normal(0.02, 0.004, size=10)
    recs = records(diffs)
    (lost,) = [r for r in recs if r.label == "none" and r.seed == 9]
    lost.status, lost.reason, lost.summary = "failed", "diverged: loss became nan at step 7", {}
    analysis = analyse(synthetic_spec(), recs)
    (comparison,) = analysis.comparisons
    assert comparison.seeds == 9 and comparison.failed_out == {"none": [9]}
    assert comparison.result.mean_diff == pytest.approx(diffs[:9].mean())
    assert comparison.verdict.startswith("L2 λ=1e-3 raises test accuracy by ")
    assert comparison.verdict.endswith(f"(n = 9 seeds, Holm p={sps.wilcoxon(diffs[:9]).pvalue:.2g}; "
                                       "seed 9 left out, as none failed on it)")


def test_every_text_on_the_page_is_escaped(tmp_path):
    recs = records(np.full(6, 0.01))
    for r in recs:
        if r.lam is not None:
            r.label = "l2 λ=1e-3 <script>alert(1)</script>"
    failed = TrialRecord(point={}, label="<b>odd</b>", family="l2", lam=1e-3, seed=9, fold=None, status="failed",
                         reason="diverged: <nan> & worse")
    html = write_report(synthetic_spec("<i>study</i>"), [*recs, failed], tmp_path).index.read_text()
    assert "<script>" not in html and "<b>odd</b>" not in html and "<i>study</i>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "diverged: &lt;nan&gt; &amp; worse" in html


def test_failed_and_unfinished_runs_through_the_command_line(runs_root, tmp_path):
    failed = train(tmp_path / "failed", "reg=l2", "reg.lam=1e-3", "seed=0", "optim.name=sgd", "optim.lr=1e6",
                   "train.clip_norm=null")
    assert not failed.ok and failed.summary["reason"].startswith("diverged")
    config = load_config("mlp-l2", [*TINY, "reg=l2", "reg.lam=1e-3", "seed=3"])
    killed = RunFolder.create(config, torch.device("cpu"), tmp_path / "failed")  # what a killed run leaves
    assert not killed.path.exists() and killed.where.name.endswith(".partial")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "reglab.cli", "report", str(runs_root), str(tmp_path / "failed"),
                           "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "unfinished:" not in proc.stdout  # the killed run's folder is not a run
    assert proc.stdout.strip().endswith(str(out / "index.html"))
    (row,) = read_csv(out / "failed.csv")
    assert row["reason"] == failed.summary["reason"] and row["run_dir"] == str(failed.path)
    html = (out / "index.html").read_text()
    assert "Failed trials (1)" in html and failed.summary["reason"] in html
    assert "Unfinished study" not in html and str(killed.path.name) not in html


def test_a_report_of_nothing_finished_says_what_is_missing(tmp_path):
    config = load_config("mlp-l2", [*TINY, "seed=0"])
    RunFolder.create(config, torch.device("cpu"), tmp_path / "killed")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "reglab.cli", "report", str(tmp_path / "killed"), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"error: '{tmp_path / 'killed'}' holds only unfinished run folders (named "
                                   "*.partial: their writer was killed, or is still at work)")
    assert not (out / "index.html").exists()


def test_only_failed_runs_name_the_reason(tmp_path):
    result = train(tmp_path, "reg=l2", "optim.name=sgd", "optim.lr=1e6", "train.clip_norm=null")
    spec, recs = records_from_runs([tmp_path])
    with pytest.raises(UserError, match=r"no successful trial: 1 failed \(first: diverged"):
        analyse(spec, recs)
    assert result.summary["status"] == "failed"


def test_bad_targets_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        build_report([tmp_path / "nope"], tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="neither a run folder nor a folder holding run folders"):
        build_report([tmp_path / "empty"], tmp_path / "out")


def test_runs_of_different_experiments_are_refused(runs_root, tmp_path):
    train(tmp_path / "other", "seed=0", recipe="ridge-gd", tiny=["train.epochs=2", "train.plots=false",
                                                                   "train.save_weights=false"])
    message = r"the run folders hold 2 different experiments \(mlp-l2 \(supervised on mnist1d\); ridge-gd"
    with pytest.raises(UserError, match=message):
        build_report([runs_root, tmp_path / "other"], tmp_path / "out")
    assert not (tmp_path / "out").exists()
    cli = subprocess.run([sys.executable, "-m", "reglab.cli", "report", str(runs_root), str(tmp_path / "other"),
                          "--out", str(tmp_path / "out")], capture_output=True, text=True)
    assert cli.returncode == 2 and cli.stderr.startswith("error: the run folders hold 2 different experiments")
    assert len(cli.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_ridge_without_a_none_baseline_compares_with_lambda_zero_and_draws_coefficient_paths(tmp_path):
    for seed in (0, 1):
        for lam in (0.0, 0.03, 0.3):
            train(tmp_path / "runs", "reg=l2", f"reg.lam={lam}", f"seed={seed}", recipe="ridge-gd",
                  tiny=["train.epochs=200", "train.plots=false", "train.save_weights=false"])
    result = build_report([tmp_path / "runs"], tmp_path / "out")
    assert (tmp_path / "out" / "plots" / "coefficient_paths.png").is_file()
    (sel,) = result.analysis.selections
    val = {lam: np.mean(list(by_config(tmp_path / "runs", "l2", lam, "val_loss").values())) for lam in (0.0, 0.03, 0.3)}
    assert sel.choice.lam_min == min(val, key=val.get)
    if sel.choice.lam_min == 0.0:
        assert "validation chose λ=0" in " ".join(result.analysis.notes)
    else:
        (comparison,) = result.analysis.comparisons
        assert comparison.baseline.label == "l2 λ=0"
        assert "test MSE" in comparison.verdict and "over l2 λ=0" in comparison.verdict


def test_report_of_a_real_study(tmp_path):
    from reglab.study.sweep import sweep

    sweep("mlp-l2", TINY[:3], ["reg=none,l2", "reg.lam=1e-3,1e-1"], seeds="0-1", workers=0,
          studies_dir=tmp_path, echo=lambda line: None)
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    with pytest.raises(UserError, match=rf"study '{folder.name}' has no finished trial yet: 6 waiting, 0 running"):
        build_report([folder], tmp_path / "out")
    sweep("mlp-l2", TINY[:3], ["reg=none,l2", "reg.lam=1e-3,1e-1"], seeds="0-1", workers=1,
          studies_dir=tmp_path, echo=lambda line: None)
    result = build_report([folder], tmp_path / "out")
    assert result.analysis.progress.complete
    assert {c.family for c in result.analysis.configs} == {"none", "l2"}
    (comparison,) = result.analysis.comparisons
    assert comparison.baseline.label == "none" and comparison.result.n == 2
    assert comparison.verdict in (tmp_path / "out" / "index.html").read_text()
