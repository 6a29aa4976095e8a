"""What a schema says of each field beyond its type: its doc, and what a change to it does.

The pydantic models are the one source of their fields: each field's doc is its attribute
docstring (read by pydantic with `use_attribute_docstrings`, so `FieldInfo.description` holds it),
and what a change does is `on_change(...)` metadata. The providers' diff and docs/reference.md both
read them from there.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field
from pydantic.fields import FieldInfo

ON_CHANGE = "on_change"
REPLACES = "replaces"
REQUIRED = "x-required"
"""Not JSON Schema's `required`, which is a list on the object, not a flag on a property."""


def on_change(how: str, *, replaces: bool = False) -> dict[str, Any]:
    """`Field(json_schema_extra=...)` of a field whose change is not a plain update in place."""
    return {ON_CHANGE: how, REPLACES: replaces}


def required_though_defaulted() -> dict[str, Any]:
    """`Field(json_schema_extra=...)` of a field with a default only so that its own validator
    says what is missing and how to find it: documented as required."""
    return {REQUIRED: True}


def _extra(field: FieldInfo) -> dict[str, Any]:
    extra = field.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def what_a_change_does(field: FieldInfo) -> str | None:
    """The field's `on_change` note; None: a change updates in place."""
    how = _extra(field).get(ON_CHANGE)
    return how if isinstance(how, str) else None


def replacing_fields(model: type[BaseModel]) -> tuple[str, ...]:
    """The fields of `model` whose change replaces what it declares, in declaration order."""
    return tuple(n for n, f in model.model_fields.items() if _extra(f).get(REPLACES) is True)


def is_required(field: FieldInfo) -> bool:
    return field.is_required() or _extra(field).get(REQUIRED) is True


def shared_field(model: type[BaseModel], name: str) -> Any:
    """The field `name` of `model`, for another model that declares the same input: its default,
    doc and change note are written once, in `model`. The type is written again in the other
    model (for type checkers), and tests tie the two."""
    field = model.model_fields[name]
    doc, extra = field.description, field.json_schema_extra
    if field.default_factory is not None:
        return Field(
            default_factory=field.default_factory, description=doc, json_schema_extra=extra
        )
    return Field(field.default, description=doc, json_schema_extra=extra)
