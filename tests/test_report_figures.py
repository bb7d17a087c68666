"""What the report says and draws: figures checked by what is on them (tick labels, legends outside
the axes and off every data point, shared y limits, 0–100 % axes, whole epochs), intervals only
over 5 seeds or more, warnings at the ends of the grid, the published figure only for the recipe's
own config, bookkeeping keys never factors, and a GAN summary without split losses."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest

from reglab.config import load_config
from reglab.report import analyse, write_report
from reglab.report import plots as report_plots
from reglab.report.edges import edge_warnings
from reglab.study.points import name_point, settings
from reglab.study.records import TrialRecord

SPEC = {"name": "figures", "recipe": "defaults", "recipe_yaml": "{}", "overrides": [], "folds": None}
LAMS = (1e-4, 3.16228e-4, 1e-3)  # the best at the top of the grid
RATES = (0.1, 0.3)


def history(acc: float, epochs: int = 4) -> list[dict]:
    return [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "train_acc": acc + 0.01 * e,
             "val_acc": acc + 0.005 * e} for e in range(1, epochs + 1)]


def record(point, label, family, lam, seed, acc, **extra):
    summary = {"val_acc": acc, "test_acc": acc - 0.01, "train_acc": acc + 0.05, "val_loss": 1 - acc,
               "test_loss": 1 - acc, "train_loss": 0.9 - acc, "gap_acc": 0.05, "gap_loss": 0.1,
               "weight_l2": 10 * (1 - acc), "zeros_total": 2.0, **extra}
    return TrialRecord(point=point, label=label, family=family, lam=lam, seed=seed, fold=None, status="ok",
                       summary=summary, history=history(acc))


def study(seeds: int) -> list[TrialRecord]:
    """none, l2 at three λ rising in accuracy with λ, dropout at two rates, on ``seeds`` seeds."""
    rng = np.random.default_rng(0)
    out = []
    for seed in range(seeds):
        noise = lambda: float(rng.normal(0, 0.004))  # noqa: E731
        out.append(record({"reg": "none"}, "none", "none", None, seed, 0.70 + noise()))
        for i, lam in enumerate(LAMS):
            out.append(record({"reg": "l2", "reg.lam": lam}, f"l2 λ={lam:g}", "l2", lam, seed, 0.72 + 0.02 * i + noise()))
        for i, p in enumerate(RATES):
            out.append(record({"reg": "dropout", "reg.dropout": p}, f"dropout p={p:g}", "dropout", p, seed,
                              0.75 - 0.02 * i + noise()))
    return out


@pytest.fixture
def figures(monkeypatch):
    """Every report figure as drawn (the real one, kept after it is written)."""
    drawn = {}
    save = report_plots.save

    def keep(fig, path, heading):
        save(fig, path, heading)
        drawn[path.stem] = fig

    monkeypatch.setattr(report_plots, "save", keep)
    return drawn


def renderer(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # a closed figure's canvas no longer draws
    canvas.draw()
    return canvas.get_renderer()


def check_legends(fig) -> int:
    """Each legend lies inside the figure, off every axes' plotting area and y labels, and covers
    no data point of any line; returns how many legends there are."""
    r = renderer(fig)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    count = 0
    for ax in shown:
        legend = ax.get_legend()
        if legend is None:
            continue
        count += 1
        box = legend.get_window_extent(r)
        assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= fig.bbox.x1 + 0.5 and box.y1 <= fig.bbox.y1 + 0.5, box
        for other in shown:
            assert not box.overlaps(other.get_window_extent(r)), (ax.get_title(), other.get_title())
            if other is not ax:
                assert not box.overlaps(other.yaxis.get_tightbbox(r)), (ax.get_title(), other.get_title())
        for owner in shown:
            for line in owner.get_lines():
                points = line.get_transform().transform(np.asarray(line.get_xydata(), dtype=float))
                inside = [box.contains(x, y) for x, y in points if np.isfinite(x) and np.isfinite(y)]
                assert not any(inside), line.get_label()
    return count


def tick_texts(axis) -> list[str]:
    return [t.get_text() for t in axis.get_ticklabels() if t.get_text() and t.get_visible()]


def test_report_figures_read_right(figures, tmp_path):
    analysis = write_report(SPEC, study(5), tmp_path).analysis
    assert set(figures) == {"metric_vs_lambda", "curves", "gap_vs_lambda", "weights_vs_lambda"}
    for name, fig in figures.items():
        assert check_legends(fig) > 0, name
    metric = figures["metric_vs_lambda"]
    panels = [ax for ax in metric.axes if ax.get_visible()]
    assert len(panels) == 2
    assert len({ax.get_ylim() for ax in panels}) == 1, "the families' panels share one y scale"
    from reglab.formatting import fmt_lam

    for ax in panels:
        texts = tick_texts(ax.xaxis)
        assert texts and all(fmt_lam(float(t)) == t for t in texts), texts
    labels = {t.get_text() for ax in panels for t in ax.get_legend().get_texts()}
    assert {"λ_min = 1e-3", "λ_1se = 1e-3", "p_min = 0.1"} <= labels, labels
    assert not any(re.search(r"λ_(min|1se) = 0\.\d", text) for text in labels), "a rate is no λ"
    curves = [ax for ax in figures["curves"].axes if ax.get_visible()]
    for ax in curves:
        assert all(re.fullmatch(r"\d+", t) for t in tick_texts(ax.xaxis)), tick_texts(ax.xaxis)
    assert len({ax.get_ylim() for ax in curves}) == 1
    weights = [ax for ax in figures["weights_vs_lambda"].axes if ax.get_visible()]
    zeros = [ax for ax in weights if ax.get_ylabel() == "exact zeros (%)"]
    assert zeros and all(ax.get_ylim() == (0, 100) for ax in zeros)
    norms = [ax for ax in weights if ax.get_ylabel().startswith("‖w‖₂")]
    assert len(norms) == 2 and norms[0].get_ylim() == norms[1].get_ylim()
    assert analysis.edges[-1] == "l2: λ_min = λ_1se = 1e-3 is the largest λ tried; try 1e-3…0.1"


def test_a_family_at_one_lambda_gets_no_lambda_plot(figures, tmp_path):
    one = [r for r in study(5) if r.lam in (None, 1e-3)]
    write_report(SPEC, one, tmp_path)
    assert "metric_vs_lambda" not in figures and "gap_vs_lambda" not in figures
    assert not (tmp_path / "plots" / "metric_vs_lambda.png").exists()


def test_fewer_than_five_seeds_get_no_interval_and_no_p_improvement(tmp_path):
    result = write_report(SPEC, study(3), tmp_path)
    html = result.index.read_text()
    assert "fewer than 5 seeds (n = 3): no 95% intervals and no P(improvement)" in html
    assert "P(improvement) = " not in html
    for comparison in result.analysis.comparisons:
        assert "[" not in comparison.verdict, comparison.verdict
    cells = re.findall(r'<td class="num">([^<]*)</td>', html)
    assert cells and not any("[" in cell for cell in cells), cells
    with open(tmp_path / "comparisons.csv", newline="") as fh:
        for row in csv.DictReader(fh):
            assert row["diff_ci_low"] == row["p_improvement"] == ""
    many = write_report(SPEC, study(5), tmp_path / "five").index.read_text()
    assert "P(improvement) = " in many and "fewer than 5 seeds" not in many


def test_lambda_at_an_end_of_the_grid_is_warned_with_the_next_range(tmp_path):
    result = write_report(SPEC, study(5), tmp_path)
    warning = "l2: λ_min = λ_1se = 1e-3 is the largest λ tried; try 1e-3…0.1"
    assert warning in result.analysis.edges
    assert warning in result.index.read_text()
    with open(tmp_path / "selection.csv", newline="") as fh:
        assert {r["family"]: r["grid_edge"] for r in csv.DictReader(fh)}["l2"] == warning
    assert edge_warnings("l2", [1e-5, 1e-4, 1e-3], 1e-5, 1e-4, "reg.lam") == [
        "l2: λ_min = 1e-5 is the smallest λ tried; try 1e-7…1e-5"]
    assert edge_warnings("l2", [1e-5, 1e-4, 1e-3], 1e-4, 1e-4, "reg.lam") == []
    assert edge_warnings("dropout", [0.1, 0.3, 0.5], 0.5, 0.5, "model.dropout") == [
        "dropout: p_min = p_1se = 0.5 is the largest p tried; try 0.5…0.9"]


def published_spec() -> dict:
    """A study of the mlp-l2 recipe (its published figure: the mnist1d paper's MLP)."""
    from reglab.config import recipe_path

    return {"name": "p", "recipe": "mlp-l2", "recipe_yaml": recipe_path("mlp-l2").read_text(), "overrides": [],
            "folds": None, "published": {"value": 0.68, "metric": "test_acc", "source": "the paper"}}


def test_the_published_figure_is_quoted_only_for_the_recipes_own_config(tmp_path):
    own = [record({"reg.lam": 1e-4}, "l2 λ=0.0001", "l2", 1e-4, s, 0.66) for s in range(5)]
    quoted = analyse(published_spec(), own)
    assert quoted.reference.startswith("Published reference for the recipe's own config (L2 λ=1e-4): 68.0 "
                                       "(the paper); ours is 65.0")
    assert quoted.reference.endswith("3.0 points below it")
    short = [record({"reg.lam": 1e-4, "train.epochs": 3, "data.n_train": 300}, "l2 λ=0.0001", "l2", 1e-4, s, 0.3)
             for s in range(5)]
    other = analyse(published_spec(), short)
    assert other.reference == ("no published reference for these configs: the published figure (the paper) is "
                               "for the recipe's own config, and the closest config here differs in data.n_train, "
                               "train.epochs")
    assert "below it" not in other.best and "published" not in other.best
    # output and logging keys change nothing: the recipe's config with them set is still its own
    logged = [record({"reg.lam": 1e-4, "train.tensorboard": True, "train.plots": False}, "l2 λ=0.0001", "l2",
                     1e-4, s, 0.66) for s in range(5)]
    assert analyse(published_spec(), logged).reference.startswith("Published reference")


def test_output_and_logging_keys_are_never_factors():
    plain = load_config("mlp-l2")
    logged = load_config("mlp-l2", ["train.tensorboard=true", "train.plots=false", "train.save_weights=false",
                                    "out=elsewhere", "device=cpu", "name=other", "description=x"])
    assert settings(logged) == settings(plain)
    from reglab.config import flat_keys

    flat = flat_keys(logged.to_dict())
    family, label, _, _ = name_point(flat, {"train.epochs": 20, "train.tensorboard": True, "reg.lam": 1e-4})
    assert family == "l2 train.epochs=20" and "tensorboard" not in label


def test_run_folders_differing_in_logging_keys_are_one_family(tmp_path):
    from reglab.report import records_from_runs
    from reglab.train import run

    for seed, logging in ((0, "true"), (1, "false")):
        for lam in (0.01, 0.1):
            run(load_config("ridge-gd", ["train.epochs=20", f"train.plots={logging}", "train.save_weights=false",
                                         f"seed={seed}", "reg=l2", f"reg.lam={lam}"]), root=tmp_path, progress=False)
    _, records = records_from_runs([tmp_path])
    assert {r.family for r in records} == {"l2"}
    assert {r.label for r in records} == {"l2 λ=0.01", "l2 λ=0.1"}


def test_run_plots_keep_legends_off_the_curves_and_gan_epochs_whole():
    from reglab.adversarial.plots import robustness_figure
    from reglab.gan.plots import loss_curves_figure
    from reglab.plots import learning_curve_figure

    metrics = [{**h, "zeros/fc.weight": 10.0 * h["epoch"]} for h in history(0.7, 6)]
    check_legends(learning_curve_figure(metrics, "run"))
    gan = [{"epoch": e, "d_loss": 1.0 / e, "g_loss": 0.5 * e, **({"modes": e} if e % 2 == 0 else {})} for e in (1, 2, 3, 4)]
    fig = loss_curves_figure(gan, "gan")
    assert check_legends(fig) == 1
    for ax in fig.axes:
        assert all(re.fullmatch(r"\d+", t) for t in tick_texts(ax.xaxis)), tick_texts(ax.xaxis)
    adv = [{"epoch": e, "train_robust_acc": 0.3, "val_robust_acc": 0.25, "val_acc": 0.8} for e in (1, 2, 3)]
    summary = {"robust_eps": 0.1, "robust_best_epoch": 2, "robust_curve": [[0.0, 0.8], [0.1, 0.3]],
               "robust_attack": "PGD-20 linf, 1 restarts"}
    fig = robustness_figure(adv, summary, "adv")
    assert check_legends(fig) == 1
    assert all(re.fullmatch(r"\d+", t) for t in tick_texts(fig.axes[0].xaxis))


def test_a_gan_summary_holds_only_what_a_gan_measures(tmp_path):
    from reglab.train import run

    result = run(load_config("gan-ring", ["data.n_samples=400", "train.epochs=2", "gan.g_hidden=[8]", "gan.d_hidden=[8]",
                                          "gan.n_eval_samples=100", "train.plots=false", "train.save_weights=false"]),
                 root=tmp_path, progress=False)
    summary = result.summary
    assert summary["status"] == "ok" and "reverse_kl" in summary and "modes" in summary
    for key in ("val_loss", "test_loss", "gap_loss", "train_loss", "best_epoch"):
        assert key not in summary, key


def adversarial_study(seeds: int) -> list[TrialRecord]:
    """PGD training without and with L2 at two λ: robust accuracy falls with ε, clean is higher."""
    rng = np.random.default_rng(1)
    out = []
    for seed in range(seeds):
        for point, label, family, lam, robust in (({"reg": "none"}, "none", "none", None, 0.40),
                                                  ({"reg.lam": 1e-4}, "l2 λ=0.0001", "l2", 1e-4, 0.42),
                                                  ({"reg.lam": 1e-3}, "l2 λ=0.001", "l2", 1e-3, 0.45)):
            r = robust + float(rng.normal(0, 0.005))
            out.append(record(point, label, family, lam, seed, 0.9, robust_val_acc=r, robust_test_acc=r - 0.01,
                              robust_gap=0.08, robust_curve=[[0.0, 0.9], [0.1, r + 0.2], [0.2, r]]))
    return out


def test_an_adversarial_report_shows_clean_beside_robust_and_accuracy_vs_eps(figures, tmp_path):
    from reglab.config import recipe_path

    spec = {**SPEC, "recipe": "adversarial-l2", "recipe_yaml": recipe_path("adversarial-l2").read_text()}
    result = write_report(spec, adversarial_study(5), tmp_path)
    assert result.analysis.metric.key == "robust_val_acc"
    html = result.index.read_text()
    for column in ("val robust accuracy (%)", "test robust accuracy (%)", "robust gap", "val clean accuracy (%)",
                   "test clean accuracy (%)"):
        assert f"<th>{column}</th>" in html, column
    assert "Robust gap: robust train − test accuracy (points)" in html
    assert ", clean test accuracy 89.0 [" in result.analysis.best
    with open(tmp_path / "configs.csv", newline="") as fh:
        row = {r["label"]: r for r in csv.DictReader(fh)}["none"]
    assert float(row["test_acc_mean"]) == pytest.approx(0.89) and float(row["gap_mean"]) == pytest.approx(0.08)
    curve = figures["robust_vs_eps"]
    assert check_legends(curve) == 2
    panels = [ax for ax in curve.axes if ax.get_visible()]
    assert all(ax.get_ylim() == (0, 100) for ax in panels)
    (l2,) = [ax for ax in panels if ax.get_title() == "l2"]
    means = {line.get_label(): line.get_ydata() for line in l2.get_lines()}
    expected = [np.mean([r.summary["robust_curve"][i][1] for r in adversarial_study(5) if r.lam == 1e-3]) * 100
                for i in range(3)]
    assert list(means["1e-3"]) == pytest.approx(expected)
    assert len(l2.collections) == 2  # a band per config over 5 seeds
