"""Prove an endpoint is OpenAI-compatible, keyed and serving the model, before Convai uses it.

Convai's FAQ: when an endpoint is down or wrong, characters on it just stop answering. The
preflight runs the calls Convai will make (list models, a one-token chat completion) and says in
one sentence what to fix. A freshly deployed vLLM needs minutes to load its model, so transient
failures are retried until a wait budget runs out, by the product's one retry policy
(`api.retry`): the same statuses are transient as for Convai's calls, the same backoff spaces the
attempts, and a server's Retry-After is honoured.

Here the checks are run and waited on; `probe` sends each request, `models` and `completion`
judge the calls, `failures` says what a failed request means, `report` holds what was found.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from convai_provider.api.retry import Backoff
from convai_provider.guards.durations import seconds
from convai_provider.guards.keys import fit_key
from convai_provider.guards.urls import endpoint_url_problem, refusal
from convai_provider.preflight.completion import chat_completion
from convai_provider.preflight.models import models_with_key, models_without_key
from convai_provider.preflight.probe import Probe
from convai_provider.preflight.report import EndpointCheck, PreflightReport

__all__ = [
    "DEFAULT_REQUEST_TIMEOUT",
    "DEFAULT_WAIT",
    "LAST_ATTEMPT",
    "LONGEST_PAUSE",
    "WAIT_NOTICE_EVERY",
    "EndpointCheck",
    "Preflight",
    "PreflightReport",
    "check_endpoint",
    "next_pause",
]

DEFAULT_WAIT = 900.0
"""Seconds to wait for an endpoint to become ready: enough for vLLM to pull and load a model."""

DEFAULT_REQUEST_TIMEOUT = 30.0
"""Seconds one request may take, from connecting to the last byte of its reply."""

WAIT_NOTICE_EVERY = 10.0
"""Seconds a wait goes without saying why at most: a pause between attempts longer than this is
cut into slices, each followed by a notice (`pulumi up` shows each as it comes)."""

LAST_ATTEMPT = 0.5
"""Seconds of the wait budget kept for the last attempt's requests (a tenth of short budgets)."""

LONGEST_PAUSE = 30.0
"""Seconds between attempts at most, unless the endpoint asks for longer (Retry-After)."""


class Preflight:
    """Runs the checks once (`run_once`) or until they pass or the wait budget is spent (`run`)."""

    def __init__(
        self,
        base_url: str,
        model_name: str,
        api_key: str | None,
        *,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """`sleep` and `clock` time the wait and every request's share of it; `wall_clock`
        (seconds since the epoch) dates a Retry-After given as an HTTP date."""
        if api_key is not None:
            fit_key(api_key, "the endpoint's api_key")
        self.base_url = base_url.rstrip("/")
        self.model_name = model_name
        self.api_key = api_key
        self.request_timeout = seconds(request_timeout, "request_timeout", zero_ok=False)
        self._probe = Probe(
            self.base_url,
            api_key,
            self.request_timeout,
            transport=transport,
            clock=clock,
            wall_clock=wall_clock,
        )
        self._sleep = sleep
        self._clock = clock

    def close(self) -> None:
        self._probe.close()

    def run(
        self,
        wait: float = DEFAULT_WAIT,
        interval: float = 5.0,
        on_wait: Callable[[PreflightReport], None] | None = None,
    ) -> PreflightReport:
        """Retry transient failures until the checks pass or `wait` seconds are spent; every
        request ends by then too. `wait=0` checks once, within one request timeout. Attempts
        are `interval` seconds apart at first, then further (`api.retry.Backoff`); an endpoint's
        Retry-After is waited for in full, or ends the wait when it reaches past it. `on_wait` is
        given the last failed attempt at every retry and every WAIT_NOTICE_EVERY seconds of a
        longer pause, so a wait is never silent for long."""
        wait, interval = seconds(wait, "wait"), seconds(interval, "interval")
        started = self._clock()
        budget = wait if wait > 0 else self.request_timeout
        backoff = Backoff(initial=interval, maximum=LONGEST_PAUSE, retry_after_cap=budget)
        self._probe.until = started + budget
        attempts = 0
        try:
            while True:
                attempts += 1
                report = self.run_once()
                report.attempts = attempts
                report.waited = self._clock() - started
                failure = report.failure
                if failure is None or failure.final:
                    return report
                # The last attempt comes just before the budget ends, not a whole pause early.
                left = wait - (self._clock() - started) - min(LAST_ATTEMPT, wait / 10)
                pause = next_pause(backoff, attempts - 1, failure, left)
                if pause is None:
                    return report
                self._pause(pause, report, started, on_wait)
        finally:
            self._probe.until = None

    def _pause(
        self,
        pause: float,
        report: PreflightReport,
        started: float,
        on_wait: Callable[[PreflightReport], None] | None,
    ) -> None:
        """Sleep `pause` seconds in slices of WAIT_NOTICE_EVERY, each announced to `on_wait`."""
        while True:
            if on_wait is not None:
                report.waited = self._clock() - started
                on_wait(report)
            self._sleep(min(pause, WAIT_NOTICE_EVERY))
            pause -= WAIT_NOTICE_EVERY
            if pause <= 0:
                return

    def run_once(self) -> PreflightReport:
        report = PreflightReport(self.base_url, self.model_name)
        problem = endpoint_url_problem(self.base_url)
        if problem is not None:
            refused = refusal("base_url", self.base_url, problem)
            report.checks.append(EndpointCheck("reachable", False, refused, final=True))
            return report
        checks: list[Callable[[], list[EndpointCheck]]] = [
            lambda: models_with_key(self._probe, self.model_name),
            lambda: models_without_key(self._probe),
            lambda: chat_completion(self._probe, self.model_name),
        ]
        for check in checks:
            results = check()
            report.checks.extend(results)
            if not all(r.ok for r in results):
                break
        return report


def next_pause(
    backoff: Backoff, retries_done: int, failure: EndpointCheck, left: float
) -> float | None:
    """Seconds to wait before the next attempt, `left` seconds at most; None when the wait ends
    now: its time is spent, or the endpoint asks to be left alone for longer than is left."""
    if left <= 0:
        return None
    pause = backoff.delay(retries_done, failure.retry_after)
    if failure.retry_after is not None and pause > left:
        return None
    return min(pause, left)


def check_endpoint(
    base_url: str,
    model_name: str,
    api_key: str | None,
    *,
    wait: float = DEFAULT_WAIT,
    interval: float = 5.0,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    on_wait: Callable[[PreflightReport], None] | None = None,
) -> PreflightReport:
    preflight = Preflight(base_url, model_name, api_key, request_timeout=request_timeout)
    try:
        return preflight.run(wait=wait, interval=interval, on_wait=on_wait)
    finally:
        preflight.close()
