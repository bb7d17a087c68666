"""Bayesian search (``--search tpe --trials N``) with Optuna's TPE sampler.

The grids become a search space: a range ``START:STOP:log:COUNT`` becomes a float drawn on a log
scale between START and STOP, ``lin`` a float on a linear scale (COUNT is not used), and a list
of values a categorical choice. Each TPE trial trains its point on every seed (× fold) and
reports the mean validation objective. Workers stop asking for new points once N trials are
finished, running or queued.

The sampler is seeded with the number of trials the study holds when it asks (``constant_liar``
keeps several workers from proposing the same point), so one worker proposes the same sequence
of points every time.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from optuna.distributions import BaseDistribution

from reglab.errors import UserError
from reglab.study.grid import Range, parse_grid


def distributions(spec: dict[str, Any]) -> dict[str, BaseDistribution]:
    space: dict[str, BaseDistribution] = {}
    for grid in map(parse_grid, spec["grids"]):
        ranges = [t for t in grid.tokens if isinstance(t, Range)]
        if ranges and len(grid.tokens) > 1:
            raise UserError(f"--search tpe: --grid '{grid.text}' must be one range or a list of values, not both")
        if not ranges and any(isinstance(v, (list, dict)) for v in grid.values()):
            raise UserError(f"--search tpe: --grid '{grid.text}' holds lists; TPE chooses among scalars only")
        space[grid.key] = grid.distribution()
    if not space:
        raise UserError("--search tpe needs at least one --grid to search over")
    return space


def ask(study: optuna.Study, spec: dict[str, Any], n_existing: int) -> optuna.Trial:
    """A new RUNNING trial whose params TPE proposes."""
    study.sampler = optuna.samplers.TPESampler(seed=n_existing, constant_liar=True)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage")  # reglab records its own
        return study.ask(distributions(spec))
