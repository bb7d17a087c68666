"""The shorthands of config overrides (and grids), rewritten into plain dotted assignments, and
configs of an older reglab read in today's form.

* ``reg=l2`` sets ``reg.penalty=l2``;
* ``reg.l2=1e-3`` sets ``reg.penalty=l2`` and ``reg.lam=1e-3`` (likewise ``l1``, ``elastic``,
  ``group`` and every registered penalty);
* ``reg=dropout`` means no weight penalty and ``model.dropout=p`` (dropout as the regularizer
  under study), where p is the override list's ``reg.dropout=p`` (0.2 without one; ``reg.dropout``
  sets nothing by itself, so a grid over it leaves the penalized points alone); ``reg=none``
  means no weight penalty and nothing else: the model's own ``model.dropout`` stays as it is (set
  ``model.dropout=0`` for no dropout either);
* ``adv.method=pgd`` sets ``adv.attack`` and ``adv.objective`` as the pair the method names
  (``reglab.adversarial.config.METHODS``: ``weighted`` is the pgd attack with the weighted objective).

Dropout is a model setting (``model.dropout``), not a value of ``reg.penalty``. A config written
by an older reglab (``reg.penalty: dropout`` with its rate in ``reg.dropout``) is read in today's
form (:func:`upgraded`), as is one that names ``adv.method``.
"""

from __future__ import annotations

from typing import Any

from reglab.adversarial.config import METHODS
from reglab.errors import UserError
from reglab.penalties import penalty_names

DROPOUT_RATE = 0.2
"""The dropout rate that ``reg=dropout`` means without ``reg.dropout=p``."""


def shorthand_keys() -> tuple[str, ...]:
    """``reg``, ``reg.dropout``, ``reg.NAME`` for each registered penalty and ``adv.method``: the keys
    :func:`plain_overrides` rewrites."""
    return ("reg", "reg.dropout", *(f"reg.{name}" for name in penalty_names()), "adv.method")


def plain_overrides(overrides: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    """The overrides with their shorthands rewritten into plain dotted assignments, in order:
    ``reg=l2`` → ``reg.penalty=l2``; ``reg.l2=λ`` → ``reg.penalty=l2``, ``reg.lam=λ``;
    ``reg=dropout`` (or ``reg.penalty=dropout``) → ``reg.penalty=none``, ``model.dropout=p`` with p
    the list's last ``reg.dropout=p`` (else :data:`DROPOUT_RATE`); ``reg.dropout`` itself sets nothing;
    ``adv.method=NAME`` → ``adv.attack``, ``adv.objective`` (:func:`method_pair`)."""
    rates = [value for key, value in overrides if key == "reg.dropout"]
    rate = rates[-1] if rates else DROPOUT_RATE
    plain: list[tuple[str, Any]] = []
    for key, value in overrides:
        head, _, tail = key.partition(".")
        if key in ("reg", "reg.penalty") and str(value).lower() == "dropout":
            plain += [("reg.penalty", "none"), ("model.dropout", rate)]
        elif key == "reg":
            plain.append(("reg.penalty", str(value).lower()))
        elif head == "reg" and tail in penalty_names():
            plain += [("reg.penalty", tail), ("reg.lam", value)]
        elif key == "adv.method":
            attack, objective = method_pair(value)
            plain += [("adv.attack", attack), ("adv.objective", objective)]
        elif key != "reg.dropout":
            plain.append((key, value))
    return plain


def method_pair(method: Any) -> tuple[str, str]:
    """``(attack, objective)`` of ``adv.method=METHOD``; an unknown method is a :class:`UserError`."""
    if method not in METHODS:
        raise UserError(f"adv.method={method!r} is not a method; choose one of {', '.join(METHODS)} "
                        "(or set adv.attack and adv.objective)")
    return METHODS[method]


def check_rate_applies(overrides: list[tuple[str, Any]]) -> None:
    """A single run's ``reg.dropout=p`` without ``reg=dropout`` would set nothing: refuse it. (In a
    grid it is the rate of the grid's dropout points, and does nothing on the others, by design.)"""
    dropout = any(k in ("reg", "reg.penalty") and str(v).lower() == "dropout" for k, v in overrides)
    if not dropout and any(k == "reg.dropout" for k, _ in overrides):
        raise UserError("reg.dropout is the rate of reg=dropout and sets nothing without it; "
                        "write model.dropout=p, or reg=dropout reg.dropout=p")


def upgraded(tree: dict[str, Any]) -> dict[str, Any]:
    """A config tree as an older reglab wrote it, in today's form. Its ``reg.penalty: dropout`` was
    dropout as the regularizer under study, at the rate in ``reg.dropout``: today that is
    ``reg.penalty: none`` with ``model.dropout`` at that rate. Every older config held
    ``reg.dropout`` (it was ignored unless the penalty was dropout); it is dropped. Its
    ``adv.method`` is today's ``adv.attack`` and ``adv.objective`` (:func:`method_pair`)."""
    adv = tree.get("adv")
    if isinstance(adv, dict) and "method" in adv:
        adv = dict(adv)
        adv["attack"], adv["objective"] = method_pair(adv.pop("method"))
        tree = {**tree, "adv": adv}
    reg = tree.get("reg")
    if not isinstance(reg, dict) or ("dropout" not in reg and reg.get("penalty") != "dropout"):
        return tree
    reg = dict(reg)
    rate = reg.pop("dropout", DROPOUT_RATE)
    tree = {**tree, "reg": reg}
    if reg.get("penalty") == "dropout":
        reg["penalty"] = "none"
        model = tree.get("model")
        tree["model"] = {**(model if isinstance(model, dict) else {}), "dropout": rate}
    return tree
