"""SharedListing: one list call serves every concurrent operation it is fresh enough for."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from convai_provider.api.errors import ConvaiTimeoutError
from convai_provider.api.listing import SharedListing
from convai_provider.api.wire import ListResponse, PrivateModel


class SlowList:
    """A fetch that takes `delay` seconds and records when each call was made."""

    def __init__(self, delay: float = 0.05) -> None:
        self.delay = delay
        self.started: list[float] = []
        self.fail_next = False
        self._lock = threading.Lock()

    def __call__(self, _deadline: float | None) -> ListResponse:
        with self._lock:
            self.started.append(time.monotonic())
            number = len(self.started)
            fail, self.fail_next = self.fail_next, False
        time.sleep(self.delay)
        if fail:
            raise ConnectionError("list failed")
        models = [PrivateModel(model_group_name=f"g{i}", model_name="m") for i in range(number)]
        return ListResponse(status="success", models=models, count=number)


def test_concurrent_reads_share_one_call() -> None:
    fetch = SlowList()
    listing = SharedListing(fetch)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: listing.current(), range(64)))
    assert len(fetch.started) == 1
    assert {r.count for r in results} == {1}


def test_a_listing_requested_before_a_write_is_never_served_after_it() -> None:
    fetch = SlowList(delay=0.0)
    listing = SharedListing(fetch)
    listing.current()
    with listing.writing():
        pass
    assert listing.current().count == 2
    assert listing.current().count == 2


def test_requested_after_never_serves_an_older_request() -> None:
    fetch = SlowList(delay=0.1)
    listing = SharedListing(fetch)
    with ThreadPoolExecutor(2) as pool:
        early = pool.submit(listing.current)
        time.sleep(0.03)  # the first request is now in flight
        asked_at = time.monotonic()
        late = pool.submit(listing.requested_after, asked_at)
        assert early.result().count == 1
        assert late.result().count == 2
    assert fetch.started[1] >= asked_at


def test_creates_of_one_wave_share_the_list_requested_after_their_registers_went_out() -> None:
    fetch = SlowList(delay=0.05)
    listing = SharedListing(fetch)
    sent = time.monotonic()  # four registers go out together and come back at different times

    def create(finish_after: float) -> int:
        with listing.writing():
            time.sleep(finish_after)
        return len(listing.requested_after(sent).models)

    with ThreadPoolExecutor(4) as pool:
        counts = list(pool.map(create, [0.01, 0.02, 0.03, 0.04]))
    assert len(fetch.started) == 1 and counts == [1, 1, 1, 1]


def test_listings_expire_after_max_age() -> None:
    now = [0.0]
    fetch = SlowList(delay=0.0)
    listing = SharedListing(fetch, max_age=30.0, clock=lambda: now[0])
    listing.current()
    now[0] = 29.0
    listing.current()
    now[0] = 31.0
    listing.current()
    assert len(fetch.started) == 2


def test_a_failed_listing_fails_its_waiters_and_the_next_call_retries() -> None:
    fetch = SlowList(delay=0.05)
    fetch.fail_next = True
    listing = SharedListing(fetch)
    with ThreadPoolExecutor(4) as pool:
        outcomes = [pool.submit(listing.current) for _ in range(4)]
        for outcome in outcomes:
            with pytest.raises(ConnectionError):
                outcome.result()
    assert listing.current().count == 2


def test_a_waiter_past_its_deadline_gets_a_timeout_error_not_a_hang() -> None:
    listing = SharedListing(SlowList(delay=0.5))
    with ThreadPoolExecutor(2) as pool:
        leader = pool.submit(listing.current)
        time.sleep(0.05)
        joiner = pool.submit(listing.requested_after, 0.0, time.monotonic() + 0.1)
        with pytest.raises(ConvaiTimeoutError, match="timed out"):
            joiner.result()
        assert leader.result().count == 1
