"""What the provider process (the Pulumi SDK's provider server) prints: its log on stderr, and
the errors it returns as our sentences alone, without tracebacks."""

from __future__ import annotations

import logging
import sys
import traceback
from typing import Any

from convai_provider.api.errors import ConvaiError
from convai_provider.guards.text import SafeLogFilter
from convai_provider.resources.provider_errors import ConvaiOperationError, RedactedError


def log_to_stderr() -> None:
    """configure() runs only in the provider process, whose stderr the Pulumi CLI shows: say
    there what read and delete decided (a model dropped from state, one already gone)."""
    logger = logging.getLogger("convai_provider")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("convai: %(message)s"))
        handler.addFilter(SafeLogFilter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


PROVIDER_SERVER = "pulumi.dynamic.__main__"
"""The module Pulumi runs as `python -m pulumi.dynamic`: the provider process."""


SENTENCES = (ConvaiOperationError, RedactedError, ConvaiError)
"""What our providers raise on purpose: a sentence that says what to do, shown alone."""


class _SentenceTracebacks:
    """The `traceback` module as the SDK's provider server sees it. The server answers a failed
    call with `traceback.format_exc()`, whose last line starts with the exception's class path
    (`convai_provider.resources.provider_errors.ConvaiOperationError: Could not ...`); one of
    our sentences is given alone, anything else as Python prints it."""

    def __getattr__(self, name: str) -> Any:
        return getattr(traceback, name)

    @staticmethod
    def format_exc(limit: int | None = None, chain: bool = True) -> str:
        error = sys.exc_info()[1]
        if isinstance(error, SENTENCES):
            return f"{error}\n"
        return traceback.format_exc(limit, chain)


def in_provider_server() -> bool:
    main = sys.modules.get("__main__")
    return getattr(getattr(main, "__spec__", None), "name", None) == PROVIDER_SERVER


def show_errors_without_tracebacks() -> None:
    """Pulumi prints `traceback.format_exc()` of whatever a provider raises: ten lines of SDK and
    provider frames and a class path before the one sentence a ConvaiOperationError says. In the
    provider process (and only there: the setting is process-wide) frames are left out of every
    printed traceback, and our sentences are printed alone; an unexpected error's frames are
    logged in full by the operation that met it."""
    if in_provider_server():
        main = sys.modules["__main__"]
        sys.tracebacklimit = 0
        main.traceback = _SentenceTracebacks()  # type: ignore[attr-defined]
