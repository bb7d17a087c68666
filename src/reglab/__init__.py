"""reglab: regularization for PyTorch done right.

The core (penalties, selections, the regularizer) imports nothing else of reglab and can be used in
any training loop::

    import reglab as rl
    reg = rl.Regularizer(model, rl.L2(1e-4))              # weights only, coupled
    opt = reg.attach(torch.optim.Adam(model.parameters()))

The lab (runs, studies, reports) is there from Python too, imported on first use::

    run = rl.run("mlp-l2", "reg.l2=1e-3")
    study = rl.sweep("mlp-l2", grid={"reg.l2": "1e-5:1e-1:log:5"}, seeds="0-2")
"""

import os

# Idle OpenMP threads sleep instead of spinning: read once, when torch loads OpenMP (reglab.train.threads).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from reglab.errors import UserError  # noqa: E402
from reglab.conventions import from_keras, from_sklearn_alpha, keras_factors, sklearn_alpha, sklearn_params
from reglab.penalties import L1, L2, ElasticNet, GroupLasso, Penalty, penalty_from_name, register
from reglab.regularizer import Regularizer, Term, constant, warmup
from reglab.selection import (
    Selection,
    biases,
    embeddings,
    everything,
    modules,
    named,
    norms,
    selection_from_string,
    weights,
)

__version__ = "0.1.0"

LAB = ("run", "sweep", "Run", "Study")


def __getattr__(name: str):
    """``reglab.run``, ``reglab.sweep``: the lab's API (:mod:`reglab.api`), imported on first use
    so that the core stays light and free of the rest of reglab."""
    if name in LAB:
        from reglab import api

        return getattr(api, name)
    raise AttributeError(f"module 'reglab' has no attribute '{name}'")


def __dir__() -> list[str]:
    """The module's names with the lab's, which :func:`__getattr__` supplies on first use."""
    return sorted({*globals(), *LAB})


__all__ = [
    "UserError",
    "Penalty", "L1", "L2", "ElasticNet", "GroupLasso", "penalty_from_name", "register",
    "sklearn_alpha", "sklearn_params", "from_sklearn_alpha", "keras_factors", "from_keras",
    "Regularizer", "Term", "constant", "warmup",
    "Selection", "weights", "biases", "norms", "embeddings", "named", "modules", "everything",
    "selection_from_string",
    *LAB,
]  # fmt: skip
