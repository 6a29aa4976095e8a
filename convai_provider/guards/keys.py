"""What a key (the Convai API key, an endpoint key) may hold: it travels in an HTTP header, so a
key the header cannot carry is refused up front, in words that describe it and never repeat it;
a key that passes is kept out of every message from then on (`guards.redaction`)."""

from __future__ import annotations

from convai_provider.guards.headers import header_value_problem
from convai_provider.guards.redaction import remember


class UnfitKeyError(ValueError):
    """A key refused before it is sent: names where it came from and what is wrong, never it."""


def key_problem(key: str) -> str | None:
    """What makes `key` unfit to be sent, in words that do not repeat it; None if fit."""
    return header_value_problem(key)


def fit_key(key: str, source: str, fix: str = "") -> str:
    """`key`, from `source`, once it is known fit to be sent, and from then on kept out of
    every message; else UnfitKeyError saying `source`, what is wrong and `fix` (": fix")."""
    problem = key_problem(key)
    if problem is not None:
        raise UnfitKeyError(f"{source} {problem}" + (f": {fix}" if fix else ""))
    remember(key)
    return key
