"""Text fit for a one-line message: what a server said, quoted safely; sentences joined cleanly."""

from __future__ import annotations


def sentence(text: str) -> str:
    """`text` ending in exactly one full stop (or its own `?` or `!`), whatever it ended with:
    joined messages never read `..`."""
    text = text.rstrip()
    if text.endswith(("?", "!")):
        return text
    return text.rstrip(".").rstrip() + "."


def server_text(value: object, limit: int = 300) -> str:
    """What a server said, made safe to quote in a one-line message: control characters
    escaped, at most `limit` characters."""
    text = "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in str(value)[: limit + 1])
    return text[:limit] + "…" if len(text) > limit else text
