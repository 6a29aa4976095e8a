"""Documents from outside the process (replies, stack files, piped outputs), parsed with limits.

Python's parsers recurse once per nesting level: a document of 100,000 `[` is a RecursionError
in the parser or in whatever walks the result next. Here nesting beyond `MAX_DEPTH` is a
`DocumentError` that says so, before anything else sees the document.
"""

from __future__ import annotations

from typing import Any

import pydantic_core

MAX_DEPTH = 64
"""Deeper than any document this project reads (a stack file nests five levels)."""


class DocumentError(ValueError):
    """A document that could not be read, in words: what is wrong and where."""


class TooDeepError(DocumentError):
    """A document nested deeper than MAX_DEPTH."""


def parse_json(data: str | bytes) -> Any:
    """JSON text as Python values; invalid JSON, or JSON nested deeper than MAX_DEPTH, is a
    `DocumentError`."""
    try:
        # pydantic-core's parser stops at ~200 levels with an error instead of recursing on.
        value = pydantic_core.from_json(data)
    except ValueError as exc:
        if "recursion limit" in str(exc):
            raise TooDeepError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
        raise DocumentError(f"not valid JSON ({exc})") from None
    check_depth(value, "JSON")
    return value


def check_depth(value: Any, kind: str) -> None:
    """Refuse a parsed document whose lists and mappings nest deeper than MAX_DEPTH; walked
    level by level, without recursion."""
    containers = [value] if isinstance(value, dict | list) else []
    depth = 0
    while containers:
        depth += 1
        if depth > MAX_DEPTH:
            raise TooDeepError(f"{kind} nested deeper than {MAX_DEPTH} levels")
        containers = [
            child
            for container in containers
            for child in (container.values() if isinstance(container, dict) else container)
            if isinstance(child, dict | list)
        ]
