"""Keys (the Convai API key, endpoint keys): what one may hold, and keeping them out of messages.

A key travels in an HTTP header, so it must be ASCII without control characters: a CR or LF
would end the header, and httpx, refusing it, quotes the header, key included. Such keys are
refused up front with words that describe the key, never repeat it.

As a last line of defence, every key this process has been given is replaced by `[secret]` in
whatever leaves the process: the operator commands' output, the provider's errors (which Pulumi
prints) and its log. Keys shorter than `MIN_REDACTED` characters are not replaced: they would
blank out ordinary words (`EMPTY`, the keyless placeholder), and protect nothing.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO
from urllib.parse import quote

SHOWN_AS = "[secret]"
MIN_REDACTED = 8

_known: set[str] = set()
_lock = threading.Lock()


def key_problem(key: str) -> str | None:
    """What makes `key` unfit for an HTTP header, in words that do not repeat it; None if fit."""
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
        return "contains a control character (CR, LF, tab or another)"
    if not key.isascii():
        return "contains a non-ASCII character, which HTTP headers cannot carry"
    return None


def remember(*keys: object) -> None:
    """Keys to keep out of every message from now on (non-strings are ignored)."""
    with _lock:
        _known.update(k for k in keys if isinstance(k, str) and len(k) >= MIN_REDACTED)


def redact(text: str) -> str:
    """`text` with every remembered key replaced, in the forms messages quote it: as is, as
    repr() and json.dumps() escape it, and URL-encoded."""
    with _lock:
        keys = sorted(_known, key=len, reverse=True)
    for key in keys:
        for form in _quoted_forms(key):
            if form in text:
                text = text.replace(form, SHOWN_AS)
    return text


def _quoted_forms(key: str) -> list[str]:
    forms = {
        key,
        repr(key)[1:-1],
        ascii(key)[1:-1],
        json.dumps(key)[1:-1],
        repr(key.encode("utf-8", "replace"))[2:-1],
        quote(key, safe=""),
    }
    return sorted(forms, key=len, reverse=True)


class RedactingFilter(logging.Filter):
    """Logs keep no key: the formatted message is redacted before any handler sees it."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


class _RedactingStream:
    def __init__(self, inner: TextIO) -> None:
        self._inner = inner

    def write(self, text: str) -> int:
        return self._inner.write(redact(text))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@contextmanager
def redacted_output() -> Iterator[None]:
    """Everything printed to stdout and stderr meanwhile has its keys redacted."""
    out, err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _RedactingStream(out), _RedactingStream(err)
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err
