"""Field types of the resources' inputs, checked at plan time: names, endpoint URLs and keys.

The private model, the character binding and the stack configuration schema all use them.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, Field, StrictStr

from .keys import key_problem

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


def _http_url(value: str) -> str:
    if any(ch.isspace() or unicodedata.category(ch) in _CONTROL for ch in value):
        # urlsplit would drop a tab or newline silently, and Convai would store it.
        raise ValueError("must not contain spaces or control characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            "must be an http(s) URL with a host, such as https://llm.example.com/v1 "
            f"(got {value!r})"
        )
    if parts.query or parts.fragment:
        raise ValueError("must not carry a query string or fragment: give the API root (…/v1)")
    return value


Name = Annotated[StrictStr, AfterValidator(_no_blank_or_padding)]
BaseUrl = Annotated[StrictStr, AfterValidator(_http_url)]


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
