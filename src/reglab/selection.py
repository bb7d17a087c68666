"""Selections: which parameters of a model a penalty term touches.

The default rule, :func:`weights`, written by layer type::

    a parameter is penalized  ⇔  it is a weight matrix or kernel that a layer computes with:
        Linear, Bilinear, Conv*, ConvTranspose*       weight
        MultiheadAttention                             in_proj_weight, q_proj_weight, k_proj_weight,
                                                       v_proj_weight  (out_proj is a Linear)
        RNN, LSTM, GRU                                 weight_ih_l*, weight_hh_l*, weight_hr_l*
                                                       (every layer, ``_reverse`` included)
        RNNCell, LSTMCell, GRUCell                     weight_ih, weight_hh

so biases, normalization parameters (BatchNorm, LayerNorm, GroupNorm, InstanceNorm, RMSNorm) and
embeddings are never penalized unless asked for. This is not nanoGPT's rule, which decays every
tensor with ``dim() >= 2`` (embeddings included), nor timm's (every tensor but 1-D ones and
biases): an embedding is a lookup table, not a weight a layer computes with, and a dense penalty on
it shrinks the rows of rare tokens at every step although their data gradient is almost always 0.

Three more rules complete it:

* **Tied parameters.** A selection is a set of tensors. A tensor shared by several layers (an LM
  head tied to an ``nn.Embedding``) is selected when any of its layers selects it, so ``weights()``
  penalizes a tied head/embedding once; ``weights() - embeddings()`` leaves it alone.
  ``Regularizer.describe()`` lists a shared tensor once, with all its names and owners.
* **Reparametrized weights.** Under weight norm (``torch.nn.utils.parametrizations.weight_norm``
  or the old ``torch.nn.utils.weight_norm``) the effective weight is w = g·v/‖v‖: its size is g and
  it does not depend on the scale of v. The weight is therefore represented by g alone (``original0``
  / ``weight_g``): each slice of w has norm |g|, so L2 and group lasso on g equal L2 and group lasso
  on w exactly, and v is never penalized. Under spectral norm (either API) the effective weight
  W/σ(W) has no free scale; the weight is represented by the original W (``original`` /
  ``weight_orig``), whose zeros are the effective weight's zeros. Any other parametrization is
  represented by its original tensor(s).
* **Wrapper prefixes.** Names are those of the unwrapped model: ``torch.compile``'s ``_orig_mod.``,
  ``DataParallel``/``DistributedDataParallel``'s ``module.``, and FSDP's ``_fsdp_wrapped_module.``
  and ``_checkpoint_wrapped_module.`` are removed before a ``named()`` pattern is matched.

Selections combine like sets: ``a | b`` (union), ``a & b`` (intersection), ``a - b`` (difference).
``sel.resolve(model)`` returns ``[(name, parameter), ...]`` in ``model.named_parameters()`` order,
without duplicates. In config files the same is written as a string, see
:func:`selection_from_string`: ``"weights - head.*"``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import fnmatch
import re
from typing import Iterator

from torch import nn
from torch.nn.parallel import DataParallel, DistributedDataParallel
from torch.nn.utils.parametrizations import _WeightNorm
from torch.nn.utils.spectral_norm import SpectralNorm
from torch.nn.utils.weight_norm import WeightNorm

from reglab.errors import UserError, warn_user

__all__ = [
    "Selection",
    "WEIGHT_PARAMS",
    "NORM_LAYERS",
    "weights",
    "biases",
    "norms",
    "embeddings",
    "named",
    "modules",
    "everything",
    "selection_from_string",
    "named_parameters",
]

_CONV = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d,
    nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
)  # fmt: skip
# (layer types, globs of parameter names, or None for all of them)
Rule = tuple[tuple[type[nn.Module], ...], tuple[str, ...] | None]
# layer types → the names (globs) of the weights they compute with: the default rule
WEIGHT_PARAMS: tuple[Rule, ...] = (
    ((nn.Linear, nn.Bilinear) + _CONV, ("weight",)),
    ((nn.MultiheadAttention,), ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight")),
    ((nn.RNNBase,), ("weight_ih_l*", "weight_hh_l*", "weight_hr_l*")),
    ((nn.RNNCellBase,), ("weight_ih", "weight_hh")),
)
NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
    nn.LayerNorm, nn.GroupNorm,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())  # fmt: skip
EMBEDDING_LAYERS: tuple[type[nn.Module], ...] = (nn.Embedding, nn.EmbeddingBag)
# attributes through which a wrapper holds the wrapped model (torch.compile, FSDP, activation checkpointing)
_WRAPPER_ATTRS = ("_orig_mod", "_fsdp_wrapped_module", "_checkpoint_wrapped_module")


def _layer_params(module: nn.Module) -> Iterator[tuple[str, nn.Parameter]]:
    """``(name, tensor)`` for the parameters a layer owns itself, a reparametrized weight under the
    weight's own name through the tensor that represents it (see the module docstring)."""
    hooks = list(module._forward_pre_hooks.values())
    old_weight_norm = {h.name for h in hooks if isinstance(h, WeightNorm)}
    old_spectral_norm = {h.name for h in hooks if isinstance(h, SpectralNorm)}
    for local, p in module.named_parameters(recurse=False):
        base, _, suffix = local.rpartition("_")
        if base in old_weight_norm:
            if suffix == "g":
                yield base, p
        elif base in old_spectral_norm and suffix == "orig":
            yield base, p
        else:
            yield local, p
    parametrizations = getattr(module, "parametrizations", None)
    if isinstance(parametrizations, nn.ModuleDict):
        for attr, chain in parametrizations.items():
            weight_norm = any(isinstance(f, _WeightNorm) for f in chain)
            for local, p in chain.named_parameters(recurse=False):
                if not weight_norm or local == "original0":  # weight norm: g is original0
                    yield attr, p


def named_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter, nn.Module]]:
    """``(name, parameter, owning module)`` of every parameter, shared ones under each of their
    names, with wrapper prefixes removed (``_orig_mod.``, DDP's ``module.``, FSDP's)."""
    clean = {"": ""}  # a module's path in the model → its path in the unwrapped model
    out = []
    for path, module in model.named_modules(remove_duplicate=False):
        prefix = clean[path]
        for child_name in module._modules:  # every name, also a second name of the same child
            wrapped = child_name in _WRAPPER_ATTRS or (
                child_name == "module" and isinstance(module, (DataParallel, DistributedDataParallel))
            )
            clean[f"{path}.{child_name}" if path else child_name] = (
                prefix if wrapped else f"{prefix}.{child_name}" if prefix else child_name
            )
        for local, p in module.named_parameters(recurse=False):
            out.append((f"{prefix}.{local}" if prefix else local, p, module))
    return out


class Selection(ABC):
    """A rule that picks parameters of a model. Combine with ``|``, ``&`` and ``-``."""

    @abstractmethod
    def ids(self, model: nn.Module) -> set[int]:
        """``id()`` of every selected parameter."""

    def resolve(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        """The selected ``(name, parameter)`` pairs in ``model.named_parameters()`` order, each
        parameter once, under its first name without wrapper prefixes."""
        chosen = self.ids(model)
        seen: set[int] = set()
        out = []
        for n, p, _ in named_parameters(model):
            if id(p) in chosen and id(p) not in seen:
                seen.add(id(p))
                out.append((n, p))
        return out

    def __or__(self, other: Selection) -> Selection:
        return _Binary("|", self, _check(other))

    def __and__(self, other: Selection) -> Selection:
        return _Binary("&", self, _check(other))

    def __sub__(self, other: Selection) -> Selection:
        return _Binary("-", self, _check(other))

    @property
    def label(self) -> str:
        """The short form used in config strings and term names, e.g. ``weights - head.*``."""
        return repr(self)


def _check(other: object) -> Selection:
    if not isinstance(other, Selection):
        raise TypeError(f"cannot combine a selection with {type(other).__name__}")
    return other


class _ByModule(Selection):
    """By layer type: for each ``(types, names)`` rule, the parameters of layers of those types
    whose own name matches one of the globs ``names`` (all of their parameters when None)."""

    def __init__(self, rules: tuple[Rule, ...], text: str, label: str):
        self.rules, self._text, self._label = rules, text, label

    def ids(self, model):
        out: set[int] = set()
        for module in model.modules():
            for types, names in self.rules:
                if not isinstance(module, types):
                    continue
                if names is None:
                    out.update(id(p) for p in module.parameters())
                else:
                    params = _layer_params(module)
                    out.update(id(p) for n, p in params if any(fnmatch.fnmatchcase(n, g) for g in names))
        return out

    def __repr__(self):
        return self._text

    @property
    def label(self):
        return self._label


def _is_bias(name: str) -> bool:
    return name == "bias" or name.endswith("_bias") or name.startswith("bias_")


class _Biases(Selection):
    def ids(self, model):
        return {id(p) for m in model.modules() for n, p in _layer_params(m) if _is_bias(n)}

    def __repr__(self):
        return "biases()"

    @property
    def label(self):
        return "biases"


class _Everything(Selection):
    def ids(self, model):
        return {id(p) for p in model.parameters()}

    def __repr__(self):
        return "everything()"

    @property
    def label(self):
        return "all"


class _Named(Selection):
    def __init__(self, patterns: tuple[str, ...]):
        self.patterns = patterns

    def ids(self, model):
        names = [(n, p) for n, p, _ in named_parameters(model)]
        out: set[int] = set()
        for pattern in self.patterns:
            hits = {id(p) for n, p in names if fnmatch.fnmatchcase(n, pattern)}
            if not hits:
                example = ", ".join(n for n, _ in names[:3])
                warn_user(
                    f"named({pattern!r}) matches no parameter of the model (its names look like: {example})"
                )
            out |= hits
        return out

    def __repr__(self):
        return f"named({', '.join(repr(p) for p in self.patterns)})"

    @property
    def label(self):
        return " | ".join(self.patterns)


_PRECEDENCE = {"|": 1, "&": 2, "-": 3}  # Python's: binary minus binds tighter than & and |


class _Binary(Selection):
    def __init__(self, op: str, left: Selection, right: Selection):
        self.op, self.left, self.right = op, left, right

    def ids(self, model):
        a, b = self.left.ids(model), self.right.ids(model)
        return a | b if self.op == "|" else a & b if self.op == "&" else a - b

    def _render(self, show) -> str:
        prec = _PRECEDENCE[self.op]

        def side(s: Selection, right: bool) -> str:
            text = show(s)
            if isinstance(s, _Binary):
                p = _PRECEDENCE[s.op]
                if p < prec or (right and p == prec and self.op == "-"):
                    return f"({text})"
            elif isinstance(s, _Named) and len(s.patterns) > 1 and show is _label:
                return f"({text})"
            return text

        return f"{side(self.left, False)} {self.op} {side(self.right, True)}"

    def __repr__(self):
        return self._render(repr)

    @property
    def label(self):
        return self._render(_label)


def _label(s: Selection) -> str:
    return s.label


def weights() -> Selection:
    """Every weight matrix or kernel of a layer that computes with it (the default; the rule is in
    the module docstring): Linear/Bilinear/Conv/ConvTranspose ``weight``, MultiheadAttention
    ``in_proj_weight``/``q,k,v_proj_weight``, RNN/LSTM/GRU ``weight_ih_l*``/``weight_hh_l*``."""
    return _ByModule(WEIGHT_PARAMS, "weights()", "weights")


def biases() -> Selection:
    """Every bias: a parameter whose own name is ``bias``, ends in ``_bias`` (``in_proj_bias``) or
    starts with ``bias_`` (RNN ``bias_ih_l0``, ``bias_hh_l0``), of layers and norms alike."""
    return _Biases()


def norms() -> Selection:
    """All parameters of normalization layers (BatchNorm, LayerNorm, GroupNorm, InstanceNorm, RMSNorm)."""
    return _ByModule(((NORM_LAYERS, None),), "norms()", "norms")


def embeddings() -> Selection:
    """All parameters of ``nn.Embedding`` / ``nn.EmbeddingBag`` layers."""
    return _ByModule(((EMBEDDING_LAYERS, None),), "embeddings()", "embeddings")


def named(*patterns: str) -> Selection:
    """Parameters whose qualified name (as in ``named_parameters()``, wrapper prefixes removed)
    matches a glob, e.g. ``head.*``. A pattern that matches nothing is warned about (at the user's
    line); a term whose whole selection is empty, as a lone ``named()`` that matches nothing, is a
    :class:`UserError` of the :class:`~reglab.Regularizer`."""
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise UserError("named() needs one or more non-empty glob patterns, e.g. named('head.*')")
    return _Named(tuple(patterns))


def modules(*types: type[nn.Module], param: str | None = None) -> Selection:
    """All parameters of modules of these types, or only their ``param`` (e.g. ``"weight"``; a
    reparametrized weight counts as its representing tensor, see the module docstring)."""
    if not types or not all(isinstance(t, type) and issubclass(t, nn.Module) for t in types):
        raise UserError("modules() needs one or more nn.Module classes, e.g. modules(nn.Conv2d)")
    names = ", ".join(t.__name__ for t in types)
    text = f"modules({names}{'' if param is None else f', param={param!r}'})"
    label = " | ".join(f"type:{t.__name__}" for t in types)
    if param is not None:
        label = f"{label}.{param}" if len(types) == 1 else f"({label}).{param}"
    return _ByModule(((tuple(types), None if param is None else (param,)),), text, label)


def everything() -> Selection:
    """Every parameter of the model."""
    return _Everything()


# -- config strings ------------------------------------------------------------------------------

_KEYWORDS = {
    "weights": weights,
    "biases": biases,
    "norms": norms,
    "embeddings": embeddings,
    "all": everything,
    "everything": everything,
}
_TOKEN = re.compile(r"\s*(?:(?P<op>[|&()])|(?P<minus>-)(?=\s|\(|$)|(?P<word>[^\s|&()]+))")


def _word(word: str) -> Selection:
    if word in _KEYWORDS:
        return _KEYWORDS[word]()
    if word.startswith("type:"):
        name, _, param = word[5:].partition(".")
        cls = getattr(nn, name, None)
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise UserError(f"unknown layer type '{name}' in selection (a torch.nn class, e.g. Conv2d)")
        return modules(cls, param=param or None)
    return named(word)


def selection_from_string(text: str) -> Selection:
    """Parse a selection written in a config file.

    Words: ``weights``, ``biases``, ``norms``, ``embeddings``, ``all``/``everything``,
    ``type:Conv2d`` (all parameters of that torch.nn layer type; ``type:Conv2d.weight`` for one),
    and any other word is a glob on parameter names, e.g. ``fc*.weight`` or ``head.*``.
    Operators: ``|`` union, ``&`` intersection, ``-`` difference (with a space after it, so that
    ``-`` inside a name stays part of the name), and parentheses. ``-`` binds tighter than ``&``,
    which binds tighter than ``|``, as in Python.

    >>> selection_from_string("weights - head.*")
    weights() - named('head.*')
    """
    if not isinstance(text, str) or not text.strip():
        raise UserError("a selection must be a non-empty string, e.g. 'weights' or 'weights - head.*'")
    tokens: list[tuple[str, str]] = []
    pos = 0
    stripped = text.rstrip()
    while pos < len(stripped):
        m = _TOKEN.match(stripped, pos)
        if m is None or m.end() == pos:
            raise UserError(f"cannot read selection '{text}' at position {pos}")
        kind = "word" if m.group("word") else "op"
        tokens.append((kind, m.group("word") or m.group("op") or m.group("minus")))
        pos = m.end()

    def fail(msg: str):
        raise UserError(f"bad selection '{text}': {msg}")

    def parse(level: int, i: int) -> tuple[Selection, int]:
        ops = {1: "|", 2: "&", 3: "-"}
        if level == 4:
            if i >= len(tokens):
                fail("it ends where a name was expected")
            kind, tok = tokens[i]
            if tok == "(" and kind == "op":
                sel, i = parse(1, i + 1)
                if i >= len(tokens) or tokens[i] != ("op", ")"):
                    fail("missing ')'")
                return sel, i + 1
            if kind != "word":
                fail(f"unexpected '{tok}'")
            return _word(tok), i + 1
        left, i = parse(level + 1, i)
        while i < len(tokens) and tokens[i] == ("op", ops[level]):
            right, i = parse(level + 1, i + 1)
            left = _Binary(ops[level], left, right)
        return left, i

    sel, i = parse(1, 0)
    if i != len(tokens):
        fail(f"unexpected '{tokens[i][1]}'")
    return sel
