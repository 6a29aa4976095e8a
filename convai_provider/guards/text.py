"""Text fit for a message and a terminal: what a server said, quoted safely; sentences joined
cleanly; the operator commands' output and the provider's log without keys or escape sequences.

A server's words (a model name, an error message) reach a terminal. Written raw, an ESC or CSI
would start an escape sequence (recolour, move the cursor, rewrite what is shown) and a newline
inside a model name would fake a row of the `list` table; escaped, they show as `\\x1b`, `\\n`.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from convai_provider.guards.redaction import redact, redacted_prefix


def sentence(text: str) -> str:
    """`text` ending in exactly one full stop (or its own `?` or `!`), whatever it ended with:
    joined messages never read `..`."""
    text = text.rstrip()
    if text.endswith(("?", "!")):
        return text
    return text.rstrip(".").rstrip() + "."


def server_text(value: object, limit: int | None = 300, *, more_follows: bool = False) -> str:
    """What a server said (Convai, an endpoint), fit to show in a message, a table cell or a
    terminal: keys redacted first, then every character a terminal would act on escaped, then
    at most `limit` characters (None: all). `more_follows`: `value` is itself only the start of
    what the server sent."""
    text = str(value)
    if limit is None:
        return escaped(redact(text))
    shown, cut = redacted_prefix(text, limit, more_follows=more_follows)
    shown = escaped(shown)
    return shown[:limit] + "…" if cut or len(shown) > limit else shown


def escaped(text: str, keep: str = "") -> str:
    """`text` with each character a terminal acts on rather than shows (control characters,
    ESC and CSI that start escape sequences, line and paragraph separators, bidirectional
    overrides) written as its Python escape (`\\x1b`, `\\n`, `\\u202e`); those in `keep` stay."""
    if text.translate(dict.fromkeys(map(ord, keep))).isprintable():
        return text  # the usual case, checked at C speed: a command's output is megabytes
    return "".join(ch if ch.isprintable() or ch in keep else repr(ch)[1:-1] for ch in text)


class SafeLogFilter(logging.Filter):
    """Logs keep no key and start no escape sequence: the formatted message is redacted and
    escaped (its own line breaks kept: a traceback is logged whole) before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = escaped(redact(record.getMessage()), keep="\n")
        record.args = None
        return True


class _SafeStream:
    def __init__(self, inner: TextIO) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        return self._inner.write(escaped(redact(text), keep="\n"))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@contextmanager
def safe_output() -> Iterator[None]:
    """Everything printed to stdout and stderr meanwhile has its keys redacted and every
    character a terminal acts on but a newline escaped: a last line of defence under the
    commands, which escape each field they print (a newline in a field is caught only there)."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _SafeStream(out), _SafeStream(err)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err
