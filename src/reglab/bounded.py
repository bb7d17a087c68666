"""Every YAML and JSON text reglab reads goes through here, with bounded size, depth and expansion.

* YAML (recipes, ``config.yaml`` of a run folder, an override's value, a study's stored recipe):
  at most :data:`MAX_YAML_BYTES`, nested at most :data:`MAX_DEPTH` levels, and at most
  :data:`MAX_YAML_VALUES` values once every alias is expanded (a "billion laughs" document of a
  few hundred bytes expands to 10⁹ values); an alias to a node that holds it is refused too.
* JSON (``summary.json``, ``metrics.jsonl``, ``storage.json``): at most :data:`MAX_JSON_BYTES`
  per file and nested at most :data:`MAX_DEPTH` levels.

The depth is measured before anything recursive runs (PyYAML's composer and Python's ``json``
recurse once per level), so a document nested 100,000 deep is refused, never a ``RecursionError``.
Each refusal is a :class:`UserError` that names the file (or the value) and the limit.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from reglab.errors import UserError

MAX_YAML_BYTES = 1 << 20  # 1 MiB: a recipe is a few hundred bytes
MAX_JSON_BYTES = 64 << 20  # 64 MiB: metrics.jsonl of a long run is a few MiB
MAX_DEPTH = 64  # levels of nested mappings and lists
MAX_YAML_VALUES = 100_000  # values of a YAML document with its aliases expanded

OPENING = (yaml.MappingStartEvent, yaml.SequenceStartEvent)
CLOSING = (yaml.MappingEndEvent, yaml.SequenceEndEvent)
JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def limit_text(n: int) -> str:
    """A read limit as it is written: ``1 MiB``, ``64 MiB``, ``512 bytes``."""
    return f"{n >> 20} MiB" if n >= 1 << 20 and n % (1 << 20) == 0 else f"{n} bytes"


def read_bounded(path: Path, limit: int, what: str) -> str:
    """The UTF-8 text of ``path``, refused when it is larger than ``limit`` bytes or not UTF-8;
    ``what`` says what the file is in the message (e.g. ``damaged``, ``not a YAML text file``)."""
    try:
        size = os.stat(path).st_size
        if size > limit:
            raise UserError(f"{path} is too large ({size} bytes; reglab reads at most {limit_text(limit)})")
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise UserError(f"{path} is too large (more than {limit_text(limit)})")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise UserError(f"{path} is {what} (it is not UTF-8 text)") from None


def load_yaml(text: str, where: str) -> Any:
    """``yaml.safe_load(text)`` within the bounds; ``where`` names the text in a refusal. A YAML
    syntax error stays a ``yaml.YAMLError`` for the caller to word."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_YAML_BYTES:
        raise UserError(f"{where} is too large (reglab reads at most {limit_text(MAX_YAML_BYTES)} of YAML)")
    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):
        if isinstance(event, OPENING):
            depth += 1
            if depth > MAX_DEPTH:
                raise UserError(f"{where} is nested deeper than {MAX_DEPTH} levels")
        elif isinstance(event, CLOSING):
            depth -= 1
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if expanded_size(node, {}, set()) > MAX_YAML_VALUES:
            raise UserError(f"{where} expands to more than {MAX_YAML_VALUES} values through its aliases")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def expanded_size(node: yaml.Node, sizes: dict[int, int], open_nodes: set[int]) -> int:
    """How many values ``node`` stands for with every alias written out (memoized by node, so a
    shared node is counted without being walked again); a node that holds itself is refused."""
    key = id(node)
    if key in sizes:
        return sizes[key]
    if key in open_nodes:
        raise UserError("a YAML alias refers to a node that holds it (a recursive document)")
    open_nodes.add(key)
    total = 1
    if isinstance(node, yaml.SequenceNode):
        children = node.value
    elif isinstance(node, yaml.MappingNode):
        children = [part for pair in node.value for part in pair]
    else:
        children = []
    for child in children:
        total += expanded_size(child, sizes, open_nodes)
        if total > MAX_YAML_VALUES:
            break
    open_nodes.discard(key)
    sizes[key] = total
    return total


def json_depth(text: str) -> int:
    """The deepest nesting of ``[`` and ``{`` in a JSON text, strings left out."""
    data = JSON_STRING.sub(b'""', text.encode("utf-8", "surrogatepass"))
    codes = np.frombuffer(data, dtype=np.uint8)
    steps = np.isin(codes, (ord("["), ord("{"))).astype(np.int64) - np.isin(codes, (ord("]"), ord("}")))
    return int(np.cumsum(steps).max(initial=0))


def check_json_depth(text: str, where: str) -> None:
    """Refuse a JSON text (or JSON lines) nested deeper than :data:`MAX_DEPTH`."""
    if json_depth(text) > MAX_DEPTH:
        raise UserError(f"{where} is damaged (nested deeper than {MAX_DEPTH} levels)")


def load_json(text: str, where: str) -> Any:
    """``json.loads(text)`` within the depth bound; a syntax error stays a
    ``json.JSONDecodeError`` for the caller to word."""
    check_json_depth(text, where)
    return json.loads(text)
