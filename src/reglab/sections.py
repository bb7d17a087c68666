"""The base of every config section (:class:`Section`) and the field types sections share.

Each domain keeps its section beside its code (``reglab.adversarial.config``, ``reglab.gan.config``);
:mod:`reglab.config` assembles them into one :class:`~reglab.config.Config`.
"""

from dataclasses import dataclass
from typing import Annotated, Any, Callable, Literal, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError, core_schema

STACKED = "stacked"
"""The schema's mark of what the stacked backend (``reglab.train.stacked``) implements: a section's
``model_config`` or a field's ``json_schema_extra`` holds ``{"stacked": True}`` (or ``False``). A
field's own mark wins over its section's; a key marked nowhere is not implemented there, so a
config that sets it away from its default trains by the task's own step (``reglab.config.stacked_keys``)."""


def stacked(implemented: bool = True) -> dict[str, bool]:
    """The mark :data:`STACKED`, for a section's ``ConfigDict(json_schema_extra=…)`` or a ``Field``'s."""
    return {STACKED: implemented}


Width = Annotated[int, Field(ge=1)]  # a layer's units or channels
Beta = Annotated[float, Field(ge=0, lt=1)]  # Adam's moment decay


@dataclass(frozen=True)
class OneOf:
    """``Annotated[str, OneOf(choices)]``: a string that must be one of ``choices()``, read when a
    value is checked, so that the choices can grow after import (registered penalties)."""

    choices: Callable[[], tuple[str, ...]]

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> core_schema.CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def check(self, value: str) -> str:
        choices = self.choices()
        if value not in choices:
            listed = ", ".join(f"'{c}'" for c in choices[:-1]) + f" or '{choices[-1]}'"
            raise PydanticCustomError("literal_error", "Input should be {choices}", {"choices": listed})
        return value


def mentions(annotation: Any, kinds: tuple[type, ...]) -> bool:
    """Whether a field's type names one of ``kinds`` anywhere (``int``, ``list[Width]``,
    ``float | None``…); ``Any`` names them all."""
    if annotation is Any or annotation in kinds:
        return True
    if get_origin(annotation) is Literal:
        return any(type(a) in kinds for a in get_args(annotation))
    return any(mentions(a, kinds) for a in get_args(annotation) if not isinstance(a, FieldInfo))


class Section(BaseModel):
    """A config section: unknown keys are rejected, assignments are validated, every float must be
    finite (NaN and infinity are refused), and ``true``/``false`` are refused where a number is
    expected (pydantic would read them as 1 and 0: ``train.epochs=true`` would train one epoch)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True,
                              allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_a_number(cls, value: Any, info: ValidationInfo) -> Any:
        items = value if isinstance(value, (list, tuple)) else [value]
        annotation = cls.model_fields[info.field_name].annotation
        if (any(isinstance(v, bool) for v in items) and mentions(annotation, (int, float))
                and not mentions(annotation, (bool,))):
            raise PydanticCustomError("bool_type", "a number is expected here, not true or false")
        return value
