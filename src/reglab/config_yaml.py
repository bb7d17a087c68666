"""The resolved config as annotated YAML (``reglab config``): each key with its type, bounds,
default and meaning, read from the schema in :mod:`reglab.config`."""

from __future__ import annotations

from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import BaseModel

from reglab.config import Config, RegConfig, penalty_setting
from reglab.sections import OneOf


def type_text(annotation: Any) -> str:
    """A field's type as a reader writes it: ``int``, ``float or null``, ``one of a|b``, ``list of int``."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Annotated:
        return type_text(args[0])
    if origin is Literal:
        return "one of " + "|".join(str(a) for a in args)
    if origin in (UnionType, Union):
        return " or ".join("null" if a is type(None) else type_text(a) for a in args)
    if origin is list:
        return f"list of {type_text(args[0])}"
    if origin is tuple:
        return "[" + ", ".join(type_text(a) for a in args) + "]"
    return getattr(annotation, "__name__", str(annotation))


def bounds_text(metadata: list[Any]) -> str:
    """The constraints pydantic checks, e.g. ``> 0``, ``>= 0, < 1``."""
    signs = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
    return ", ".join(f"{sign} {getattr(m, name)}" for m in metadata for name, sign in signs.items()
                     if hasattr(m, name))


def annotated_yaml(config: Config) -> str:
    """The resolved config as YAML, each key followed by a comment with its type, its default and
    its meaning (the schema's field descriptions). The text is valid YAML that loads back to the
    same config."""
    width = 44

    def walk(node: BaseModel, indent: str) -> list[str]:
        lines = []
        for name, field in type(node).model_fields.items():
            value = getattr(node, name)
            if isinstance(value, BaseModel):
                lines.append(f"{indent}{flow(name)}:".ljust(width) + f"  # {field.description}")
                lines.extend(walk(value, indent + "  "))
                continue
            bounds = bounds_text(field.metadata)
            one_of = next((m for m in field.metadata if isinstance(m, OneOf)), None)
            kind = "one of " + "|".join(one_of.choices()) if one_of else type_text(field.annotation)
            kind += f" ({bounds})" if bounds else ""
            lines.append(f"{indent}{flow(name)}: {flow(value)}".ljust(width)
                         + f"  # {kind}; default {flow(field.default)}; {field.description}")
        if isinstance(node, RegConfig):  # the settings the penalty class declares
            for name, value in node.penalty_settings().items():
                setting = penalty_setting(name, node.penalty)
                lines.append(f"{indent}{flow(name)}: {flow(value)}".ljust(width)
                             + f"  # number (>= {setting.low:g}, <= {setting.high:g}); default "
                             f"{flow(setting.default)}; {setting.doc} (a setting of {node.penalty})")
        return lines

    return "\n".join(walk(config, "")) + "\n"


def flow(value: Any) -> str:
    """A key or value as one line of YAML (``on`` quoted, lists in brackets, newlines escaped)."""
    value = list(value) if isinstance(value, tuple) else value
    style = '"' if isinstance(value, str) and "\n" in value else None
    text = yaml.safe_dump(value, default_flow_style=True, default_style=style, width=float("inf"),
                          allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()
