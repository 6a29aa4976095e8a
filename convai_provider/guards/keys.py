"""What a key (the Convai API key, an endpoint key) may hold: it travels in an HTTP header, so a
key the header cannot carry is refused up front, in words that describe it and never repeat it
(what keeps keys out of messages is `guards.redaction`)."""

from __future__ import annotations

from convai_provider.guards.headers import header_value_problem


def key_problem(key: str) -> str | None:
    """What makes `key` unfit to be sent, in words that do not repeat it; None if fit."""
    return header_value_problem(key)
