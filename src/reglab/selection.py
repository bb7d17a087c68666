"""Selections: which parameters of a model a penalty term touches.

The default rule, :func:`weights`, is the one timm and nanoGPT use, written by layer type::

    a parameter is penalized  ⇔  it is the ``weight`` of a Linear, Bilinear, Conv or ConvTranspose layer

so biases, normalization parameters (BatchNorm, LayerNorm, GroupNorm, InstanceNorm, RMSNorm) and
embeddings are never penalized unless asked for. (A parametrized weight, e.g. under spectral norm,
is selected through its underlying ``original`` tensor.)

Selections combine like sets: ``a | b`` (union), ``a & b`` (intersection), ``a - b`` (difference).
``sel.resolve(model)`` returns ``[(name, parameter), ...]`` in ``model.named_parameters()`` order,
without duplicates. In config files the same is written as a string, see
:func:`selection_from_string`: ``"weights - head.*"``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import fnmatch
import re

from torch import nn

from reglab.errors import UserError

__all__ = [
    "Selection",
    "WEIGHT_LAYERS",
    "NORM_LAYERS",
    "weights",
    "biases",
    "norms",
    "embeddings",
    "named",
    "modules",
    "everything",
    "selection_from_string",
]

WEIGHT_LAYERS: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Bilinear,
    nn.Conv1d, nn.Conv2d, nn.Conv3d,
    nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
)  # fmt: skip
NORM_LAYERS: tuple[type[nn.Module], ...] = (
    nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d,
    nn.LayerNorm, nn.GroupNorm,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())  # fmt: skip
EMBEDDING_LAYERS: tuple[type[nn.Module], ...] = (nn.Embedding, nn.EmbeddingBag)


def _own(module: nn.Module, attr: str):
    """The parameters behind ``module.<attr>``: the plain one, or the originals of a parametrization."""
    for local, p in module.named_parameters(recurse=True):
        if local in (attr, f"{attr}_orig") or local.startswith(f"parametrizations.{attr}.original"):
            yield p


class Selection(ABC):
    """A rule that picks parameters of a model. Combine with ``|``, ``&`` and ``-``."""

    @abstractmethod
    def ids(self, model: nn.Module) -> set[int]:
        """``id()`` of every selected parameter."""

    def resolve(self, model: nn.Module) -> list[tuple[str, nn.Parameter]]:
        """The selected ``(name, parameter)`` pairs in ``model.named_parameters()`` order."""
        chosen = self.ids(model)
        return [(n, p) for n, p in model.named_parameters() if id(p) in chosen]

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
    """Parameters ``attr`` (or all of them when ``attr`` is None) of modules of given types."""

    def __init__(self, types: tuple[type[nn.Module], ...], attr: str | None, text: str, label: str):
        self.types, self.attr, self._text, self._label = types, attr, text, label

    def ids(self, model):
        out: set[int] = set()
        for module in model.modules():
            if isinstance(module, self.types):
                params = module.parameters() if self.attr is None else _own(module, self.attr)
                out.update(id(p) for p in params)
        return out

    def __repr__(self):
        return self._text

    @property
    def label(self):
        return self._label


class _Biases(Selection):
    def ids(self, model):
        return {id(p) for n, p in model.named_parameters(remove_duplicate=False) if n.endswith("bias")}

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
        return {
            id(p)
            for n, p in model.named_parameters(remove_duplicate=False)
            if any(fnmatch.fnmatchcase(n, pat) for pat in self.patterns)
        }

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
    """The ``weight`` of Linear, Bilinear, Conv and ConvTranspose layers (the default)."""
    return _ByModule(WEIGHT_LAYERS, "weight", "weights()", "weights")


def biases() -> Selection:
    """Every parameter whose own name ends in ``bias`` (layers' and norms' biases)."""
    return _Biases()


def norms() -> Selection:
    """All parameters of normalization layers (BatchNorm, LayerNorm, GroupNorm, InstanceNorm, RMSNorm)."""
    return _ByModule(NORM_LAYERS, None, "norms()", "norms")


def embeddings() -> Selection:
    """All parameters of ``nn.Embedding`` / ``nn.EmbeddingBag`` layers."""
    return _ByModule(EMBEDDING_LAYERS, None, "embeddings()", "embeddings")


def named(*patterns: str) -> Selection:
    """Parameters whose qualified name (as in ``named_parameters()``) matches a glob, e.g. ``head.*``."""
    if not patterns or not all(isinstance(p, str) and p for p in patterns):
        raise UserError("named() needs one or more non-empty glob patterns, e.g. named('head.*')")
    return _Named(tuple(patterns))


def modules(*types: type[nn.Module], param: str | None = None) -> Selection:
    """All parameters of modules of these types, or only their ``param`` (e.g. ``"weight"``)."""
    if not types or not all(isinstance(t, type) and issubclass(t, nn.Module) for t in types):
        raise UserError("modules() needs one or more nn.Module classes, e.g. modules(nn.Conv2d)")
    names = ", ".join(t.__name__ for t in types)
    text = f"modules({names}{'' if param is None else f', param={param!r}'})"
    label = " | ".join(f"type:{t.__name__}" for t in types)
    if param is not None:
        label = f"{label}.{param}" if len(types) == 1 else f"({label}).{param}"
    return _ByModule(tuple(types), param, text, label)


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
