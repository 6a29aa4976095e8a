"""Validation errors in words a user can act on: each bad field, and what it must be.

One wording for every pydantic model here (Convai's requests and replies, a model's inputs, the
stack configuration), so the client, the provider's check, the emulator and the stack program
refuse the same mistake the same way.
"""

from __future__ import annotations

from pydantic import ValidationError

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


def field_problems(error: ValidationError) -> list[tuple[str, str]]:
    """(field, what it must be) for every bad field, in words a user can act on."""
    problems = []
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"])
        reason = _REASONS.get(item["type"])
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
