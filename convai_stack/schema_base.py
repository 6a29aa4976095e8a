"""What every model of the stack schema shares: strict, frozen, each field documented by its
docstring (docs/reference.md is generated from them), and a pattern check that says what it wants.
"""

from __future__ import annotations

import re

from pydantic import AfterValidator, BaseModel, ConfigDict


class StrictModel(BaseModel):
    """A part of the stack schema: unknown keys refused, values frozen, docstrings read as docs."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


def matching(pattern: str, what: str) -> AfterValidator:
    """A validator refusing a string that is not all of `pattern`, saying it must be `what`."""
    compiled = re.compile(pattern)

    def check(value: str) -> str:
        if not compiled.fullmatch(value):
            raise ValueError(f"must be {what} (got {value!r})")
        return value

    return AfterValidator(check)
