"""ConvaiClient: typed calls against the emulator, and its retry policy table-driven."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from email.utils import format_datetime

import httpx
import pytest

from convai_provider.api.access import (
    DEFAULT_CONVAI_URL,
    LIBRARY_HINTS,
    Hints,
    checked_access,
)
from convai_provider.api.client import ConvaiClient, build_request
from convai_provider.api.errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ConvaiAPIError,
    ConvaiConnectionError,
    ConvaiError,
    ConvaiTimeoutError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    ServerError,
    error_for_status,
)
from convai_provider.api.retry import Backoff, parse_retry_after
from convai_provider.api.wire import RegisterRequest, UpdateRequest
from convai_provider.emulator.process import EmulatorProcess
from convai_provider.resources.settings import PULUMI_HINTS
from convai_stack.commands.convai import CLI_HINTS
from testkit.convai import CONVAI_KEY, FAST_BACKOFF, TURBO

# Against the emulator ---------------------------------------------------------------------------


def test_register_list_update_deregister_round_trip(client: ConvaiClient) -> None:
    registered = client.register(TURBO)
    assert registered.model_group_name == "my-turbo" and registered.transactionID
    model = client.list_models().find("my-turbo")
    assert model is not None
    assert model.base_url == "https://api.openai.com/v1" and model.category == "Private"
    updated = client.update(UpdateRequest(model_group_name="my-turbo", display_name="Turbo v2"))
    assert updated.updated_fields == ["display_name"]
    client.deregister("my-turbo")
    assert client.list_models().count == 0


@pytest.mark.parametrize(
    ("action", "error", "fragment"),
    [
        (lambda c: c.register(TURBO), ConflictError, "already exists"),
        (lambda c: c.deregister("ghost"), NotFoundError, "ghost"),
        (
            lambda c: c.update(UpdateRequest(model_group_name="my-turbo")),
            BadRequestError,
            "No valid fields",
        ),
    ],
)
def test_server_refusals_become_typed_errors(
    client: ConvaiClient,
    action: Callable[[ConvaiClient], object],
    error: type[ConvaiAPIError],
    fragment: str,
) -> None:
    client.register(TURBO)
    with pytest.raises(error) as caught:
        action(client)
    assert fragment in caught.value.message
    assert caught.value.transaction_id
    assert caught.value.transaction_id in str(caught.value)


@pytest.mark.parametrize(
    ("source", "hints", "hint"),
    [
        (
            "convai:apiKey",
            PULUMI_HINTS,
            "The CONVAI-API-KEY from the stack's convai:apiKey was refused; set a valid one with "
            "`pulumi config set --secret convai:apiKey`.",
        ),
        (
            "convai:apiKey",
            LIBRARY_HINTS,
            "The CONVAI-API-KEY from the stack's convai:apiKey was refused; set a valid one.",
        ),
        (
            "CONVAI_API_KEY",
            PULUMI_HINTS,
            "The CONVAI-API-KEY from $CONVAI_API_KEY was refused; export a valid one.",
        ),
        (
            "--api-key",
            CLI_HINTS,
            "The CONVAI-API-KEY given with --api-key was refused; pass a valid one.",
        ),
    ],
)
@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_is_an_authentication_error_naming_where_the_key_came_from(
    status: int, source: str, hints: Hints, hint: str
) -> None:
    """The setting is the access's; the words for setting it again, its caller's."""
    access = checked_access(
        "revoked-key", source, DEFAULT_CONVAI_URL, "convai:baseUrl", hints, missing="none"
    )
    transport, seen = scripted([err(status)])
    with (
        ConvaiClient(access=access, transport=transport) as c,
        pytest.raises(AuthenticationError) as caught,
    ):
        c.list_models()
    assert len(seen) == 1
    assert str(caught.value).endswith(hint)


def test_a_lost_register_reply_is_recovered_without_a_duplicate(
    convai: EmulatorProcess, client: ConvaiClient
) -> None:
    convai.inject(path="/llm-models/register", drop_after_commit=True, count=1)
    reply = client.register(TURBO)
    assert reply.model_group_name == "my-turbo"
    assert client.list_models().count == 1
    assert convai.request_counts()["/llm-models/register"] == 2


def test_a_first_attempt_conflict_is_never_swallowed(
    convai: EmulatorProcess, client: ConvaiClient
) -> None:
    client.register(TURBO)
    with pytest.raises(ConflictError):
        client.register(TURBO)
    assert "/llm-models/list" not in convai.request_counts()


def test_a_retried_conflict_with_a_different_model_is_raised(
    convai: EmulatorProcess, client: ConvaiClient
) -> None:
    client.register(TURBO.model_copy(update={"model_name": "someone-elses"}))
    convai.inject(path="/llm-models/register", drop_after_commit=True, count=1)
    with pytest.raises(ConflictError):
        client.register(TURBO)
    assert convai.request_counts()["/llm-models/list"] == 1  # looked, and it was not ours


@pytest.mark.parametrize("refusal", [{"status": 429, "retry_after": "0"}, {"status": 503}])
def test_a_conflict_after_a_definite_refusal_is_never_taken_as_ours(
    convai: EmulatorProcess, client: ConvaiClient, refusal: dict[str, object]
) -> None:
    """Stack B registered the very model stack A declares; A's register is refused once (nothing
    written), then meets B's model: a conflict, never A's own lost reply."""
    client.register(TURBO)  # stack B's, identical
    convai.inject(path="/llm-models/register", count=1, **refusal)
    with pytest.raises(ConflictError) as caught:
        client.register(TURBO)
    assert caught.value.attempts == 2 and not caught.value.after_lost_reply
    assert "/llm-models/list" not in convai.request_counts()


def test_a_conflict_after_a_timed_out_register_is_settled_as_ours(convai: EmulatorProcess) -> None:
    convai.inject(path="/llm-models/register", latency_ms=1500, count=1)
    with ConvaiClient(CONVAI_KEY, convai.url, timeout=0.5, backoff=FAST_BACKOFF) as c:
        reply = c.register(TURBO)
        assert reply.model_group_name == "my-turbo"
        assert c.list_models().count == 1


@pytest.mark.parametrize(
    ("operation", "hint"),
    [
        ("deregister", "No model of that model_group_name exists in this Convai account."),
        ("update", "No model of that model_group_name exists in this Convai account."),
        ("list", "No such call there: check that base_url is Convai's API root."),
        ("register", "No such call there: check that base_url is Convai's API root."),
    ],
)
def test_a_404_blames_the_model_only_for_calls_that_name_one(operation: str, hint: str) -> None:
    error = error_for_status(operation, 404, "Not Found")
    assert isinstance(error, NotFoundError)
    assert hint in str(error)


@pytest.mark.parametrize(
    "source", ["convai:accounts.partner.baseUrl", "CONVAI_BASE_URL", "--base-url"]
)
def test_a_wrong_url_is_blamed_on_the_setting_it_came_from(source: str) -> None:
    """Not on every setting a URL might come from: the one this client's URL did."""
    access = checked_access(
        "a-fine-key-1", "CONVAI_API_KEY", DEFAULT_CONVAI_URL, source, missing=""
    )
    transport, _ = scripted([httpx.Response(404, text="Not Found")])
    with (
        ConvaiClient(access=access, transport=transport) as c,
        pytest.raises(NotFoundError) as caught,
    ):
        c.list_models()
    assert str(caught.value).endswith(
        f"No such call there: check that {source} is Convai's API root."
    )


def test_unreachable_convai_is_a_connection_error() -> None:
    with (
        ConvaiClient("k", "http://127.0.0.1:9", max_retries=1, backoff=FAST_BACKOFF) as c,
        pytest.raises(ConvaiConnectionError) as caught,
    ):
        c.list_models()
    assert "could not reach http://127.0.0.1:9" in str(caught.value)
    assert caught.value.attempts == 2


def test_a_slow_convai_times_out(convai: EmulatorProcess) -> None:
    convai.inject(path="/llm-models/list", latency_ms=1500)
    with (
        ConvaiClient(CONVAI_KEY, convai.url, timeout=0.2, max_retries=0) as c,
        pytest.raises(ConvaiTimeoutError) as caught,
    ):
        c.list_models()
    assert "timed out" in str(caught.value)


# Local validation -------------------------------------------------------------------------------


def counting_transport(calls: list[httpx.Request]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(200, json={"status": "success"})

    return httpx.MockTransport(handler)


def test_empty_identifiers_are_refused_before_sending() -> None:
    calls: list[httpx.Request] = []
    with ConvaiClient("k", transport=counting_transport(calls)) as c:
        with pytest.raises(InvalidRequestError, match="model_group_name must not be empty"):
            c.deregister("")
        with pytest.raises(InvalidRequestError, match="model_name must not be empty"):
            build_request(
                RegisterRequest,
                model_group_name="g",
                model_name="",
                api_key="k",
                is_uncensored=False,
            )
    assert calls == []


def test_an_empty_convai_key_is_refused_with_the_fix() -> None:
    for empty in ("", "  "):
        with pytest.raises(InvalidRequestError, match="pass api_key to ConvaiClient"):
            ConvaiClient(empty)


def test_the_key_header_and_json_body_are_sent() -> None:
    calls: list[httpx.Request] = []
    with ConvaiClient("the-key", "https://convai.test", transport=counting_transport(calls)) as c:
        c.deregister("g")
    (request,) = calls
    assert request.method == "POST"
    assert str(request.url) == "https://convai.test/llm-models/deregister"
    assert request.headers["CONVAI-API-KEY"] == "the-key"
    assert request.content == b'{"model_group_name":"g"}'


# Retry policy, table-driven, with sleeping patched out -------------------------------------------


def scripted(
    replies: list[httpx.Response | Exception],
) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        reply = replies[min(len(seen), len(replies)) - 1]
        if isinstance(reply, Exception):
            raise reply
        return reply

    return httpx.MockTransport(handler), seen


def err(status: int, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"status": "error", "message": f"status {status}", "transactionID": "tx-1"}
    return httpx.Response(status, json=body, headers=headers)


OK = httpx.Response(200, json={"status": "success", "models": [], "count": 0, "transactionID": "t"})


def listed_turbo(created_at: str | None = None) -> httpx.Response:
    """A list holding TURBO exactly as declared, created at `created_at` (default: now)."""
    model = TURBO.model_dump(exclude={"api_key"}, exclude_none=True)
    model["created_at"] = created_at if created_at is not None else _iso(datetime.now(UTC))
    body = {"status": "success", "models": [model], "count": 1, "transactionID": "t"}
    return httpx.Response(200, json=body)


def _iso(when: datetime) -> str:
    return when.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("first", "ours"),
    [
        (err(429), False),
        (err(503), False),
        (err(500), False),
        (httpx.Response(429, text="<html>slow down</html>"), False),
        (httpx.ConnectError("refused"), False),
        (httpx.ConnectTimeout("no answer"), False),
        (httpx.Response(502, text="<html>Bad Gateway</html>"), True),
        (httpx.ReadTimeout("slow"), True),
        (httpx.WriteTimeout("slow"), True),
        (httpx.RemoteProtocolError("peer closed"), True),
        (httpx.ReadError("reset"), True),
    ],
)
def test_a_retried_409_is_ours_only_after_an_attempt_of_unknown_outcome(
    first: httpx.Response | Exception, ours: bool
) -> None:
    replies: dict[str, list[httpx.Response | Exception]] = {
        "/llm-models/register": [first, err(409)],
        "/llm-models/list": [listed_turbo()],
    }
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        script = replies[request.url.path]
        reply = script.pop(0) if len(script) > 1 else script[0]
        if isinstance(reply, Exception):
            raise reply
        return reply

    transport = httpx.MockTransport(handler)
    with ConvaiClient("k", transport=transport, sleep=lambda _: None) as c:
        if ours:
            assert c.register(TURBO).model_group_name == TURBO.model_group_name
        else:
            with pytest.raises(ConflictError):
                c.register(TURBO)
    assert seen.count("/llm-models/list") == (1 if ours else 0)


def created_at(seconds_ago: float, zone: str = "Z") -> str:
    """Convai's `created_at` for `seconds_ago` before now, written with `zone`: `Z`, an offset
    such as `+02:00` (the time shown in that zone), or `naive` (no zone at all)."""
    hours = 0 if zone in ("Z", "naive") else int(zone[:3])
    when = datetime.now(timezone(timedelta(hours=hours))) - timedelta(seconds=seconds_ago)
    iso = when.replace(tzinfo=None).isoformat(timespec="milliseconds")
    return iso if zone == "naive" else iso + zone


@pytest.mark.parametrize(
    ("seconds_ago", "zone", "ours"),
    [
        (0, "Z", True),
        (200, "Z", True),  # within the skew Convai's clock may have
        (0, "naive", True),  # no zone: UTC, as Convai writes it
        (0, "+00:00", True),
        (0, "+02:00", True),
        (3600, "Z", False),  # there an hour before this register began
        (3600, "+02:00", False),  # its digits read as UTC would look an hour ahead
        (86400 * 500, "Z", False),
    ],
)
def test_a_model_created_before_the_register_began_is_never_its_lost_reply(
    seconds_ago: float, zone: str, ours: bool
) -> None:
    """Stack B's identical model, created before stack A's register began: A's first attempt
    timed out (and wrote nothing), its retry meets B's model. Exactly as declared, but created
    too early to be A's: a conflict, never A's own lost reply."""
    assert_settled(created_at(seconds_ago, zone), ours)


@pytest.mark.parametrize("unreadable", ["", "yesterday", "2026-13-45T99:00:00Z"])
def test_a_model_without_a_readable_creation_time_is_never_a_lost_reply(unreadable: str) -> None:
    """Nothing proves it is this register's: a conflict."""
    assert_settled(unreadable, ours=False)


def assert_settled(created: str, ours: bool) -> None:
    transport, _ = scripted([httpx.ReadTimeout("slow"), err(409)])
    listing = ConvaiClient("k", transport=httpx.MockTransport(lambda _: listed_turbo(created)))
    with ConvaiClient("k", transport=transport, sleep=lambda _: None) as c, listing:
        if ours:
            assert c.register(TURBO, listed=lambda g: listing.list_models().find(g)) is not None
        else:
            with pytest.raises(ConflictError):
                c.register(TURBO, listed=lambda g: listing.list_models().find(g))


def test_an_identical_model_older_than_a_timed_out_register_is_a_conflict(
    convai: EmulatorProcess,
) -> None:
    """Against the emulator: B's model is there; A's register times out (the emulator answers
    409 late: nothing written), A's retry meets 409. A's register began an hour after B's model
    was created (A's wall clock an hour ahead stands for an hour passing)."""
    with ConvaiClient(CONVAI_KEY, convai.url) as b:
        b.register(TURBO)
    convai.inject(path="/llm-models/register", latency_ms=1500, count=1)
    later = ConvaiClient(
        CONVAI_KEY,
        convai.url,
        timeout=0.5,
        backoff=FAST_BACKOFF,
        wall_clock=lambda: datetime.now(UTC).timestamp() + 3600,
    )
    with later as a, pytest.raises(ConflictError) as caught:
        a.register(TURBO)
    assert caught.value.after_lost_reply


@pytest.mark.parametrize(
    ("first", "retried"),
    [
        (err(400), False),
        (err(401), False),
        (err(404), False),
        (err(409), False),
        (err(429), True),
        (err(500), True),
        (err(502), True),
        (err(503), True),
        (err(504), True),
        (httpx.ConnectError("refused"), True),
        (httpx.ReadTimeout("slow"), True),
        (httpx.RemoteProtocolError("peer closed"), True),
    ],
)
def test_which_failures_are_retried(first: httpx.Response | Exception, retried: bool) -> None:
    transport, seen = scripted([first, OK])
    sleeps: list[float] = []
    with ConvaiClient("k", transport=transport, sleep=sleeps.append) as c:
        if retried:
            c.list_models()
        else:
            with pytest.raises(ConvaiAPIError):
                c.list_models()
    assert len(seen) == (2 if retried else 1)
    assert len(sleeps) == (1 if retried else 0)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("3", 3.0),
        ("0.5", 0.5),
        ("600", 60.0),  # capped
        (timedelta(seconds=20), 20.0),
        (timedelta(seconds=-20), 0.0),
    ],
)
def test_retry_after_is_honoured_up_to_its_cap(header: str | timedelta, expected: float) -> None:
    if isinstance(header, timedelta):
        header = format_datetime(datetime.now(UTC) + header, usegmt=True)
    transport, _ = scripted([err(429, {"Retry-After": header}), OK])
    sleeps: list[float] = []
    with ConvaiClient("k", transport=transport, sleep=sleeps.append) as c:
        c.list_models()
    assert sleeps[0] == pytest.approx(expected, abs=1.5)


def test_a_retry_after_date_is_dated_on_the_clients_wall_clock() -> None:
    """The injected wall clock, not the machine's: a client (or a test) that runs on its own clock
    waits what the header says relative to it."""
    pretend_now = datetime(2030, 1, 1, tzinfo=UTC)
    header = format_datetime(pretend_now + timedelta(seconds=25), usegmt=True)
    transport, _ = scripted([err(429, {"Retry-After": header}), OK])
    sleeps: list[float] = []
    with ConvaiClient(
        "k", transport=transport, sleep=sleeps.append, wall_clock=pretend_now.timestamp
    ) as c:
        c.list_models()
    assert sleeps[0] == pytest.approx(25.0)


def test_an_unparseable_retry_after_falls_back_to_backoff() -> None:
    assert parse_retry_after("soon") is None
    transport, _ = scripted([err(503, {"Retry-After": "soon"}), OK])
    sleeps: list[float] = []
    with ConvaiClient(
        "k", transport=transport, sleep=sleeps.append, backoff=Backoff(initial=1.0)
    ) as c:
        c.list_models()
    assert 0.75 <= sleeps[0] <= 1.0


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    backoff = Backoff(initial=0.5, maximum=8.0)
    for retries_done, nominal in [(0, 0.5), (1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = {backoff.delay(retries_done) for _ in range(50)}
        assert all(0.75 * nominal <= d <= nominal for d in delays)
        assert len(delays) > 1


def test_retries_stop_at_max_retries_with_the_last_error() -> None:
    transport, seen = scripted([err(503)])
    sleeps: list[float] = []
    with (
        ConvaiClient("k", max_retries=3, transport=transport, sleep=sleeps.append) as c,
        pytest.raises(ServerError) as caught,
    ):
        c.list_models()
    assert len(seen) == 4 and len(sleeps) == 3
    assert caught.value.attempts == 4
    assert "HTTP 503" in str(caught.value) and "tx-1" in str(caught.value)


def test_retries_stop_when_the_deadline_would_pass() -> None:
    transport, seen = scripted([err(429, {"Retry-After": "30"})])
    now = [100.0]
    with (
        ConvaiClient("k", transport=transport, sleep=lambda s: None, clock=lambda: now[0]) as c,
        pytest.raises(RateLimitError),
    ):
        c.list_models(deadline=110.0)
    assert len(seen) == 1


def test_a_non_json_error_page_still_gives_a_readable_error() -> None:
    transport, _ = scripted([httpx.Response(502, text="<html>Bad gateway</html>")])
    with (
        ConvaiClient("k", max_retries=0, transport=transport) as c,
        pytest.raises(ServerError, match="Bad gateway"),
    ):
        c.list_models()


def test_replies_tolerate_fields_added_later() -> None:
    reply = {
        "status": "success",
        "models": [{"model_group_name": "g", "model_name": "m", "region": "eu"}],
        "count": 1,
        "transactionID": "t",
        "next_page": None,
    }
    transport, _ = scripted([httpx.Response(200, json=reply)])
    with ConvaiClient("k", transport=transport) as c:
        assert c.list_models().models[0].model_extra == {"region": "eu"}


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (404, NotFoundError),
        (409, ConflictError),
        (429, RateLimitError),
        (500, ServerError),
        (503, ServerError),
        (418, ConvaiAPIError),
    ],
)
def test_one_function_maps_status_to_error(status: int, cls: type[ConvaiAPIError]) -> None:
    error = error_for_status("list", status, "why", "tx")
    assert type(error) is cls
    assert str(error).startswith(f"Convai list failed with HTTP {status}: why, transactionID tx.")


LIBRARY_CALLER_FAILURES = {
    "no key": ("", err(401)),
    "padded key": ("revoked-key ", err(401)),
    "refused key": ("revoked-key", err(401)),
    "no such call": ("a-fine-key-1", httpx.Response(404, text="Not Found")),
    "not Convai's reply": ("a-fine-key-1", httpx.Response(200, text="<html>portal</html>")),
    "redirect": ("a-fine-key-1", httpx.Response(302, headers={"location": "/elsewhere"})),
    "unreachable": ("a-fine-key-1", httpx.ConnectError("refused")),
    "timed out": ("a-fine-key-1", httpx.ReadTimeout("slow")),
}


@pytest.mark.parametrize(
    ("key", "reply"), list(LIBRARY_CALLER_FAILURES.values()), ids=list(LIBRARY_CALLER_FAILURES)
)
def test_a_library_caller_is_told_about_its_arguments_never_a_pulumi_setting_or_a_flag(
    key: str, reply: httpx.Response | Exception
) -> None:
    """Whatever goes wrong for a caller of `ConvaiClient`, the words name its own arguments
    (api_key, base_url): a library user has no stack to run `pulumi config set` on, no
    convai:baseUrl and no --base-url."""
    transport, _ = scripted([reply])
    with pytest.raises((InvalidRequestError, ConvaiError)) as caught:
        ConvaiClient(key, transport=transport, max_retries=0).list_models()
    said = str(caught.value)
    assert any(argument in said for argument in ("api_key", "base_url", "raise timeout"))
    assert "pulumi" not in said.lower() and "convai:" not in said and "--" not in said


@pytest.mark.parametrize(
    ("hints", "ending"),
    [
        (PULUMI_HINTS, "run again, or raise convai:requestTimeout."),
        (CLI_HINTS, "Convai may be slow or unreachable; run again."),
        (LIBRARY_HINTS, "run again, or raise timeout."),
    ],
)
def test_a_timed_out_call_names_what_raises_the_timeout_in_its_callers_words(
    hints: Hints, ending: str
) -> None:
    """The commands' requests have a fixed time: they were told to raise convai:requestTimeout,
    a setting only the provider reads."""
    access = checked_access("a-fine-key-1", "k", DEFAULT_CONVAI_URL, "u", hints, missing="")
    transport, _ = scripted([httpx.ReadTimeout("slow")])
    with (
        ConvaiClient(access=access, transport=transport, max_retries=0) as c,
        pytest.raises(ConvaiTimeoutError) as caught,
    ):
        c.list_models()
    assert str(caught.value).endswith(ending)


def test_a_client_takes_a_key_and_url_or_an_access_never_both() -> None:
    """An access carries its own URL: a base_url beside it would be silently ignored."""
    access = checked_access("a-fine-key-1", "k", DEFAULT_CONVAI_URL, "u", LIBRARY_HINTS, missing="")
    with pytest.raises(TypeError, match="either api_key"):
        ConvaiClient(base_url="https://elsewhere.example/", access=access)
    with pytest.raises(TypeError, match="either api_key"):
        ConvaiClient("a-fine-key-1", access=access)
    with pytest.raises(TypeError, match="needs api_key"):
        ConvaiClient()
    assert ConvaiClient(access=access).base_url == access.base_url
