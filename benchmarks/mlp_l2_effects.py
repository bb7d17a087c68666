"""The effect of L2 at fixed dropout, and of dropout at fixed L2, in an mlp-l2 study.

Reads a finished study of the grid ``reg=none,l2`` × ``reg.lam`` × ``model.dropout=0,0.2`` and
prints, on test accuracy, paired by seed (the unit of analysis): the mean difference in points
with its 95% bootstrap CI and the two-sided Wilcoxon p (unadjusted), for

* L2 at each λ against no penalty, with the dropout rate held fixed (0 and 0.2);
* dropout 0.2 against no dropout, with the penalty held fixed (none and each λ);
* for reference, the confounded comparison an earlier report made: L2 with dropout 0.2 against
  ``none`` without dropout.

    reglab sweep mlp-l2 --grid 'reg=none,l2' --grid 'reg.lam=1e-5,1e-4,1e-3' \\
        --grid 'model.dropout=0,0.2' --seeds 0-9 --name mlp-l2-dropout
    python benchmarks/mlp_l2_effects.py studies/mlp-l2-dropout
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from reglab.stats import paired_comparison
from reglab.study.records import load_study


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", help="the study folder")
    args = parser.parse_args()
    spec, records = load_study(args.study)
    acc: dict[tuple[float, float], dict[int, float]] = defaultdict(dict)  # (λ, dropout) → seed → test acc
    for r in records:
        if r.status == "ok":
            lam = 0.0 if r.lam is None else r.lam
            acc[(lam, float(r.point.get("model.dropout", 0.0)))][r.seed] = r.summary["test_acc"]
    lams = sorted({lam for lam, _ in acc})

    def line(name: str, a: dict[int, float], b: dict[int, float]) -> None:
        seeds = sorted(set(a) & set(b))
        c = paired_comparison([a[s] for s in seeds], [b[s] for s in seeds])
        print(f"| {name} | {len(seeds)} | {100 * c.mean_diff:+.2f} [{100 * c.low:+.2f}, {100 * c.high:+.2f}] "
              f"| {c.p_value:.3g} |")

    print("| comparison (test accuracy, points) | seeds | mean difference [95% CI] | Wilcoxon p |")
    print("|---|---|---|---|")
    for dropout in (0.0, 0.2):
        for lam in lams[1:]:
            line(f"L2 λ={lam:g} vs none, both at dropout {dropout:g}", acc[(lam, dropout)], acc[(0.0, dropout)])
    for lam in lams:
        penalty = "no penalty" if lam == 0 else f"L2 λ={lam:g}"
        line(f"dropout 0.2 vs 0, both with {penalty}", acc[(lam, 0.2)], acc[(lam, 0.0)])
    for lam in lams[1:]:
        line(f"confounded: L2 λ={lam:g} + dropout 0.2 vs none without dropout", acc[(lam, 0.2)], acc[(0.0, 0.0)])
    for key, values in sorted(acc.items()):
        mean = 100 * sum(values.values()) / len(values)
        print(f"λ={key[0]:g} dropout={key[1]:g}: mean test accuracy {mean:.2f}% over {len(values)} seeds")


if __name__ == "__main__":
    main()
