"""One request to an endpoint: bounded by its timeout and by what is left of the preflight's wait,
its failure to arrive told as the check that failed."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from convai_provider.guards.bounded_http import MIB, ReplyTooLargeError, bounded_client, send
from convai_provider.preflight.failures import too_large, transport_failure
from convai_provider.preflight.report import EndpointCheck

REPLY_CAP = 16 * MIB
"""Bytes read from one endpoint reply at most: far more than any model list."""


class Probe:
    """Requests to the endpoint at `base_url`, with its key or without."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None,
        request_timeout: float,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_url = base_url
        self.api_key = api_key
        self.request_timeout = request_timeout
        self.until: float | None = None
        """When the preflight's wait ends, on `clock`: no request outlasts it."""
        self._http = bounded_client(transport=transport)
        self._clock = clock
        self._wall_clock = wall_clock

    def close(self) -> None:
        self._http.close()

    def now(self) -> datetime:
        """The wall clock, which dates a Retry-After given as an HTTP date."""
        return datetime.fromtimestamp(self._wall_clock(), UTC)

    def get(self, url: str, with_key: bool) -> httpx.Response | EndpointCheck:
        return self.send("GET", url, with_key)

    def send(
        self, method: str, url: str, with_key: bool, **options: Any
    ) -> httpx.Response | EndpointCheck:
        """One request, within the request timeout and what is left of the wait."""
        seconds = self.request_timeout
        if self.until is not None:
            seconds = min(seconds, self.until - self._clock())
        if seconds <= 0:
            return EndpointCheck(
                "reachable", False, f"the preflight's time ran out before {url} was checked"
            )
        started = self._clock()
        try:
            return send(
                self._http,
                method,
                url,
                seconds=seconds,
                cap=REPLY_CAP,
                headers=self._headers(with_key),
                **options,
            )
        except ReplyTooLargeError as exc:
            return too_large(exc, url)
        except httpx.TransportError as exc:
            # Reading an untrusted certificate's issuer takes one more handshake: within what is
            # left of this request's time.
            left = max(seconds - (self._clock() - started), 0.1)
            return transport_failure(exc, url, left)

    def _headers(self, with_key: bool) -> dict[str, str]:
        if with_key and self.api_key:
            return {"Authorization": f"Bearer {self.api_key}"}
        return {}
