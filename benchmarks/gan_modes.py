"""GAN mode coverage per regularizer: modes, HQ % and reverse KL over seeds, and the L1 verdict.

Runs a 2-D GAN recipe once per (``gan.regularizer`` preset × seed), each in its own process with
one torch thread (with tiny MLPs, extra threads cost more than they give, badly so on shared cores),
writes the run folders under ``--out``, and prints per run its wall time and CPU time, then the
table of ``reglab.gan.modes`` (mean [95% bootstrap CI]) and the verdict sentences on L1.

    python benchmarks/gan_modes.py gan-grid --seeds 10
    python benchmarks/gan_modes.py gan-ring --seeds 10 --presets none l1 r1 --workers 2
    python benchmarks/gan_modes.py gan-grid --table-only   # the table of the runs already in --out

Use one --out per setting: the table groups runs by their regularizer only.

Published anchors on the 25-mode grid (2,500 samples, HQ within 3σ): PacGAN (Lin et al. 2018)
reports a plain GAN at 17.3 modes and reverse KL 0.70 and PacGAN at 24.8 modes and 0.04; VEEGAN
(Srivastava et al. 2017) 24.6 modes with 40% high-quality samples.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
from concurrent.futures import ProcessPoolExecutor

PRESETS = ("none", "l1", "l2", "gp", "r1", "sn")


def one_run(recipe: str, overrides: list[str], out: str) -> tuple[str, float, float, str]:
    import torch

    torch.set_num_threads(1)
    from reglab.config import load_config
    from reglab.train import run

    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    result = run(load_config(recipe, overrides), root=out, progress=False)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return " ".join(overrides), time.perf_counter() - started, cpu, result.summary["status"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", choices=("gan-grid", "gan-ring"))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--presets", nargs="*", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default="runs/bench-gan")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="more config overrides")
    parser.add_argument("--table-only", action="store_true", help="only print the table of --out")
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = "1"
    if not args.table_only:
        jobs = [[f"gan.regularizer={p}", f"seed={s}", *args.set] for s in range(args.seeds) for p in args.presets]
        print(f"{len(jobs)} runs of {args.recipe} on {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} cores, {args.workers} workers")  # fmt: skip
        with ProcessPoolExecutor(args.workers) as pool:
            futures = [pool.submit(one_run, args.recipe, job, args.out) for job in jobs]
            for future in futures:
                label, wall, cpu, status = future.result()
                print(f"  {label:40s} {status:6s} wall {wall:6.1f} s  cpu {cpu:6.1f} s")
    from reglab.gan.modes import l1_verdict, markdown_table, mode_rows, runs_from_folders

    runs = runs_from_folders([os.path.join(args.out, args.recipe)])
    print(markdown_table(mode_rows(runs)))
    for sentence in l1_verdict(runs):
        print("-", sentence)


if __name__ == "__main__":
    main()
