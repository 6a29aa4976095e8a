"""A resource's inputs as its provider's check() and diff() see them: known, or unknown until
apply (a value of a resource not yet created), and merged from an Args object and keywords."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pulumi.dynamic import CheckFailure, CheckResult
from pulumi.output import Unknown
from pydantic import BaseModel, ValidationError

from convai_provider.guards.redaction import redact
from convai_provider.guards.validation import field_problems

PROVIDER_KEY = "__provider"


def is_unknown(value: Any) -> bool:
    return isinstance(value, Unknown)


def differs(old: Any, new: Any) -> bool:
    """A value unknown at plan time may differ from anything."""
    return is_unknown(new) or old != new


def check_inputs(
    schema: type[BaseModel], news: Mapping[str, Any], computed: Iterable[str] = ()
) -> CheckResult:
    """Validate what is known, pass unknowns through, one failure per bad field. No network."""
    skipped = {PROVIDER_KEY, *computed}
    declared = {k: v for k, v in news.items() if k not in skipped}
    unknown = {k for k, v in declared.items() if is_unknown(v)}
    known = {k: v for k, v in declared.items() if k not in unknown and v is not None}
    try:
        checked = schema.model_validate(known).model_dump(exclude_none=True)
        failures = []
    except ValidationError as exc:
        checked = dict(known)
        failures = [
            CheckFailure(field, redact(f"{field} {reason}"))
            for field, reason in field_problems(exc)
            if field.split(".")[0] not in unknown
        ]
    checked.update({k: declared[k] for k in unknown})
    return CheckResult(checked, failures)


def merge_args(args: object | None, keywords: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments win over the Args object; unset ones are left for check() to default."""
    merged = dict(vars(args)) if args is not None else {}
    merged.update({k: v for k, v in keywords.items() if v is not None})
    return merged
