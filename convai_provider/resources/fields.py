"""Field types and defaults of the resources' inputs, checked at plan time: names, URLs, keys.

The private model, the character binding and the stack configuration schema all use them.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated

from pydantic import AfterValidator, Field, StrictStr

from convai_provider.api.accounts import alias_problem
from convai_provider.guards.keys import key_problem
from convai_provider.guards.urls import endpoint_url_problem, shown_url

_CONTROL = frozenset({"Cc", "Cs", "Zl", "Zp"})
"""Control characters, lone surrogates and line or paragraph separators: no name holds one."""

_INVISIBLE = frozenset({"Cf", "Zs", "Mn", "Me"})
"""Format characters (zero-width space, joiners, BOM), spaces and combining marks: a name of
these only looks empty. Within visible text they are fine (emoji sequences, RTL marks)."""


def _no_blank_or_padding(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    if value != value.strip():
        raise ValueError("must not start or end with whitespace")
    control = next((ch for ch in value if unicodedata.category(ch) in _CONTROL), None)
    if control is not None:
        raise ValueError(f"must not contain control characters (found U+{ord(control):04X})")
    if all(unicodedata.category(ch) in _INVISIBLE for ch in value):
        raise ValueError("must contain a visible character (it holds only invisible ones)")
    return value


def _endpoint_url(value: str) -> str:
    problem = endpoint_url_problem(value)
    if problem is not None:
        raise ValueError(f"{problem} (got {shown_url(value)!r})")
    return value


Name = Annotated[StrictStr, AfterValidator(_no_blank_or_padding)]
BaseUrl = Annotated[StrictStr, AfterValidator(_endpoint_url)]


def _header_safe(value: str) -> str:
    problem = key_problem(value)
    if problem is not None:
        raise ValueError(f"{problem}; give the key without it")
    return value


EndpointKey = Annotated[
    StrictStr,
    Field(min_length=1),
    AfterValidator(_no_blank_or_padding),
    AfterValidator(_header_safe),
]


def _alias(value: str) -> str:
    problem = alias_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


AccountAlias = Annotated[StrictStr, AfterValidator(_alias)]
"""An alias of the stack's convai:accounts; left out, the default account (convai:apiKey)."""
