"""Whether what Convai holds is what was declared: one rule for every comparison.

The provider's diff (state against the program), the settling of a register whose reply was lost,
`convai-models recover` (a pending create against Convai) and `convai-models audit` (the stack
file against Convai) all ask it. A field declared as None is left to Convai and matches whatever
Convai holds, so leaving out `display_name` never causes a perpetual diff.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from convai_provider.api.wire import OPENAI_BASE_URL, PrivateModel, RegisterRequest

LISTED_FIELDS = ("model_group_name", "model_name", "display_name", "base_url", "is_uncensored")
"""What `/llm-models/list` reports of a declaration: all of it but the api_key."""


@dataclass(frozen=True)
class Difference:
    field: str
    declared: Any
    held: Any

    def __str__(self) -> str:
        return f"{self.field}: declared {self.declared!r}, Convai has {self.held!r}"


def differences(
    held: Mapping[str, Any], declared: Mapping[str, Any], fields: Iterable[str] = LISTED_FIELDS
) -> list[Difference]:
    """The `fields` declared otherwise than held, in the order of `fields`. A value Pulumi does
    not know yet (a `pulumi.output.Unknown`, which equals only itself) differs from any held."""
    return [
        Difference(name, declared[name], held.get(name))
        for name in fields
        if declared.get(name) is not None and declared[name] != held.get(name)
    ]


def as_declared(declared: RegisterRequest | Mapping[str, Any]) -> dict[str, Any]:
    """A declaration's fields as Convai will hold them: it fills in the default base_url."""
    fields = declared.model_dump() if isinstance(declared, RegisterRequest) else dict(declared)
    return fields | {"base_url": fields.get("base_url") or OPENAI_BASE_URL}


def matches(live: PrivateModel, declared: RegisterRequest) -> bool:
    """Whether Convai holds `declared` (the api_key cannot be compared: it is never listed)."""
    return not differences(live.model_dump(), as_declared(declared))
