"""The engine: one loop over epochs for a stack of K ≥ 1 models, and the run folders it writes.

A single run is a stack of one through the same code as a sweep's group
(:mod:`reglab.train.engine`). Its modules, from the bottom up:

* :mod:`~reglab.train.experiment`: a run's prepared experiment (config, device, splits, task) and
  the numbers read off its model;
* :mod:`~reglab.train.tracker`: a run's state through its epochs (divergence, metrics lines,
  best epoch, LR schedule, early stopping) and the end of its run (summary, plots, weights, its
  :class:`~reglab.runs.Run` result);
* the two backends: :mod:`~reglab.train.stacked` (K models of one architecture on stacked
  parameters, with :mod:`~reglab.train.batched_net` and :mod:`~reglab.train.stacked_optim`) and
  :mod:`~reglab.train.module_stack` (K = 1 by the task's own step, for what cannot be stacked);
* :mod:`~reglab.train.engine`: the epoch loop, :func:`run`, :func:`run_or_fail`, :func:`fit`;
* :mod:`~reglab.train.batched`: which configs of a sweep train together, :func:`run_many`;
* :mod:`~reglab.train.threads`: never more compute threads than free cores.
"""

from reglab.train.engine import fit, run, run_or_fail
from reglab.train.experiment import Experiment, evaluate_splits, prepare, resolve_device, seed_everything, weight_stats
from reglab.runs import Run
from reglab.train.tracker import Diverged, Member, Tracker

__all__ = ["Diverged", "Experiment", "Member", "Run", "Tracker", "evaluate_splits", "fit", "prepare",
           "resolve_device", "seed_everything", "run", "run_or_fail", "weight_stats"]
