"""Replies no real Convai sends: each is an error naming what came back, never an empty result."""

from __future__ import annotations

import gzip
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from convai_provider.api.client import ConvaiClient
from convai_provider.api.errors import (
    BadRequestError,
    ConflictError,
    ConvaiConnectionError,
    ConvaiError,
    ConvaiProtocolError,
    ConvaiTimeoutError,
    RedirectError,
    UnexpectedReplyError,
    error_for_status,
)
from convai_provider.api.wire import RegisterRequest, UpdateRequest
from convai_provider.emulator.process import EmulatorProcess
from convai_provider.guards.bounded_http import MIB
from convai_provider.preflight.checks import check_endpoint
from convai_provider.resources.provider_errors import ConvaiOperationError
from convai_stack.commands.main import main as cli_main
from testkit.convai import CONVAI_KEY, FAST_BACKOFF, declare, live, stack_config, turbo
from testkit.engine import Engine, ProviderError
from testkit.hostile_server import Answer, dribbled, endless, http_answer, serve_answer

TURBO = RegisterRequest(model_group_name="g", model_name="m", api_key="k", is_uncensored=False)

CALLS: dict[str, Callable[[ConvaiClient], object]] = {
    "list": lambda c: c.list_models(),
    "register": lambda c: c.register(TURBO),
    "update": lambda c: c.update(UpdateRequest(model_group_name="g", display_name="d")),
    "deregister": lambda c: c.deregister("g"),
    "character get": lambda c: c.get_character("c"),
    "character update": lambda c: c.set_character_model("c", "g"),
}


def answering(status: int, body: Any = None, **headers: str) -> httpx.MockTransport:
    content = b"" if body is None else httpx.Response(200, json=body).content
    return httpx.MockTransport(
        lambda request: httpx.Response(status, content=content, headers=headers)
    )


def call(name: str, transport: httpx.BaseTransport) -> Exception:
    with ConvaiClient("k", "https://convai.test", transport=transport, max_retries=0) as client:
        try:
            CALLS[name](client)
        except Exception as exc:
            return exc
    raise AssertionError(f"{name} accepted a reply Convai never sends")


@pytest.mark.parametrize("name", list(CALLS))
@pytest.mark.parametrize("body", [{}, {"STATUS": "FAILED"}, {"status": "ok", "models": []}, []])
def test_a_reply_without_the_documented_shape_is_an_error_naming_it(name: str, body: Any) -> None:
    error = call(name, answering(200, body))
    assert isinstance(error, UnexpectedReplyError)
    assert f"Convai {name} answered HTTP 200 with a reply that is not Convai's" in str(error)
    assert repr(httpx.Response(200, json=body).text) in str(error)  # what came back
    assert "Check that base_url is Convai's API" in str(error)  # the client's argument


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"status": "success"}, "models is required"),
        ({"status": "success", "models": [{"model_name": "m"}]}, "model_group_name is required"),
        ({"status": "success", "models": [], "count": 3}, "count is 3 but the reply lists 0"),
    ],
)
def test_a_list_that_does_not_account_for_every_model_is_an_error(body: Any, problem: str) -> None:
    error = call("list", answering(200, body))
    assert isinstance(error, UnexpectedReplyError) and problem in str(error)


ONE = {"model_group_name": "g", "model_name": "m"}


@pytest.mark.parametrize(
    "paging",
    [
        {"has_more": True},
        {"next_page_token": "abc"},
        {"next": "https://api.convai.com/llm-models/list?page=2"},
        {"page": 1, "total_pages": 2},
        {"cursor": "c2"},
        {"next_cursor": "c2"},
        {"offset": 1, "limit": 1},
        # the same markers as other APIs spell them, nest them, or count the whole
        {"hasMore": True},
        {"nextPageToken": "abc"},
        {"NextPage": 2},
        {"next_page_url": "https://api.convai.com/llm-models/list?page=2"},
        {"@odata.nextLink": "https://api.convai.com/llm-models/list?$skip=1"},
        {"more": True},
        {"truncated": True},
        {"isTruncated": True},
        {"page": 0, "page_size": 1},
        {"pagination": {"has_more": True}},
        {"meta": {"paging": {"nextCursor": "c2"}}},
        {"links": {"next": "/llm-models/list?page=2"}},
        {"total": 2},
        {"totalCount": 2},
        {"meta": {"total_results": 40}},
    ],
)
def test_a_paged_list_is_an_error_never_a_partial_account(paging: dict[str, Any]) -> None:
    body = {"status": "success", "models": [ONE], "count": 1, **paging}
    error = call("list", answering(200, body))
    assert isinstance(error, UnexpectedReplyError)
    assert "it is paged" in str(error) and "not the whole account" in str(error)


@pytest.mark.parametrize(
    "headers",
    [
        {"Link": '<https://api.convai.com/llm-models/list?page=2>; rel="next"'},
        {"Link": "<https://api.convai.com/llm-models/list?page=2>; rel=next"},
        {"X-Total-Count": "2"},
        {"X-Next-Page": "2"},
        {"X-Has-More": "true"},
    ],
)
def test_a_list_paged_by_its_headers_is_an_error(headers: dict[str, str]) -> None:
    body = {"status": "success", "models": [ONE], "count": 1}
    error = call("list", answering(200, body, **headers))
    assert isinstance(error, UnexpectedReplyError)
    assert "it is paged (header " in str(error) and "not the whole account" in str(error)


@pytest.mark.parametrize(
    "headers",
    [
        {"Link": '<https://docs.convai.com>; rel="help"'},
        {"X-Total-Count": "1"},
        {"X-Has-More": "false"},
        {"X-Request-Id": "r-1"},
        {"X-RateLimit-Limit": "100"},
    ],
)
def test_headers_that_do_not_page_leave_a_whole_list(headers: dict[str, str]) -> None:
    transport = answering(200, {"status": "success", "models": [ONE]}, **headers)
    with ConvaiClient("k", "https://convai.test", transport=transport, max_retries=0) as client:
        assert [m.model_group_name for m in client.list_models().models] == ["g"]


@pytest.mark.parametrize(
    "whole",
    [
        {"has_more": False},
        {"next_page_token": None},
        {"next": ""},
        {"hasMore": False},
        {"pagination": {"nextCursor": None}},
        {"total": 1},
        {"meta": {"totalCount": 1, "request_id": "r"}},
        {"context": "listing", "limits": "none"},
    ],
)
def test_a_marker_saying_there_is_no_further_page_is_a_whole_list(whole: dict[str, Any]) -> None:
    transport = answering(200, {"status": "success", "models": [ONE], **whole})
    with ConvaiClient("k", "https://convai.test", transport=transport, max_retries=0) as client:
        assert [m.model_group_name for m in client.list_models().models] == ["g"]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"models": [ONE | {"is_uncensored": "yes"}]}, "models.0.is_uncensored"),
        ({"models": [ONE | {"is_uncensored": 1}]}, "models.0.is_uncensored"),
        ({"models": [ONE], "count": "1"}, "count"),
        ({"models": [ONE], "count": True}, "count"),
        ({"models": [ONE | {"model_name": 7}]}, "models.0.model_name"),
        ({"models": [ONE | {"display_name": ["a"]}]}, "models.0.display_name"),
        ({"models": [ONE, ONE | {"model_name": "other"}]}, "it lists g more than once"),
    ],
)
def test_a_list_in_other_types_or_with_a_name_twice_is_not_understood(
    body: dict[str, Any], problem: str
) -> None:
    error = call("list", answering(200, {"status": "success", **body}))
    assert isinstance(error, UnexpectedReplyError) and problem in str(error), str(error)


@pytest.mark.parametrize("command", ["list", "recover"])
def test_the_commands_refuse_a_list_naming_a_model_twice_in_one_line(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """read, recover and audit share one list rule: none may pick the first or the last."""
    state = tmp_path / "exported.json"
    state.write_text(json.dumps({"deployment": {"resources": [], "pending_operations": []}}))
    twice = {"status": "success", "models": [ONE, ONE | {"model_name": "other"}]}
    with serve_answer(http_answer(200, twice)) as url:
        monkeypatch.setenv("CONVAI_API_KEY", CONVAI_KEY)
        argv = [command, "--base-url", url]
        if command == "recover":
            argv += ["--stack", "s", "--state", str(state)]
        code = cli_main(argv)
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "it lists g more than once" in err


def test_a_register_reply_in_other_types_is_not_understood() -> None:
    body = {"status": "success", "model_group_name": "g", "model_name": 5}
    assert isinstance(call("register", answering(200, body)), UnexpectedReplyError)


def test_the_character_calls_need_their_own_success_shape() -> None:
    assert isinstance(call("character update", answering(200, {"status": "success"})), Exception)
    with ConvaiClient(
        "k", "https://convai.test", transport=answering(200, {"STATUS": "SUCCESS"})
    ) as client:
        assert client.set_character_model("c", "g").STATUS == "SUCCESS"


@pytest.mark.parametrize("status", [300, 301, 302, 303, 304, 307, 308])
@pytest.mark.parametrize("name", list(CALLS))
def test_any_redirect_is_an_error_saying_where_it_pointed(name: str, status: int) -> None:
    error = call(name, answering(status, {}, location="/elsewhere/list"))
    assert isinstance(error, RedirectError)
    assert f"was redirected (HTTP {status}) to https://convai.test/elsewhere/list" in str(error)
    assert "not followed" in str(error)


def test_a_redirect_without_a_location_says_so() -> None:
    error = call("list", answering(302))
    assert isinstance(error, RedirectError) and "no Location header" in str(error)


def test_a_redirect_is_never_followed_so_the_key_stays_home() -> None:
    target = http_answer(200, {"status": "success", "models": [], "count": 0})
    with serve_answer(target) as elsewhere:
        moved = http_answer(307, {}, {"Location": f"{elsewhere}/llm-models/list"})
        with (
            serve_answer(moved) as url,
            ConvaiClient(CONVAI_KEY, url, max_retries=0) as client,
            pytest.raises(RedirectError, match=f"to {elsewhere}/llm-models/list"),
        ):
            client.list_models()
    assert target.requests == []


# Through the provider: refresh and destroy against a server that answers `200 {}` -------------


def hostile(convai: EmulatorProcess, url: str) -> dict[str, Any]:
    return {**stack_config(convai), "convai:baseUrl": url, "convai:maxRetries": "0"}


WRONG_SERVERS = {
    "200 {}": http_answer(200, {}),
    "307 {}": http_answer(307, {}),
    "status without models": http_answer(200, {"status": "success"}),
}


def two_models_up(convai: EmulatorProcess) -> Engine:
    """A stack of two models, `a` and `b` (group `turbo`), created on the emulator."""
    engine = Engine(stack_config(convai))
    engine.up(declare(a=turbo(model_group_name="a", display_name="A"), b=turbo(display_name="B")))
    return engine


@pytest.mark.parametrize("wrong", list(WRONG_SERVERS))
def test_refresh_against_a_wrong_server_drops_nothing_from_state(
    convai: EmulatorProcess, wrong: str
) -> None:
    engine = two_models_up(convai)
    with serve_answer(WRONG_SERVERS[wrong]) as url:
        engine.config = hostile(convai, url)
        with pytest.raises(ProviderError, match="Could not read Convai private model"):
            engine.refresh()
    assert sorted(engine.state) == ["a", "b"]


@pytest.mark.parametrize("wrong", ["200 {}", "307 {}"])
def test_destroy_against_a_wrong_server_fails_and_keeps_state(
    convai: EmulatorProcess, wrong: str
) -> None:
    engine = two_models_up(convai)
    with serve_answer(WRONG_SERVERS[wrong]) as url:
        engine.config = hostile(convai, url)
        with pytest.raises(ProviderError, match="Could not delete Convai private model"):
            engine.destroy()
    assert sorted(engine.state) == ["a", "b"]
    assert sorted(live(convai)) == ["a", "turbo"]


# Deeply nested JSON: one clear error, never a RecursionError ---------------------------------

DEEP = b"[" * 100_000


@pytest.mark.parametrize("name", list(CALLS))
@pytest.mark.parametrize("status", [200, 400, 503])
def test_a_deeply_nested_reply_is_one_clear_error(name: str, status: int) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, content=DEEP))
    error = call(name, transport)
    assert isinstance(error, ConvaiError), repr(error)
    if status == 200:
        assert "JSON nested deeper than 64 levels" in str(error)


@pytest.mark.parametrize("operation", ["refresh", "destroy"])
def test_refresh_and_destroy_meeting_deep_json_fail_with_one_line(
    convai: EmulatorProcess, operation: str
) -> None:
    engine = Engine(stack_config(convai))
    engine.up(declare(a=turbo(model_group_name="a", display_name="A")))
    with serve_answer(http_answer(200, raw_body=DEEP)) as url:
        engine.config = hostile(convai, url)
        with pytest.raises(ProviderError) as caught:
            getattr(engine, operation)()
    assert "JSON nested deeper than 64 levels" in caught.value.details
    assert "RecursionError" not in caught.value.details
    assert list(engine.state) == ["a"]


def test_the_list_command_meeting_deep_json_prints_one_error_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with serve_answer(http_answer(200, raw_body=DEEP)) as url:
        monkeypatch.setenv("CONVAI_API_KEY", CONVAI_KEY)
        monkeypatch.setenv("CONVAI_BASE_URL", url)
        code = cli_main(["list"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("error: ")
    assert "JSON nested deeper than 64 levels" in err


@pytest.mark.parametrize("deep", ["/v1/models", "/v1/chat/completions"])
def test_the_preflight_meeting_deep_json_reports_a_failed_check(deep: str) -> None:
    answers = {
        "/v1/models": http_answer(200, {"object": "list", "data": [{"id": "llama-3.1-8b"}]}),
        "/v1/chat/completions": http_answer(200, {"choices": [{"index": 0}]}),
    }
    answers[deep] = http_answer(200, raw_body=DEEP)
    with serve_answer(answers) as url:
        report = check_endpoint(f"{url}/v1", "llama-3.1-8b", "sk-endpoint", wait=0)
    failure = report.failure
    assert failure is not None and failure.final, report.summary()


# Every call ends by its deadline, whatever the server does ---------------------------------

LIST_REPLY = {"status": "success", "models": [], "count": 0, "transactionID": "t"}


def test_a_dribbled_reply_ends_the_call_by_its_deadline() -> None:
    """One byte every 0.25 s never trips a per-read timeout; the call's deadline still holds,
    retries included (a timeout is retried while time is left)."""
    with (
        serve_answer(dribbled(http_answer(200, LIST_REPLY), 0.25)) as url,
        ConvaiClient(CONVAI_KEY, url, timeout=30, backoff=FAST_BACKOFF) as client,
        pytest.raises(ConvaiTimeoutError) as caught,
    ):
        client.list_models(deadline=time.monotonic() + 1.5)
    assert "accepted the connection but did not complete its reply in time" in str(caught.value)


def test_a_name_lookup_that_hangs_ends_the_call_by_its_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """getaddrinfo heeds no timeout: the system resolver can hold a connect for as long as it
    likes. The call returns by its deadline, before the lookup does."""
    resolver_answers = threading.Event()
    real_lookup = socket.getaddrinfo

    def stuck_lookup(*args: Any, **kwargs: Any) -> Any:
        resolver_answers.wait(30)
        return real_lookup(*args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", stuck_lookup)
    with (
        ConvaiClient(CONVAI_KEY, "http://localhost:9", timeout=30, backoff=FAST_BACKOFF) as client,
        pytest.raises(ConvaiTimeoutError, match="name lookup included"),
    ):
        client.list_models(deadline=time.monotonic() + 1)
    assert not resolver_answers.is_set()  # the call ended first
    resolver_answers.set()


def test_without_a_deadline_each_attempt_ends_within_the_request_timeout() -> None:
    with (
        serve_answer(dribbled(http_answer(200, LIST_REPLY), 0.25)) as url,
        ConvaiClient(CONVAI_KEY, url, timeout=1, max_retries=0) as client,
        pytest.raises(ConvaiTimeoutError, match=r"1\.0s allowed"),
    ):
        client.list_models()


def test_refresh_against_a_dribbling_convai_ends_by_the_operation_timeout(
    convai: EmulatorProcess,
) -> None:
    engine = Engine(stack_config(convai))
    engine.up(declare(a=turbo(model_group_name="a", display_name="A")))
    with serve_answer(dribbled(http_answer(200, LIST_REPLY), 0.25)) as url:
        engine.config = {**hostile(convai, url), "convai:operationTimeout": "2"}
        with pytest.raises(ProviderError, match="timed out"):
            engine.refresh()
    assert list(engine.state) == ["a"]


def test_the_preflight_command_ends_by_its_timeout_against_a_dribbling_endpoint() -> None:
    models = http_answer(200, {"object": "list", "data": [{"id": "llama-3.1-8b"}]})
    with serve_answer(dribbled(models, 0.25)) as url:
        done = subprocess.run(
            [
                *(sys.executable, "-m", "convai_provider", "preflight", "--base-url", f"{url}/v1"),
                *("--model", "llama-3.1-8b", "--api-key", "sk-endpoint", "--timeout", "3"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "accepted the connection but did not complete its reply in time" in done.stdout
    assert "is the server running" not in done.stdout


# What is read from any server is capped ------------------------------------------------------


def test_an_endless_convai_reply_is_cut_off_at_the_cap_and_said_so() -> None:
    with (
        serve_answer(endless()) as url,
        ConvaiClient(CONVAI_KEY, url, max_retries=0) as client,
        pytest.raises(
            UnexpectedReplyError, match=r"a reply larger than 32 MiB \(reading stopped there\)"
        ),
    ):
        client.list_models()


def test_a_reply_announcing_more_than_the_cap_is_not_read() -> None:
    answer = Answer(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n", b"{}")
    with (
        serve_answer(answer) as url,
        ConvaiClient(CONVAI_KEY, url, max_retries=0) as client,
        pytest.raises(UnexpectedReplyError, match="larger than 32 MiB"),
    ):
        client.list_models()


def test_the_cap_counts_decompressed_bytes() -> None:
    bomb = gzip.compress(b" " * (64 * MIB))
    answer = http_answer(200, raw_body=bomb, headers={"Content-Encoding": "gzip"})
    with (
        serve_answer(answer) as url,
        ConvaiClient(CONVAI_KEY, url, max_retries=0) as client,
        pytest.raises(UnexpectedReplyError, match="larger than 32 MiB"),
    ):
        client.list_models()


def test_the_cap_holds_a_list_of_ten_thousand_models() -> None:
    models = [
        {
            "model_group_name": f"group-{i:05d}-" + "g" * 52,
            "model_name": "meta-llama/Llama-3.1-70B-Instruct-" + "m" * 30,
            "display_name": f"Display {i:05d} " + "d" * 110,
            "base_url": f"https://llm-{i:05d}.inference.example.com/" + "p" * 150 + "/v1",
            "is_uncensored": False,
            "category": "Private",
            "created_at": "2025-07-08T09:41:38.123Z",
        }
        for i in range(10_000)
    ]
    body = {"status": "success", "models": models, "count": 10_000, "transactionID": "t"}
    with serve_answer(http_answer(200, body)) as url, ConvaiClient(CONVAI_KEY, url) as client:
        assert len(client.list_models().models) == 10_000


def test_an_endless_endpoint_reply_fails_the_preflight_once() -> None:
    with serve_answer({"/v1/models": endless()}) as url:
        report = check_endpoint(f"{url}/v1", "llama-3.1-8b", "sk-endpoint", wait=30)
    failure = report.failure
    assert failure is not None and failure.final and report.attempts == 1
    assert "a reply larger than 16 MiB (reading stopped there)" in failure.detail


# Messages say what actually went wrong ---------------------------------------------------------

NOT_HTTP = {
    "HTTP/0.9": Answer(b"hello, this is not HTTP\n"),
    "garbage status line": Answer(b"FOO BAR BAZ\r\nContent-Length: 0\r\n\r\n"),
}


@pytest.mark.parametrize("kind", list(NOT_HTTP))
def test_a_reply_that_is_not_http_is_called_that(kind: str) -> None:
    with serve_answer(NOT_HTTP[kind]) as url:
        report = check_endpoint(f"{url}/v1", "m", "sk-endpoint", wait=30)
        with (
            ConvaiClient(CONVAI_KEY, url, max_retries=0) as client,
            pytest.raises(ConvaiProtocolError) as caught,
        ):
            client.list_models()
    failure = report.failure
    assert failure is not None and failure.final and report.attempts == 1
    for message in (failure.detail, str(caught.value)):
        assert "answered, but not in HTTP/1.1" in message
        assert "is the server running" not in message and "could not reach" not in message


def test_a_server_that_hangs_up_without_a_reply_is_called_that() -> None:
    with serve_answer(Answer(b"")) as url:
        report = check_endpoint(f"{url}/v1", "m", "sk-endpoint", wait=0)
    failure = report.failure
    assert failure is not None
    assert "accepted the connection but closed it before its reply was complete" in failure.detail


def test_a_redirecting_endpoint_names_the_location() -> None:
    moved = http_answer(302, {}, {"Location": "https://elsewhere.example.com/v1/models"})
    with serve_answer(moved) as url:
        report = check_endpoint(f"{url}/v1", "m", "sk-endpoint", wait=0)
    failure = report.failure
    assert failure is not None and failure.final
    assert "HTTP 302, redirecting to https://elsewhere.example.com/v1/models" in failure.detail


@pytest.mark.parametrize(
    "error",
    [
        error_for_status("list", 400, "Bad field."),
        error_for_status("list", 503, "Try later.", "tx-1."),
        error_for_status("list", 401, ""),
        ConvaiConnectionError("list", "https://convai.test", "refused."),
        ConvaiTimeoutError("list", "https://convai.test", "slow."),
        ConvaiProtocolError("list", "https://convai.test", "hung up."),
        UnexpectedReplyError("list", 200, "odd."),
        RedirectError("list", 302, "to https://elsewhere.test/."),
        ConvaiOperationError("create", "model 'm'", error_for_status("register", 409, "Taken.")),
        ConvaiOperationError("create", "model 'm'", "the endpoint said no."),
    ],
    ids=repr,
)
def test_no_message_holds_two_full_stops_in_a_row(error: Exception) -> None:
    assert ".." not in str(error).replace("...", "")


def test_a_preflight_summary_is_one_sentence() -> None:
    report = check_endpoint("http://127.0.0.1:9/v1", "m", "sk-endpoint", wait=0)
    assert report.summary().endswith((".", "?")) and ".." not in report.summary()


# Undecodable replies are lost replies: retried, settled for a register, one line -----------------

LIST_JSON = b'{"status":"success","models":[],"count":0,"transactionID":"t"}'
UNDECODABLE = {
    "corrupt gzip": ({"Content-Encoding": "gzip"}, b"not gzip at all"),
    "unknown encoding": ({"Content-Encoding": "br"}, b"\x1b\x03\x00"),
    "made-up encoding": ({"Content-Encoding": "x-custom"}, LIST_JSON),
    "not UTF-8": ({}, LIST_JSON.replace(b'"t"', b'"\xff\xfe"')),
}


def undecodable(kind: str, status: int = 200) -> httpx.Response:
    headers, body = UNDECODABLE[kind]
    return httpx.Response(
        status,
        stream=httpx.ByteStream(body),
        headers={"Content-Type": "application/json", **headers},
    )


@pytest.mark.parametrize("kind", list(UNDECODABLE))
def test_an_undecodable_reply_is_retried_as_a_transport_failure(kind: str) -> None:
    transport = httpx.MockTransport(lambda request: undecodable(kind))
    with (
        ConvaiClient("k", transport=transport, max_retries=2, sleep=lambda _: None) as client,
        pytest.raises(ConvaiProtocolError) as caught,
    ):
        client.list_models()
    assert caught.value.attempts == 3 and caught.value.outcome_unknown
    assert "cannot be decoded" in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("kind", list(UNDECODABLE))
def test_a_register_answered_undecodably_then_409_is_settled_as_ours(kind: str) -> None:
    created_at = datetime.now(UTC).isoformat()  # created by this register's first attempt
    model = {"model_group_name": "g", "model_name": "m", "created_at": created_at}
    listed = {"status": "success", "models": [model]}
    conflict = {"status": "error", "message": "Model group 'g' exists", "transactionID": "t"}
    registers = [undecodable(kind), httpx.Response(409, json=conflict)]

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/llm-models/list":
            return httpx.Response(200, json=listed)
        return registers.pop(0)

    transport = httpx.MockTransport(handler)
    with ConvaiClient("k", transport=transport, sleep=lambda _: None) as client:
        assert client.register(TURBO).model_group_name == "g"


@pytest.mark.parametrize(
    ("refusal", "final"), [(409, ConflictError), (429, ConflictError), (400, BadRequestError)]
)
@pytest.mark.parametrize("kind", ["corrupt gzip", "made-up encoding"])
def test_a_refusal_whose_body_cannot_be_decoded_is_still_a_refusal(
    kind: str, refusal: int, final: type[ConvaiError]
) -> None:
    """Its status line was read: a 4xx proves nothing was written, whatever its body. So the
    409 that follows is a conflict, never this register's lost reply, even with the model listed
    exactly as declared and created just now (another stack's)."""
    created_at = datetime.now(UTC).isoformat()
    model = {"model_group_name": "g", "model_name": "m", "created_at": created_at}
    listed = {"status": "success", "models": [model]}
    conflict = {"status": "error", "message": "Model group 'g' exists", "transactionID": "t"}
    registers = [undecodable(kind, refusal), httpx.Response(409, json=conflict)]
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        if request.url.path == "/llm-models/list":
            return httpx.Response(200, json=listed)
        return registers.pop(0) if len(registers) > 1 else registers[0]

    transport = httpx.MockTransport(handler)
    with (
        ConvaiClient("k", transport=transport, sleep=lambda _: None) as client,
        pytest.raises(final) as caught,
    ):
        client.register(TURBO)
    assert not caught.value.after_lost_reply and "/llm-models/list" not in seen
    assert caught.value.attempts == (2 if refusal == 429 else 1)  # only the 429 is retried


def test_refresh_meeting_an_undecodable_convai_fails_in_one_line(convai: EmulatorProcess) -> None:
    engine = Engine(stack_config(convai))
    engine.up(declare(a=turbo(model_group_name="a", display_name="A")))
    answer = http_answer(200, headers={"Content-Encoding": "gzip"}, raw_body=b"not gzip at all")
    with serve_answer(answer) as url:
        engine.config = hostile(convai, url)
        with pytest.raises(ProviderError) as caught:
            engine.refresh()
    details = caught.value.details.strip()
    assert "cannot be decoded" in details and "Traceback" not in details
    assert len(details.splitlines()) == 1, details
    assert list(engine.state) == ["a"]
