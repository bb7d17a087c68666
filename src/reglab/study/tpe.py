"""Bayesian search (``--search tpe --trials N``) with Optuna's TPE sampler.

The grids become a search space: a range ``START:STOP:log:COUNT`` becomes a float drawn on a log
scale between START and STOP, ``lin`` a float on a linear scale (COUNT is not used), and a list
of values a categorical choice. Each TPE trial trains its point on every seed (× fold) and
reports the mean validation objective. The study holds N waiting trials from its creation; a
worker claims one and :func:`propose` fills in its point, so exactly N trials run however many
workers start at once.

The sampler is seeded with the trial's number (``constant_liar`` keeps several workers from
proposing the same point), so one worker proposes the same sequence of points every time.
"""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution

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


def propose(study: optuna.Study, spec: dict[str, Any], trial_id: int, number: int) -> dict[str, Any]:
    """Set the params of the claimed trial ``trial_id`` (number ``number``) to the point TPE
    proposes, and return them."""
    study.sampler = optuna.samplers.TPESampler(seed=number, constant_liar=True)
    trial = optuna.trial.Trial(study, trial_id)
    return {name: trial.suggest_categorical(name, dist.choices) if isinstance(dist, CategoricalDistribution)
            else trial.suggest_float(name, dist.low, dist.high, log=dist.log)
            for name, dist in distributions(spec).items()}
