"""The ``reglab`` command line.

A mistake the user can fix prints one line ``error: …`` on stderr and exits with code 2; so does a
full disk, a read-only or forbidden place or a damaged study database
(:func:`reglab.errors.environment_problem`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from typer.core import TyperCommand, TyperGroup
from typer.exceptions import Abort, Exit, TyperException
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from reglab.envvars import STORAGE_VARIABLE
from reglab.errors import UserError, environment_problem
from reglab.redact import redact



class BareFlags:
    """Help that shows an on/off flag (``--tensorboard``, ``--version``, ``--help``) bare, as it is
    typed, instead of with the ``<bool>`` of an option that takes a value."""

    def get_params(self, ctx):
        params = super().get_params(ctx)
        for param in params:
            if getattr(param, "is_bool_flag", False):
                param.metavar = ""
        return params


class Group(BareFlags, TyperGroup):
    pass


class Command(BareFlags, TyperCommand):
    pass


def examples(*lines: str) -> str:
    """A command's ``--help`` epilog: example command lines, one per paragraph (rich keeps them)."""
    return "Examples:\n\n" + "\n\n".join(lines)


app = typer.Typer(cls=Group, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  epilog=examples(
                      "reglab run mlp-l2 reg.l2=1e-3 seed=3",
                      "reglab sweep mlp-l2 --grid 'reg=none,l2' --grid 'reg.lam=1e-5:1e-1:log:5' --seeds 0-4",
                      "reglab report studies/<study name> --out report/"))
# Wide, uncoloured tables when the output goes to a file or a pipe.
console = Console(width=None if sys.stdout.isatty() else 200)

SHOWN_KEYS = ("status", "reason", "epochs_run", "best_epoch", "train_loss", "val_loss", "test_loss",
              "train_acc", "val_acc", "test_acc", "gap_acc", "gap_loss", "weight_l2", "zeros_total",
              "reference", "reference_max_abs_dw", "seconds")


def summary_cell(value) -> str:
    """A summary value for the table: short floats, one line per string of a list, no rich markup."""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return "\n".join(escape(v) for v in value)
    if isinstance(value, list):
        return "[" + ", ".join(summary_cell(v) for v in value) + "]"
    return escape(str(value))


def summary_table(summary: dict, title: str | None) -> Table:
    table = Table(title=title, show_header=False)
    for key in SHOWN_KEYS:
        if key in summary:
            table.add_row(key, summary_cell(summary[key]))
    for key, value in summary.items():
        if key.startswith(("penalty/", "robust", "clean", "modes", "hq", "fid", "reverse_kl")):
            table.add_row(key, summary_cell(value))
    return table


def show_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"reglab {version('reglab')}")
        raise typer.Exit()


@app.callback()
def options(version: bool = typer.Option(False, "--version", callback=show_version, is_eager=True,
                                         help="print reglab's version and exit")):
    """reglab: regularization for PyTorch, from one run to an honest choice of λ over seeds."""


@app.command(cls=Command, epilog=examples("reglab run mlp-l2 reg.l2=1e-3 seed=3",
                                          "reglab run my-config.yaml train.epochs=5 --out runs/"))
def run(
    recipe: str = typer.Argument(..., help="a built-in recipe name or a YAML file"),
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides, e.g. reg.l2=1e-3 seed=3"),
    out: Optional[Path] = typer.Option(None, help="root folder for run folders (default: the config's 'out')"),
):
    """Train one config and write its run folder."""
    from reglab.config import load_config
    from reglab.train import run as run_config

    config = load_config(recipe, overrides)
    result = run_config(config, root=out)
    console.print(summary_table(result.summary, f"{config.name} (seed {config.seed})"))
    if not result.ok:
        print(f"run failed: {result.summary.get('reason')}; results in {result.path}")
        raise typer.Exit(1)
    print(f"results in {result.path}")


@app.command(cls=Command, epilog=examples("reglab config mlp-l2 reg.l2=1e-3"))
def config(
    recipe: str = typer.Argument(..., help="a built-in recipe name or a YAML file"),
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides, e.g. reg.l2=1e-3"),
):
    """Print the resolved config as YAML, each key with its type, default and meaning."""
    from reglab.config import load_config
    from reglab.config_yaml import annotated_yaml

    sys.stdout.write(annotated_yaml(load_config(recipe, overrides)))


@app.command(cls=Command)
def recipes():
    """List the built-in recipes."""
    from reglab.config import RECIPE_DIR, read_yaml

    table = Table("recipe", "what it shows")
    for path in sorted(RECIPE_DIR.glob("*.yaml")):
        lines = str(read_yaml(path).get("description") or "").strip().splitlines()
        table.add_row(path.stem, lines[0] if lines else "")
    console.print(table)


@app.command(cls=Command)
def datasets():
    """List the datasets with their size and source."""
    from reglab.data import list_datasets

    table = Table("dataset", "kind", "examples", "shape", "offline", "source")
    for info in list_datasets():
        table.add_row(info.name, info.kind, "–" if info.n_examples is None else str(info.n_examples),
                      "–" if info.shape is None else str(info.shape),
                      "yes" if info.offline else "first use downloads", info.source)
    console.print(table)


@app.command(cls=Command, epilog=examples("reglab show runs/mlp-l2/<run folder>"))
def show(run_dir: Path = typer.Argument(..., help="a run folder")):
    """Show a run folder's summary."""
    from reglab.runs import read_run

    if (run_dir / "study.db").is_file() or (run_dir / "storage.json").is_file():
        raise UserError(f"'{run_dir}' is a study folder, not a run folder: see its results with "
                        f"'reglab report {run_dir}', or show one of its runs in {run_dir / 'runs'}")
    data = read_run(run_dir)
    print(run_dir)  # on a line of its own: a table title would wrap a long path mid-word
    console.print(summary_table(data["summary"], None))


@app.command(cls=Command, epilog=examples(
    "reglab sweep mlp-l2 --grid 'reg=none,l2,l1' --grid 'reg.lam=1e-5:1e-1:log:9' --seeds 0-9",
    "reglab sweep mlp-l2 reg.l2=1e-3 --grid 'optim.lr=1e-3,1e-2' --cv 5 --workers 2",
    "reglab sweep mlp-l2 reg=l2 --grid 'reg.lam=1e-6:1e-1:log:20' --search tpe --trials 20 --seeds 0-2"))
def sweep(
    recipe: str = typer.Argument(..., help="a built-in recipe name or a YAML file"),
    overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides for every run"),
    grid: Optional[list[str]] = typer.Option(None, "--grid", help="KEY=V,V,… or a range START:STOP:log|lin:COUNT, or reg.lam=auto:N (N λ from λ_max down); several make a product"),
    seeds: str = typer.Option("0", help="5 (one seed), 0-9 (a range) or 0,3,7 (a list)"),
    cv: Optional[int] = typer.Option(None, "--cv", help="K-fold cross-validation: the objective is the mean over K folds"),
    search: str = typer.Option("grid", help="grid (every point) or tpe (Bayesian, --trials points)"),
    trials: Optional[int] = typer.Option(None, help="number of points TPE tries"),
    storage: Optional[str] = typer.Option(None, help="database URL (default: SQLite in the study folder)"),
    workers: int = typer.Option(1, help="1: train here; N: N local worker processes; 0: none (reglab worker elsewhere)"),
    name: Optional[str] = typer.Option(None, help="study name (default: <recipe>-<hash of the command>)"),
    studies_dir: Path = typer.Option(Path("studies"), "--dir", help="folder of study folders"),
    batch: int = typer.Option(16, help="most runs trained at once when they can be vectorized"),
    heartbeat: Optional[int] = typer.Option(None, help="seconds between heartbeats (env REGLAB_HEARTBEAT, default 5)"),
    grace: Optional[int] = typer.Option(None, help="seconds without heartbeat before a trial is rerun (env REGLAB_GRACE, default 20)"),
    tensorboard: bool = typer.Option(False, "--tensorboard", help="every run also writes TensorBoard event files (train.tensorboard=true)"),
    max_runs: Optional[int] = typer.Option(None, help="refuse a study of more runs (points × seeds × folds) than this (default 10000)"),
    force_workers: bool = typer.Option(False, "--force-workers", help="start more than 4 workers per usable core"),
    prune: str = typer.Option("none", help="halving: successive halving drops the worst points at rungs (none: every point runs to the end)"),
    prune_eta: int = typer.Option(3, help="successive halving's η: each rung keeps the best 1/η of the points"),
    prune_min_epochs: int = typer.Option(1, help="no rung before this epoch"),
):
    """Run a grid (or TPE search) over overrides × seeds × folds as a resumable study."""
    from reglab.study.sweep import sweep as run_sweep

    overrides = [*(overrides or []), *(["train.tensorboard=true"] if tensorboard else [])]
    result = run_sweep(recipe, overrides, grid or [], seeds, cv, search, trials, storage, workers, name,
                       studies_dir, batch, heartbeat, grace, echo=lambda line: print(line, flush=True),
                       max_runs=max_runs, force_workers=force_workers, prune=prune, prune_eta=prune_eta,
                       prune_min_epochs=prune_min_epochs)
    if workers == 0:
        return
    print(f"next: reglab report {result.folder} --out report/")
    if not result.finished:
        raise typer.Exit(1)


@app.command(cls=Command, epilog=examples("reglab worker --storage postgresql://user@host/db --study NAME"))
def worker(
    study: str = typer.Option(..., help="the study's name"),
    storage: Optional[str] = typer.Option(None, envvar=STORAGE_VARIABLE, show_envvar=True,
                                          help="database URL (default: SQLite in the study folder)"),
    studies_dir: Path = typer.Option(Path("studies"), "--dir", help="folder of study folders (runs go there)"),
    batch: int = typer.Option(16, help="most runs trained at once when they can be vectorized"),
    heartbeat: Optional[int] = typer.Option(None, help="seconds between heartbeats (env REGLAB_HEARTBEAT, default 5)"),
    grace: Optional[int] = typer.Option(None, help="seconds without heartbeat before a trial is rerun (env REGLAB_GRACE, default 20)"),
):
    """Join a study (from this or another machine) and train its waiting trials."""
    from reglab.study.sweep import work

    work(study, storage, studies_dir, batch, heartbeat, grace, echo=lambda line: print(line, flush=True))


@app.command(cls=Command)
def studies(
    storage: Optional[str] = typer.Option(None, help="database URL (default: every studies/*/study.db)"),
    studies_dir: Path = typer.Option(Path("studies"), "--dir", help="folder of study folders"),
):
    """List studies and their progress."""
    from reglab.study.storage import shown_url
    from reglab.study.sweep import list_studies

    rows = list_studies(storage, studies_dir)
    if not rows:
        print(f"no studies in {shown_url(storage) if storage else studies_dir}")
        return
    columns = ("name", "recipe", "search", "done", "failed", "running", "waiting", "total", "unqueued", "pruned", "where")
    table = Table(*(c if c != "unqueued" else "not queued" for c in columns))
    for row in rows:
        table.add_row(*(escape(str(row[c])) for c in columns))
    console.print(table)


@app.command(cls=Command, epilog=examples("reglab report studies/<study name> --out report/",
                                          "reglab report runs/mlp-l2/"))
def report(
    targets: list[str] = typer.Argument(..., help="a study folder (studies/<name>), or run folders and folders of them"),
    out: Path = typer.Option(Path("report"), help="folder for index.html, plots/*.png and the CSV tables"),
    storage: Optional[str] = typer.Option(None, help="database URL; then TARGET is the study's name"),
):
    """Write the HTML report (plots, tables, verdicts) of a study or of run folders."""
    from reglab.report import build_report

    result = build_report(targets, out, storage)
    if not result.analysis.progress.complete:
        print(f"unfinished: {result.message}")
    print(result.index)


def main() -> None:
    try:
        code = app(standalone_mode=False)  # without standalone mode, typer returns Exit codes
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Exit as exc:
        sys.exit(exc.exit_code)
    except Abort:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except TyperException as exc:
        if exc.format_message():
            print(f"error: {exc.format_message()}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)
    except Exception as exc:
        problem = environment_problem(exc)
        if problem is None:
            raise
        print(f"error: {redact(problem)}", file=sys.stderr)
        sys.exit(2)
    if code == 130:  # typer turns Ctrl-C into Exit(130)
        print("error: interrupted", file=sys.stderr)
    if isinstance(code, int) and code:
        sys.exit(code)


if __name__ == "__main__":
    main()
