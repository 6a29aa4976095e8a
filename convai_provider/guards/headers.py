"""What an HTTP header's value may hold: ASCII without control characters or surrounding
whitespace. A CR or LF would end the header, a header's value has no surrounding whitespace,
and httpx, refusing such a value, quotes the header in its message (a key in it included)."""

from __future__ import annotations


def header_value_problem(value: str) -> str | None:
    """What makes `value` unfit for an HTTP header, in words that do not repeat it; None if fit."""
    if value != value.strip():
        return "starts or ends with whitespace (a space, a line break), which a header cannot carry"
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return "contains a control character (CR, LF, tab or another)"
    if not value.isascii():
        return "contains a non-ASCII character, which HTTP headers cannot carry"
    return None
