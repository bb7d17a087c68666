"""The report: plots, tables and verdicts in one self-contained HTML page, plus PNG and CSV.

::

    from reglab.report import build_report
    result = build_report(["studies/mlp-l2"], out="report")    # or run folders
    print(result.index, result.message)

λ is chosen on validation (the CV mean with folds), never on test: λ_min and λ_1se (one-SE rule).
The unit of analysis is the seed (folds are averaged within a seed). Per config: mean and 95%
bootstrap CI over seeds (CIs and P(improvement) from 5 seeds on). Each family's λ_min config is
compared with the same config with its regularizer off (other differences are named) on the same
seeds: mean difference with its CI, P(improvement), Wilcoxon signed-rank p with Holm's correction
over all comparisons, and one verdict sentence. A λ_min or λ_1se at an end of its grid is warned of, with the range to try next;
a recipe's published figure is quoted only for the config equal to the recipe's own. A GAN study
adds its mode table (modes, HQ %, reverse KL); an adversarial study shows clean accuracy beside
robust accuracy and plots accuracy against ε.
"""

from reglab.report.analysis import Analysis, analyse
from reglab.report.build import ReportResult, build_report, load_records, write_report
from reglab.report.runs import records_from_runs

__all__ = ["Analysis", "ReportResult", "analyse", "build_report", "load_records", "records_from_runs",
           "write_report"]
