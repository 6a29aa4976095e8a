"""ConvaiAccount: writes inside writing(), one deadline per operation, lost replies settled."""

from __future__ import annotations

import httpx
import pytest

from convai_provider.api.account import ConvaiAccount
from convai_provider.api.client import ConvaiClient
from convai_provider.api.errors import (
    AbsenceNotConfirmedError,
    ConflictError,
    ConvaiTimeoutError,
)
from convai_provider.api.wire import UpdateRequest
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
    assert registered.model_name == "gpt-4o-mini"
    assert convai.request_counts()["/llm-models/register"] == 2
    assert convai.request_counts()["/llm-models/list"] == 1  # the list that settles it
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
    operation = account.operation()
    assert operation.listed("my-turbo") is None
    operation.register(TURBO)
    assert operation.listed("my-turbo") is not None  # a new list, not the one from before
    operation.update(UpdateRequest(model_group_name="my-turbo", display_name="Turbo v2"))
    live = operation.listed("my-turbo")
    assert live is not None and live.display_name == "Turbo v2"
    operation.deregister("my-turbo")
    assert operation.listed("my-turbo") is None
    assert convai.request_counts()["/llm-models/list"] == 4


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
