"""One `/llm-models/list` call shared by every concurrent operation that can use it.

Convai has no "get one model" call, so each create (for its computed outputs) and each refresh
needs the account's whole list. Asking for it once per resource is O(N^2) traffic. Here every
operation states how fresh its answer must be (`not_before`: the listing must have been requested
at or after that instant) and is served by the newest listing that qualifies, by joining a request
already in flight, or by starting one. Writes (register, update, deregister) are tracked so that
a read is never served a listing requested before a write this process completed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FuturesTimeoutError
from contextlib import contextmanager
from dataclasses import dataclass

from convai_provider.api.errors import ConvaiTimeoutError
from convai_provider.api.wire import ListResponse


@dataclass
class _Flight:
    requested_at: float
    result: Future[ListResponse]


class SharedListing:
    def __init__(
        self,
        fetch: Callable[[float | None], ListResponse],
        *,
        max_age: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`fetch(deadline)` performs the list call; `max_age` bounds how old a reused listing may
        be."""
        self._fetch = fetch
        self._max_age = max_age
        self._clock = clock
        self._lock = threading.Lock()
        self._newest: _Flight | None = None
        self._last_write_done = float("-inf")

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Wrap every write: listings requested before it completes are stale afterwards."""
        try:
            yield
        finally:
            with self._lock:
                self._last_write_done = self._clock()

    def current(self, deadline: float | None = None) -> ListResponse:
        """A listing no older than the last write this process completed, nor than max_age."""
        with self._lock:
            floor = max(self._last_write_done, self._clock() - self._max_age)
        return self.requested_after(floor, deadline)

    def requested_after(self, not_before: float, deadline: float | None = None) -> ListResponse:
        """A listing whose request was sent at or after `not_before` (a `clock()` value)."""
        flight, lead = self._find_or_start(not_before)
        if lead:
            self._run(flight, deadline)
        remaining = None if deadline is None else max(0.0, deadline - self._clock())
        try:
            return flight.result.result(timeout=remaining)
        except FuturesTimeoutError:
            # The operation's own time ran out, not a request's: a longer request would not help.
            ran_out = ConvaiTimeoutError(
                "list", "Convai", "the shared list call did not finish within the operation's time"
            )
            ran_out.timeout_setting = None
            raise ran_out from None

    def _find_or_start(self, not_before: float) -> tuple[_Flight, bool]:
        with self._lock:
            newest = self._newest
            if newest is not None and newest.requested_at >= not_before:
                return newest, False
            flight = _Flight(self._clock(), Future())
            self._newest = flight
            return flight, True

    def _run(self, flight: _Flight, deadline: float | None) -> None:
        try:
            flight.result.set_result(self._fetch(deadline))
        except BaseException as exc:
            flight.result.set_exception(exc)
            with self._lock:
                if self._newest is flight:
                    self._newest = None
