"""What a provider raises: one sentence naming the resource, the operation and why, never a
key, whatever raised it."""

from __future__ import annotations

import functools
import logging
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from convai_provider.guards.redaction import redact, remember
from convai_provider.guards.text import escaped, sentence
from convai_provider.resources.engine_watch import IN_FLIGHT

FULL_TRACEBACK = 1000
"""Frames shown where a traceback is wanted whole (the process shows none by default)."""

log = logging.getLogger("convai_provider")


class ConvaiOperationError(Exception):
    """A failed provider operation, in one sentence: which resource, which operation, and why.
    Pulumi prints it to a terminal: it holds no key and starts no escape sequence, whatever
    Convai or an endpoint said."""

    def __init__(self, operation: str, subject: str, cause: Exception | str) -> None:
        said = f"Could not {operation} {subject}: {sentence(str(cause))}"
        super().__init__(escaped(redact(said)))


class RedactedError(Exception):
    """An error whose message held a key: raised in its place, with the key replaced."""


def keeping_keys_out(method: Callable[..., Any]) -> Callable[..., Any]:
    """Pulumi prints what a provider raises: no key may be in it, whatever raised it."""

    @functools.wraps(method)
    def run(self: object, *args: Any) -> Any:
        remember(*(arg.get("api_key") for arg in args if isinstance(arg, Mapping)))
        try:
            with IN_FLIGHT.running():
                return method(self, *args)
        except Exception as exc:
            # Pulumi shows the traceback, chained exceptions included: look at all of it.
            printed = "".join(traceback.format_exception(exc, limit=FULL_TRACEBACK))
            if not isinstance(exc, ConvaiOperationError):
                log.error("%s failed unexpectedly:\n%s", method.__name__, redact(printed))
            if redact(printed) == printed:
                raise
            raise RedactedError(redact(str(exc))) from None

    return run
