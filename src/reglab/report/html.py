"""The report page: one self-contained ``index.html`` with inline CSS, the figures embedded as
base64 ``data:`` URIs, no script and no reference to anything outside the file. All text is
escaped."""

from __future__ import annotations

import base64
from html import escape
from typing import Iterable

from reglab.report.analysis import Analysis
from reglab.formatting import fmt_ci, fmt_lam, fmt_p, fmt_strengths, fmt_value
from reglab.gan.modes import METRICS as MODE_METRICS
from reglab.gan.modes import cell, rows_of_configs
from reglab.report.plots import Plot
from reglab.stats import MIN_SEEDS, Summary
from reglab.report.verdicts import ALPHA, value_text

CSS = """
.best{font-weight:600}
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;color:#1d2430;
     max-width:1180px;margin:0 auto;padding:24px 28px 60px;background:#fff}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.2em;margin:34px 0 10px;border-bottom:1px solid #d8dde6;
   padding-bottom:4px}
.meta{color:#4a5568;margin:0 0 12px}.meta b{color:#1d2430}
table{border-collapse:collapse;margin:6px 0 10px;font-size:13.5px}
th,td{border:1px solid #d8dde6;padding:4px 9px;text-align:left;vertical-align:top}
th{background:#f2f4f8;font-weight:600}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.warn{background:#fff7e0;border:1px solid #e8c96a;padding:10px 14px;border-radius:6px}
ul.verdicts{padding-left:20px}ul.verdicts li{margin:6px 0}
.sig{color:#12633a;font-weight:600}.ns{color:#6b7280}.note{color:#6b7280;font-size:.9em}
figure{margin:18px 0 28px}figure img{max-width:100%;height:auto;border:1px solid #e5e8ee}
figcaption{color:#4a5568;font-size:.92em;margin-top:4px}
.small{font-size:.9em;color:#4a5568}
"""


def label(text: str) -> str:
    """A point's label as the page shows it: escaped, its strength in the one λ form."""
    return escape(fmt_strengths(text))


def table(header: Iterable[str], rows: Iterable[Iterable[str]], numeric: set[int] = frozenset()) -> str:
    """An HTML table; cells are already-escaped HTML, column indices in ``numeric`` align right."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{cell}</td>' if i in numeric else f"<td>{cell}</td>"
                         for i, cell in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def ci(summary: Summary | None, scale: float) -> str:
    """``82.1 [80.3, 83.9]``; the mean alone with fewer than ``stats.MIN_SEEDS`` seeds."""
    return "–" if summary is None else escape(value_text(summary, scale))


def describe_seeds(seeds) -> str:
    if isinstance(seeds, (list, tuple)) and seeds and all(isinstance(s, int) for s in seeds):
        ordered = sorted(seeds)
        if ordered == list(range(ordered[0], ordered[-1] + 1)) and len(ordered) > 2:
            return f"{ordered[0]}–{ordered[-1]} ({len(ordered)})"
        return ", ".join(map(str, ordered))
    return str(seeds)


def header(a: Analysis) -> str:
    spec, p, m = a.spec, a.progress, a.metric
    families = ", ".join(dict.fromkeys(c.family for c in a.configs))
    items = [("recipe", spec.get("recipe", "")), ("families", families),
             ("seeds", describe_seeds(spec.get("seeds", ""))),
             ("folds", spec.get("folds") or "none"), ("λ chosen on", f"{m.key} ({m.direction}), never on test"),
             ("trials", f"{p.counts['ok']} done, " + (f"{p.counts['pruned']} pruned, " if p.counts["pruned"] else "")
                        + f"{p.counts['failed']} failed, "
                        f"{p.counts['waiting'] + p.counts['running']} pending of {p.total}")]
    meta = " · ".join(f"{escape(k)}: <b>{escape(str(v))}</b>" for k, v in items)
    lines = [(name, spec.get(key)) for name, key in (("overrides", "overrides"), ("grid", "grids")) if spec.get(key)]
    grid_line = "".join(f'<p class="small">{name}: {escape("; ".join(map(str, values)))}</p>' for name, values in lines)
    return f"<h1>reglab report: {escape(str(spec.get('name', '')))}</h1><p class=\"meta\">{meta}</p>{grid_line}"


def unfinished(a: Analysis) -> str:
    p = a.progress
    if p.complete:
        return ""
    rows = [(label(name), str(w), str(r)) for name, (w, r) in sorted(p.pending.items())]
    missing = table(("config", "waiting", "running"), rows, {1, 2})
    return (f'<div class="warn"><b>Unfinished study.</b> {escape(p.message())}. Figures and statistics use only the '
            f"finished trials; rerun the report when the study is done.{missing}</div>")


def verdicts(a: Analysis) -> str:
    if not a.comparisons:
        body = '<p class="ns">No comparison with a baseline could be made.</p>'
    else:
        items = []
        for c in a.comparisons:
            cls = "sig" if c.holm_p < ALPHA else "ns"
            note = f' <span class="note">({escape(c.result.note)})</span>' if c.result.note else ""
            chance = (f' <span class="note">P(improvement) = {c.result.p_improve:.2f}</span>'
                      if c.result.n >= MIN_SEEDS else "")
            items.append(f'<li><span class="{cls}">{escape(c.verdict)}</span>.{chance}{note}</li>')
        body = f'<ul class="verdicts">{"".join(items)}</ul>'
    if a.reference:
        body = f'<p class="reference">{escape(a.reference[0].upper() + a.reference[1:])}.</p>' + body
    if a.best:
        body = f'<p class="best">{escape(a.best)}.</p>' + body
    notes = "".join(f'<p class="note">{label(n)}</p>' for n in a.notes)
    return ("<h2>Verdicts</h2>" + body + notes +
            '<p class="small">Each family\'s λ_min config against its baseline, the same config with that '
            "regularizer off (any other difference is named in the sentence), on the test metric. The unit of "
            "analysis is the seed (n = seeds; with folds, each seed's value is the mean over its folds): mean "
            "paired difference with its 95% bootstrap CI, two-sided Wilcoxon signed-rank p with Holm's "
            "correction over all comparisons. P(improvement) is the share of bootstrap resamples whose mean "
            "difference favours the regularized config.</p>")


def selection(a: Analysis) -> str:
    s = a.metric.scale
    rows = [(escape(sel.family), escape(fmt_lam(sel.choice.lam_min)), escape(fmt_lam(sel.choice.lam_1se)),
             ci(sel.at_min.val, s), ci(sel.at_min.test, s), ci(sel.at_1se.val, s), ci(sel.at_1se.test, s),
             escape(fmt_value(sel.choice.se, s)))
            for sel in a.selections]
    columns = ("family", "λ_min", "λ_1se", "val at λ_min", "test at λ_min", "val at λ_1se", "test at λ_1se",
               "SE at λ_min")
    return ("<h2>λ selection</h2>" + edges(a) + (table(columns, rows, {1, 2, 3, 4, 5, 6, 7}) if rows else
                                      '<p class="ns">No family was run at more than its baseline.</p>') +
            f'<p class="small">{escape(a.metric.name)}{" in %" if s == 100 else ""}, mean [95% bootstrap CI]. '
            "λ_min has the best mean validation metric over seeds (folds averaged within each), among the λ "
            "without a failed run; an exact tie goes to the larger λ. λ_1se is the largest λ without a failed run "
            "whose mean is within one standard error (at λ_min) of that best.</p>")


def edges(a: Analysis) -> str:
    """A warning for each λ_min or λ_1se at an end of its grid, with the range to try next."""
    if not a.edges:
        return ""
    items = "".join(f"<li>{escape(text)}</li>" for text in a.edges)
    return (f'<div class="warn edges"><b>At the edge of the grid.</b> The metric may still improve beyond '
            f"it:<ul>{items}</ul></div>")


def difference(r, scale: float) -> str:
    """The mean paired difference with its CI; alone with fewer than ``stats.MIN_SEEDS`` pairs."""
    if r.n < MIN_SEEDS:
        return escape(fmt_value(r.mean_diff, scale))
    return escape(fmt_ci(r.mean_diff, r.low, r.high, scale))


def comparisons(a: Analysis) -> str:
    s = a.metric.scale
    rows = [(label(c.chosen.label), label(c.baseline.label), str(c.result.n),
             difference(c.result, s), f"{c.result.p_improve:.2f}" if c.result.n >= MIN_SEEDS else "–",
             escape(fmt_p(c.result.p_value).lstrip("=")), escape(fmt_p(c.holm_p).lstrip("=")))
            for c in a.comparisons]
    if not rows:
        return ""
    return ("<h2>Comparisons</h2>" +
            table(("config", "baseline", "seeds", "difference [95% CI]", "P(improvement)", "Wilcoxon p",
                   "Holm p"), rows, {2, 3, 4, 5, 6}))


EXTRA_NAMES = {"val_acc": "val clean accuracy (%)", "test_acc": "test clean accuracy (%)"}


def config_rows(a: Analysis) -> list[tuple[str, ...]]:
    s, held_out = a.metric.scale, a.metric.held_out
    extra = [key for key in EXTRA_NAMES if a.metric.robust]
    return [(label(c.label), str(c.n), ci(c.val, s), *([ci(c.test, s), ci(c.gap, s)] if held_out else []),
             *(ci(c.table.get(key), 100) for key in extra),
             escape(fmt_value(c.weight_l2)), "–" if c.sparsity is None else f"{c.sparsity:.1f}")
            for c in a.configs]


def configs(a: Analysis) -> str:
    """Each config's validation and test metric with its gap; an adversarial study's robust and
    clean accuracy side by side (the gap is the robust one); a GAN's one metric (its runs have no
    held-out split)."""
    m = a.metric
    unit = " (%)" if m.scale == 100 else ""
    gap = "robust gap" if m.robust else "gap"
    columns = ["config", "seeds"]
    columns += [f"val {m.name}{unit}", f"test {m.name}{unit}", gap] if m.held_out else [f"{m.name}{unit}"]
    columns += [EXTRA_NAMES[key] for key in EXTRA_NAMES if m.robust]
    columns += ["‖w‖₂", "exact zeros (%)"]
    gap_text = f"{gap.capitalize()}: {m.gap_name}. " if m.held_out else ""
    return ("<h2>Configs</h2>" + table(columns, config_rows(a), set(range(1, len(columns)))) +
            '<p class="small">Mean [95% bootstrap CI] over seeds (n), each seed the mean over its folds. '
            f"{escape(gap_text)}</p>")


def mode_table(a: Analysis) -> str:
    """A GAN study's modes, HQ % and reverse KL per config (``gan_modes``), best first."""
    if not a.gan:
        return ""
    rows = [(label(row.label), f"{row.ok}" + (f" ({row.failed} failed)" if row.failed else ""),
             *(escape(cell(row.stats[key], digits)) for key, _, _, digits in MODE_METRICS))
            for row in rows_of_configs(a.configs)]
    return ("<h2>Mode coverage</h2>" +
            table(("regularizer", "seeds", *(name for _, name, *_ in MODE_METRICS)), rows, {1, 2, 3, 4}) +
            '<p class="small">Mean [95% bootstrap CI] over seeds, best first (most modes, then HQ %, then lowest '
            "reverse KL). Each regularizer is compared with its baseline on all three metrics above.</p>")


def failed(a: Analysis) -> str:
    if not a.failed:
        return ""
    rows = [(label(r.label), str(r.seed), "" if r.fold is None else str(r.fold), escape(r.reason or "unknown"),
             escape(r.run_dir or "")) for r in a.failed]
    return f"<h2>Failed trials ({len(rows)})</h2>" + table(("config", "seed", "fold", "reason", "run folder"), rows)


def pruned(a: Analysis) -> str:
    """One line: the configs that successive halving dropped, each with its rung epoch and seeds."""
    if not a.pruned:
        return ""
    by_label: dict[str, list] = {}
    for r in a.pruned:
        by_label.setdefault(r.label, []).append(r)
    items = [f"{label} (after epoch {rs[0].summary.get('epoch', '?')}, {len(rs)} run{'s' * (len(rs) > 1)})"
             for label, rs in by_label.items()]
    return (f"<h2>Pruned configs ({len(by_label)})</h2><p class=\"small\">Dropped by successive halving "
            f"(--prune halving) for their validation score at a rung; never chosen or compared: "
            f"{escape('; '.join(items))}.</p>")


def image(plot: Plot) -> str:
    data = base64.b64encode(plot.path.read_bytes()).decode("ascii")
    return (f'<figure><img src="data:image/png;base64,{data}" alt="{escape(plot.title)}">'
            f"<figcaption><b>{escape(plot.title)}.</b> {escape(plot.caption)}</figcaption></figure>")


def figures(plots: list[Plot]) -> str:
    return "<h2>Figures</h2>" + "".join(image(p) for p in plots) if plots else ""


def render(a: Analysis, plots: list[Plot]) -> str:
    """The whole page as one string."""
    title = escape(f"reglab report: {a.spec.get('name', '')}")
    body = "".join((header(a), unfinished(a), verdicts(a), mode_table(a), selection(a), comparisons(a),
                    configs(a), failed(a), pruned(a), figures(plots)))
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1"><style>{CSS}</style></head>'
            f"<body>{body}<p class=\"small\">Tables as CSV beside this file: configs.csv, selection.csv, "
            f"comparisons.csv, failed.csv; figures as PNG in plots/.</p></body></html>\n")
