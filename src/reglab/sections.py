"""The base of every config section (:class:`Section`) and the field types sections share.

Each domain keeps its section beside its code (``reglab.adversarial.config``, ``reglab.gan.config``);
:mod:`reglab.config` assembles them into one :class:`~reglab.config.Config`.
"""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Width = Annotated[int, Field(ge=1)]  # a layer's units or channels
Beta = Annotated[float, Field(ge=0, lt=1)]  # Adam's moment decay


class Section(BaseModel):
    """A config section: unknown keys are rejected, assignments are validated, and every float
    must be finite (NaN and infinity are refused)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True,
                              allow_inf_nan=False)
