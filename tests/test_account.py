"""ConvaiAccount: writes inside writing(), one deadline per operation, lost replies settled."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from convai_provider.api.account import ConvaiAccount, Operation
from convai_provider.api.client import ConvaiClient
from convai_provider.api.errors import (
    AbsenceNotConfirmedError,
    ConflictError,
    ConvaiTimeoutError,
)
from convai_provider.api.listing import SharedListing
from convai_provider.api.wire import ListResponse, PrivateModel, UpdateRequest
from convai_provider.emulator.process import EmulatorProcess
from testkit.convai import CONVAI_KEY, TURBO


@pytest.fixture
def account(client: ConvaiClient) -> ConvaiAccount:
    return ConvaiAccount(client)


# Lost replies -----------------------------------------------------------------------------------


def test_a_lost_register_reply_is_settled_from_the_shared_listing(
    convai: EmulatorProcess, client: ConvaiClient, account: ConvaiAccount
) -> None:
    convai.inject(path="/llm-models/register", drop_after_commit=True, count=1)
    registered = account.operation().register(TURBO)
    assert registered.model is not None and registered.model.model_name == "gpt-4o-mini"
    assert convai.request_counts()["/llm-models/register"] == 2
    assert convai.request_counts()["/llm-models/list"] == 1  # the same list settles and reads
    assert client.list_models().count == 1


def test_a_first_attempt_conflict_is_never_swallowed(
    convai: EmulatorProcess, client: ConvaiClient, account: ConvaiAccount
) -> None:
    client.register(TURBO)
    with pytest.raises(ConflictError):
        account.operation().register(TURBO)
    assert "/llm-models/list" not in convai.request_counts()


def test_a_retried_conflict_with_a_different_model_is_raised(
    convai: EmulatorProcess, client: ConvaiClient, account: ConvaiAccount
) -> None:
    client.register(TURBO.model_copy(update={"model_name": "someone-elses"}))
    convai.inject(path="/llm-models/register", drop_after_commit=True, count=1)
    with pytest.raises(ConflictError):
        account.operation().register(TURBO)
    assert convai.request_counts()["/llm-models/list"] == 1  # looked, and it was not ours


# Writes and listings ----------------------------------------------------------------------------


def test_a_read_after_a_write_never_gets_a_listing_from_before_it(
    convai: EmulatorProcess, account: ConvaiAccount
) -> None:
    account.operation().register(TURBO)
    lists = convai.request_counts()["/llm-models/list"]
    operation = account.operation()
    assert operation.listed("my-turbo") is not None
    assert convai.request_counts()["/llm-models/list"] == lists  # the register's own list serves
    operation.update(UpdateRequest(model_group_name="my-turbo", display_name="Turbo v2"))
    live = operation.listed("my-turbo")
    assert live is not None and live.display_name == "Turbo v2"
    operation.deregister("my-turbo")
    assert operation.listed("my-turbo") is None
    assert convai.request_counts()["/llm-models/list"] == lists + 2


def test_an_operation_keeps_the_deadline_it_started_with(convai: EmulatorProcess) -> None:
    now = [100.0]
    client = ConvaiClient(CONVAI_KEY, convai.url, clock=lambda: now[0])
    account = ConvaiAccount(client, operation_timeout=30.0, clock=lambda: now[0])
    operation = account.operation()
    assert operation.deadline == 130.0
    now[0] = 131.0  # the budget is spent: no call of this operation may start
    with pytest.raises(ConvaiTimeoutError):
        operation.listed("my-turbo")
    assert "/llm-models/list" not in convai.request_counts()
    assert account.operation().deadline == 161.0


# A create's read-back -------------------------------------------------------------------------


class GatedLists:
    """A list fetch whose calls each block until the test opens their gate; records the clock
    value at which each call was requested."""

    def __init__(self, clock: list[float], replies: list[list[str]]) -> None:
        self.clock = clock
        self.replies = replies
        self.requested_at: list[float] = []
        self.gates = [threading.Event() for _ in replies]

    def __call__(self, _deadline: float | None) -> ListResponse:
        number = len(self.requested_at)
        self.requested_at.append(self.clock[0])
        self.gates[number].wait(timeout=10)
        groups = self.replies[number]
        return ListResponse(
            status="success",
            models=[PrivateModel(model_group_name=g, model_name="m") for g in groups],
        )


def test_a_register_missing_from_the_list_it_joined_takes_one_requested_after_its_reply() -> None:
    """Our register went out at 1 and came back at 10. It joins the list a concurrent create
    requested at 5, which lacks the model; meanwhile another create requested a list at 11,
    after our reply, which must hold it: we take that one rather than asking for a third."""
    clock = [5.0]
    fetch = GatedLists(clock, [["other"], ["other", "mine"], ["never asked for"]])
    waiting = threading.Event()

    def now() -> float:
        if threading.current_thread().name == "ours":
            waiting.set()  # requested_after reads the clock once it has joined a flight
        return clock[0]

    listing = SharedListing(fetch, clock=now)
    operation = Operation(ConvaiClient("unused", "http://127.0.0.1:9"), listing, deadline=60.0)
    with ThreadPoolExecutor(3, thread_name_prefix="others") as others:
        others.submit(listing.requested_after, 0.0)  # the list requested at 5
        while not fetch.requested_at:
            time.sleep(0.001)
        result: list[PrivateModel | None] = []
        ours = threading.Thread(
            name="ours",
            target=lambda: result.append(operation._listed_after("mine", 1.0, 10.0)),
        )
        ours.start()
        assert waiting.wait(timeout=10)
        clock[0] = 11.0
        others.submit(listing.requested_after, 11.0)  # the list requested at 11
        while len(fetch.requested_at) < 2:
            time.sleep(0.001)
        clock[0] = 12.0
        fetch.gates[0].set()
        fetch.gates[1].set()
        ours.join(timeout=10)
    assert result and result[0] is not None and result[0].model_group_name == "mine"
    assert fetch.requested_at == [5.0, 11.0]


# A 404 is "gone" only when a list confirms it ---------------------------------------------------


def test_a_model_already_deregistered_is_gone_once_a_list_confirms_it(
    convai: EmulatorProcess, account: ConvaiAccount
) -> None:
    assert account.operation().deregister("ghost") is False
    assert convai.request_counts()["/llm-models/list"] == 1


def scripted_account(deregister: httpx.Response, listing: httpx.Response) -> ConvaiAccount:
    replies = {"/llm-models/deregister": deregister, "/llm-models/list": listing}
    transport = httpx.MockTransport(lambda request: replies[request.url.path])
    return ConvaiAccount(ConvaiClient("k", transport=transport, max_retries=0))


ENVELOPE_404 = httpx.Response(
    404, json={"status": "error", "message": "Model 'g' not found", "transactionID": "t"}
)


@pytest.mark.parametrize(
    ("listing", "why"),
    [
        (
            httpx.Response(
                200,
                json={
                    "status": "success",
                    "models": [{"model_group_name": "g", "model_name": "m"}],
                    "transactionID": "t",
                },
            ),
            "yet Convai's list holds the model",
        ),
        (httpx.Response(404, text="<html>Not Found</html>"), "the list to confirm it failed"),
    ],
)
def test_a_404_the_list_contradicts_or_cannot_confirm_is_an_error(
    listing: httpx.Response, why: str
) -> None:
    with pytest.raises(AbsenceNotConfirmedError, match=why) as caught:
        scripted_account(ENVELOPE_404, listing).operation().deregister("g")
    assert "Nothing was dropped" in str(caught.value)
