"""The GAN mode table and the L1 verdict, on constructed runs with known differences."""

import numpy as np
import pytest

from reglab.config import load_config
from reglab.gan.modes import GanRun, comparison, l1_verdict, markdown_table, mode_rows, regularizer_label


def label_of(*overrides):
    return regularizer_label(load_config("gan-grid", list(overrides)).to_dict())


def test_labels_name_the_resolved_regularizers():
    assert label_of("gan.regularizer=none") == "none"
    assert label_of("gan.regularizer=l1") == "l1 λ=1e-4"
    assert label_of("gan.regularizer=r1", "gan.strength=10") == "r1 γ=1"
    assert label_of("gan.regularizer=sn") == "sn"
    assert label_of("gan.regularizer=custom", "gan.r1=0", "reg=l2", "reg.lam=0.01", "gan.reg_on=d",
                    "reg.mode=decoupled", "gan.spectral_norm=true") == "l2 λ=0.01 decoupled on D + sn"  # fmt: skip


def runs(label, modes, hq, kl, failed=0):
    made = [GanRun(label, seed, "ok", {"modes": m, "hq_pct": h, "reverse_kl": k})
            for seed, (m, h, k) in enumerate(zip(modes, hq, kl))]  # fmt: skip
    return made + [GanRun(label, 100 + i, "failed", {}) for i in range(failed)]


def test_rows_rank_and_count_failures():
    rng = np.random.default_rng(0)
    base = rng.uniform(15, 20, 8)
    data = (runs("none", base, [80] * 8, [0.5] * 8) + runs("l1 λ=1e-4", base + 0.5, [80] * 8, [0.5] * 8, failed=2)
            + runs("r1 γ=0.1", [25] * 8, [90] * 8, [0.01] * 8))  # fmt: skip
    rows = mode_rows(data)
    assert [r.label for r in rows] == ["r1 γ=0.1", "l1 λ=1e-4", "none"]
    l1 = rows[1]
    assert (l1.ok, l1.failed) == (8, 2)
    assert l1.stats["modes"].mean == pytest.approx(base.mean() + 0.5)
    assert l1.stats["modes"].low <= l1.stats["modes"].mean <= l1.stats["modes"].high
    table = markdown_table(rows)
    assert "| l1 λ=1e-4 | 8 (2 failed) |" in table and table.count("\n") == 4


def test_verdict_sentences_follow_the_paired_differences():
    seeds = 10
    rng = np.random.default_rng(1)
    none_modes = rng.uniform(14, 20, seeds)
    data = (runs("none", none_modes, [85] * seeds, rng.uniform(0.4, 0.8, seeds))
            + runs("l1 λ=1e-4", none_modes + rng.uniform(-0.5, 0.5, seeds), [85] * seeds, rng.uniform(0.4, 0.8, seeds))
            + runs("r1 γ=0.1", none_modes + rng.uniform(5, 8, seeds), rng.uniform(90, 95, seeds), [0.01] * seeds))  # fmt: skip
    against_none, against_best = l1_verdict(data)
    assert against_none.startswith("l1 λ=1e-4 against none (10 seeds): no significant difference")
    assert against_best.startswith("l1 λ=1e-4 against r1 γ=0.1 (10 seeds): worse on modes, HQ %, reverse KL")
    mixed = comparison(runs("a", [3] * 6, [50] * 6, [0.1] * 6) + runs("b", [1, 2, 1, 2, 1, 2], [60, 61, 62, 63, 64, 65],
                                                                     [0.1] * 6), "a", "b")  # fmt: skip
    assert "better on modes but worse on HQ %" in mixed and "modes +1.5 [" in mixed


def test_report_of_a_gan_study(tmp_path):
    """A real (tiny) GAN study: none and sn collapse across gan.strength, λ is chosen on reverse KL
    (not val_loss), and the report shows the mode table and compares on all three mode metrics."""
    import csv

    from reglab.report import build_report
    from reglab.study.records import load_study
    from reglab.study.sweep import sweep

    tiny = ["data.n_samples=2000", "train.epochs=2", "gan.g_hidden=[16]", "gan.d_hidden=[16]",
            "gan.n_eval_samples=200", "train.plots=false", "train.save_weights=false"]
    sweep("gan-grid", tiny, ["gan.regularizer=none,l1,sn", "gan.strength=1,3"], seeds="0-2", workers=1,
          studies_dir=tmp_path, echo=lambda line: None, name="g")
    spec, records = load_study(tmp_path / "g")
    assert len(records) == 4 * 3  # none, l1 ×2 strengths, sn; not 6 points
    result = build_report([tmp_path / "g"], tmp_path / "out")
    a = result.analysis
    assert a.metric.key == "reverse_kl" and a.metric.direction == "minimize"
    assert [c.label for c in a.configs] == ["none", "sn", "l1 λ=0.0001", "l1 λ=0.0003"]
    compared = {(c.chosen.family, c.metric.key, c.baseline.label) for c in a.comparisons}
    assert compared == {(f, k, "none") for f in ("l1", "sn") for k in ("modes", "hq_pct", "reverse_kl")}
    none = next(c for c in a.configs if c.label == "none")
    modes = [r.summary["modes"] for r in records if r.label == "none"]
    assert none.table["modes"].mean == pytest.approx(np.mean(modes))
    html = result.index.read_text()
    assert "Mode coverage" in html and "reverse KL" in html
    with open(tmp_path / "out" / "configs.csv", newline="") as fh:
        rows = {r["label"]: r for r in csv.DictReader(fh)}
    assert float(rows["none"]["modes_mean"]) == pytest.approx(np.mean(modes))
