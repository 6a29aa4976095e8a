"""Waiting for something a test cannot be told about (a process, a server's state) by asking."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for(
    condition: Callable[[], object], what: str, timeout: float = 60.0, poll: float = 0.1
) -> None:
    """Returns once `condition()` is true; fails naming `what` if it is not within `timeout`
    seconds (the test's bound, not a measurement)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)
