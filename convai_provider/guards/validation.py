"""Validation errors in words a user can act on: each bad field, and what it must be.

One wording for every pydantic model here (Convai's requests and replies, a model's inputs, the
stack configuration), so the client, the provider's check, the emulator and the stack program
refuse the same mistake the same way.
"""

from __future__ import annotations

import difflib
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

_REASONS = {
    "missing": "is required",
    "string_too_short": "must not be empty",
    "bool_type": "must be a boolean (true or false)",
    "bool_parsing": "must be a boolean (true or false)",
    "string_type": "must be a string",
    "extra_forbidden": "is not a known field; remove it or check its spelling",
    "list_type": "must be a list",
    "dict_type": "must be a mapping of fields",
    "model_type": "must be a mapping of fields",
    "model_attributes_type": "must be a mapping of fields",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
}


_BOUNDS = {
    "greater_than_equal": ("ge", "must be at least {}"),
    "greater_than": ("gt", "must be greater than {}"),
    "less_than_equal": ("le", "must be at most {}"),
    "union_tag_invalid": ("expected_tags", "kind must be one of {}"),
    "union_tag_not_found": ("discriminator", "needs a {} field"),
    "literal_error": ("expected", "must be {}"),
}


def field_problems(
    error: ValidationError, model: type[BaseModel] | None = None
) -> list[tuple[str, str]]:
    """(field, what it must be) for every bad field, in words a user can act on. Given the
    validated `model`, a field it does not know is told the nearest field its models have."""
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"])
        reason = _REASONS.get(item["type"])
        if item["type"] == "extra_forbidden" and item["loc"] and model is not None:
            *within, name = item["loc"]
            close = difflib.get_close_matches(str(name), field_names(model, tuple(within)), n=1)
            if close:
                reason = f"is not a known field: did you mean {close[0]}?"
        if reason is None and item["type"] in _BOUNDS:
            key, template = _BOUNDS[item["type"]]
            reason = template.format((item.get("ctx") or {}).get(key, "?"))
        if reason is None:
            reason = str(item["msg"]).removeprefix("Value error, ")
        problems.append((field, reason))
    return problems


def describe_validation_error(error: ValidationError) -> str:
    """One sentence naming every bad field of a request and what it must be."""
    sentences = []
    for field, reason in field_problems(error):
        if not field:
            sentences.append(f"The request body {reason}")
        elif reason == "is required":
            sentences.append(f"Missing required field: {field}")
        else:
            sentences.append(f"Field {field} {reason}")
    return "; ".join(sentences)


def field_names(model: type[BaseModel], loc: tuple[int | str, ...]) -> set[str]:
    """The fields of the model(s) found at `loc` within `model` (a list index steps into the
    list; a name that is no field, such as a union's tag, stays with the union's members)."""
    current = _models_within({model})
    for part in loc:
        if isinstance(part, int):
            continue
        inner = {
            info.annotation
            for kind in current
            for name, info in kind.model_fields.items()
            if part in (name, info.alias)
        }
        if inner:
            current = _models_within(inner)
    return {info.alias or name for kind in current for name, info in kind.model_fields.items()}


def _models_within(kinds: set[Any]) -> set[type[BaseModel]]:
    """The pydantic models `kinds` are or hold (through lists, unions, optionals, Annotated),
    without entering a model's own fields."""
    found: set[type[BaseModel]] = set()
    pending = list(kinds)
    while pending:
        kind = pending.pop()
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            found.add(kind)
        else:
            pending.extend(typing.get_args(kind))
    return found
