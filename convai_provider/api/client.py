"""A typed, retrying client for Convai's `/llm-models/*` and `/character/*` calls."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from convai_provider.api.access import (
    API_KEY_ARGUMENT,
    BASE_URL_ARGUMENT,
    DEFAULT_CONVAI_URL,
    ConvaiAccess,
    ConvaiKeyError,
    ConvaiURLError,
    checked_access,
)
from convai_provider.api.errors import (
    AuthenticationError,
    ConflictError,
    ConvaiAPIError,
    ConvaiConnectionError,
    ConvaiError,
    ConvaiProtocolError,
    ConvaiTimeoutError,
    InvalidRequestError,
    RedirectError,
    UnexpectedReplyError,
    error_for_status,
)
from convai_provider.api.matching import matches
from convai_provider.api.retry import Backoff, is_retryable_status, parse_retry_after
from convai_provider.api.wire import (
    API_KEY_HEADER,
    CHARACTER_GET_PATH,
    CHARACTER_PATH_PREFIX,
    CHARACTER_UPDATE_PATH,
    DEREGISTER_PATH,
    LIST_PATH,
    REGISTER_PATH,
    UPDATE_PATH,
    Character,
    CharacterGetRequest,
    CharacterUpdateRequest,
    CharacterUpdateResponse,
    DeregisterRequest,
    DeregisterResponse,
    ListResponse,
    PrivateModel,
    RegisterRequest,
    RegisterResponse,
    UpdateRequest,
    UpdateResponse,
    paging_headers,
)
from convai_provider.guards.bounded_http import (
    MIB,
    ReplyTooLargeError,
    UndecodableReplyError,
    bounded_client,
    send,
    what_went_wrong,
)
from convai_provider.guards.documents import DocumentError, parse_json
from convai_provider.guards.durations import retries, seconds
from convai_provider.guards.text import server_text
from convai_provider.guards.validation import describe_validation_error, field_problems

DEFAULT_TIMEOUT = 30.0
DEFAULT_MAX_RETRIES = 5
REPLY_CAP = 32 * MIB
"""Bytes read from one Convai reply at most: a list of 10,000 models takes a fraction of it."""
_SHOWN_OF_A_REPLY = 120
"""Characters of an unexpected reply's body an error quotes."""
CLOCK_SKEW = 300.0
"""Seconds Convai's clock may trail ours. A model Convai says it created longer than this before
a register began is another's, however exactly it matches: never that register's lost reply."""

RequestT = TypeVar("RequestT", bound=BaseModel)
ReplyT = TypeVar("ReplyT", bound=BaseModel)


def build_request(model: type[RequestT], **fields: Any) -> RequestT:
    """Validate a request locally, so a bad field never costs a round trip."""
    try:
        return model(**fields)
    except ValidationError as exc:
        raise InvalidRequestError(describe_validation_error(exc)) from None


class ConvaiClient:
    """One method per endpoint; errors are `ConvaiError`s; transient failures are retried.

    Thread-safe: one client may serve many threads. `deadline` (a `time.monotonic()` value) bounds
    a whole call, retries and waits included.
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str = DEFAULT_CONVAI_URL,
        timeout: float = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        *,
        access: ConvaiAccess | None = None,
        backoff: Backoff | None = None,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """`api_key` and `base_url`: checked here before anything is sent; or, instead of
        both, `access`: the `ConvaiAccess` of an account (`api.resolver`), already checked, whose
        key and URL are used as they are and whose settings the errors name. `wall_clock`:
        seconds since the epoch, to compare with Convai's `created_at`."""
        if access is not None and (api_key is not None or base_url != DEFAULT_CONVAI_URL):
            raise TypeError("give ConvaiClient either api_key (and base_url) or access, not both")
        if access is None:
            if api_key is None:
                raise TypeError("ConvaiClient needs api_key (or access)")
            access = _given_access(api_key, base_url)
        self.access = access
        self.base_url = self.access.base_url
        try:
            self.timeout = seconds(timeout, "timeout", zero_ok=False)
            self.max_retries = retries(max_retries, "max_retries")
        except ValueError as exc:
            raise InvalidRequestError(f"{exc}.") from None
        self._backoff = backoff or Backoff()
        self._sleep = sleep
        self._clock = clock
        self._wall_clock = wall_clock
        self._http = bounded_client(
            base_url=self.base_url,
            timeout=timeout,
            headers={API_KEY_HEADER: self.access.api_key, "Content-Type": "application/json"},
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ConvaiClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def register(
        self,
        request: RegisterRequest,
        *,
        deadline: float | None = None,
        listed: Callable[[str], PrivateModel | None] | None = None,
    ) -> RegisterResponse:
        """Register a model; a lost reply followed by a retry never yields a duplicate or an error.

        When a retried register meets 409, the earlier attempt may have succeeded unseen: the
        model is looked up with `listed` (by default, a list call made now), and one listed
        exactly as sent, and created since this call began, counts as this call's success.
        `ConvaiAccount` passes its shared listing.
        """
        began = datetime.fromtimestamp(self._wall_clock(), UTC)
        try:
            return self._call(
                "register", REGISTER_PATH, request.to_body(), RegisterResponse, deadline
            )
        except ConflictError as conflict:
            if not conflict.after_lost_reply:
                # A first attempt's 409, or one after replies proving nothing was written (a 429,
                # a 503, any Convai error): the model was there before this call.
                raise
            find = listed or (lambda group: self.list_models(deadline=deadline).find(group))
            live = find(request.model_group_name)
            if live is None or not matches(live, request) or not _created_since(live, began):
                raise
            return RegisterResponse(
                status="success",
                model_group_name=live.model_group_name,
                model_name=live.model_name,
                display_name=live.display_name,
                message=f"Model '{live.model_group_name}' registered successfully",
            )

    def update(self, request: UpdateRequest, *, deadline: float | None = None) -> UpdateResponse:
        return self._call("update", UPDATE_PATH, request.to_body(), UpdateResponse, deadline)

    def deregister(
        self, model_group_name: str, *, deadline: float | None = None
    ) -> DeregisterResponse:
        request = build_request(DeregisterRequest, model_group_name=model_group_name)
        return self._call(
            "deregister", DEREGISTER_PATH, request.to_body(), DeregisterResponse, deadline
        )

    def list_models(self, *, deadline: float | None = None) -> ListResponse:
        return self._call("list", LIST_PATH, None, ListResponse, deadline)

    def get_character(self, char_id: str, *, deadline: float | None = None) -> Character:
        """The character as Convai reports it. A reply about another character (a cache that
        ignores the request's body answers every ID alike) is not understood: its model would be
        taken for this character's."""
        request = build_request(CharacterGetRequest, charID=char_id)
        character = self._call(
            "character get", CHARACTER_GET_PATH, request.to_body(), Character, deadline
        )
        if character.character_id != char_id:
            raise UnexpectedReplyError(
                "character get",
                200,
                f"it describes character {server_text(character.character_id)!r}, not the "
                f"{server_text(char_id)!r} asked for",
            )
        return character

    def set_character_model(
        self, char_id: str, model_group_name: str, *, deadline: float | None = None
    ) -> CharacterUpdateResponse:
        """Point a character at a model: a built-in code or a private model's group name."""
        request = build_request(
            CharacterUpdateRequest, charID=char_id, model_group_name=model_group_name
        )
        return self._call(
            "character update",
            CHARACTER_UPDATE_PATH,
            request.to_body(),
            CharacterUpdateResponse,
            deadline,
        )

    def _call(
        self,
        call: str,
        path: str,
        body: dict[str, Any] | None,
        reply: type[ReplyT],
        deadline: float | None,
    ) -> ReplyT:
        retries_done = 0
        lost_reply = False
        while True:
            try:
                response = self._post(call, path, body, deadline)
                return self._parse(call, path, response, reply)
            except ConvaiError as failure:
                self._name_settings(failure)
                failure.attempts = retries_done + 1
                failure.after_lost_reply = lost_reply
                lost_reply = lost_reply or failure.outcome_unknown
                delay = self._retry_delay(failure, retries_done, deadline)
                if delay is None:
                    raise
            self._sleep(delay)
            retries_done += 1

    def _post(
        self, call: str, path: str, body: dict[str, Any] | None, deadline: float | None
    ) -> httpx.Response:
        seconds = self._request_timeout(call, deadline)
        try:
            return send(self._http, "POST", path, seconds=seconds, cap=REPLY_CAP, json=body)
        except ReplyTooLargeError as exc:
            raise UnexpectedReplyError(
                call, exc.status_code, f"{exc}, more than any Convai reply holds"
            ) from None
        except httpx.TimeoutException as exc:
            raise ConvaiTimeoutError(
                call,
                self.base_url,
                f"the server {what_went_wrong(exc)}; {seconds:.1f}s allowed",
                outcome_unknown=not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout),
            ) from None
        except UndecodableReplyError as exc:
            if 400 <= exc.status_code < 500:
                # A refusal whatever its body said: nothing was written (a 409 stays a conflict).
                raise error_for_status(call, exc.status_code, what_went_wrong(exc)) from None
            raise ConvaiProtocolError(
                call, self.base_url, what_went_wrong(exc), outcome_unknown=True
            ) from None
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            raise ConvaiProtocolError(
                call, self.base_url, what_went_wrong(exc), outcome_unknown=True
            ) from None
        except httpx.TransportError as exc:
            raise ConvaiConnectionError(
                call, self.base_url, f"{type(exc).__name__}: {exc}"
            ) from None

    def _request_timeout(self, call: str, deadline: float | None) -> float:
        if deadline is None:
            return self.timeout
        remaining = deadline - self._clock()
        if remaining <= 0:
            raise ConvaiTimeoutError(
                call, self.base_url, "the operation's time budget ran out before it finished"
            )
        return min(self.timeout, remaining)

    def _parse(self, call: str, path: str, response: httpx.Response, reply: type[ReplyT]) -> ReplyT:
        if 300 <= response.status_code < 400:
            raise RedirectError(call, response.status_code, _redirect_target(response))
        if response.status_code < 300 and not _is_utf8(response.content):
            # What a success said cannot be read: for a register, as if its reply were lost.
            raise ConvaiProtocolError(
                call,
                self.base_url,
                "answered with a reply that cannot be decoded (its body is not UTF-8)",
                outcome_unknown=True,
            )
        payload, unreadable = _json_payload(response)
        if response.status_code >= 400 or (
            isinstance(payload, dict) and payload.get("status") == "error"
        ):
            raise self._api_error(call, path, response, payload)
        if not isinstance(payload, dict):
            raise UnexpectedReplyError(
                call,
                response.status_code,
                f"{unreadable or 'not a JSON object'}; {describe_reply(response)}",
            )
        try:
            parsed = reply.model_validate(payload)
        except ValidationError as exc:
            problems = "; ".join(f"{f} {reason}" for f, reason in field_problems(exc))
            raise UnexpectedReplyError(
                call, response.status_code, f"{problems}; {describe_reply(response)}"
            ) from None
        if isinstance(parsed, ListResponse):
            paged = paging_headers(response.headers, len(parsed.models))
            if paged:
                raise UnexpectedReplyError(
                    call,
                    response.status_code,
                    f"it is paged ({server_text(', '.join(paged), 200)}), and Convai's list is "
                    "documented whole: not the whole account",
                )
        return parsed

    def _api_error(
        self, call: str, path: str, response: httpx.Response, payload: Any
    ) -> ConvaiAPIError:
        if isinstance(payload, dict):
            message = server_text(
                payload.get("message") or payload.get("ERROR") or payload.get("API_ERROR") or ""
            )
            transaction_id = server_text(payload.get("transactionID") or "", 100)
        else:
            message, transaction_id = server_text(response.text.strip(), 200), ""
        status = response.status_code if response.status_code >= 400 else 400
        # A Retry-After given as a date is dated on the client's own clock, as its other waits.
        now = datetime.fromtimestamp(self._wall_clock(), UTC)
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
        return error_for_status(
            call,
            status,
            message,
            transaction_id,
            retry_after,
            envelope=is_error_envelope(path, payload),
        )

    def _name_settings(self, failure: ConvaiError) -> None:
        """What a failure's hint names: the settings this client's URL and key came from, and
        its caller's words for setting a key."""
        failure.url_setting = self.access.url_source
        if isinstance(failure, AuthenticationError):
            failure.key_source = self.access.key_source
            failure.hints = self.access.hints
        if isinstance(failure, ConvaiTimeoutError):
            failure.timeout_setting = self.access.hints.request_timeout

    def _retry_delay(
        self, failure: ConvaiError, retries_done: int, deadline: float | None
    ) -> float | None:
        """Seconds to wait before the next attempt, or None when this failure is final."""
        if isinstance(failure, ConvaiAPIError):
            if not is_retryable_status(failure.status_code):
                return None
            retry_after = failure.retry_after
        elif isinstance(failure, ConvaiConnectionError):
            retry_after = None
        else:
            return None
        if retries_done >= self.max_retries:
            return None
        delay = self._backoff.delay(retries_done, retry_after)
        if deadline is not None and self._clock() + delay >= deadline:
            return None
        return delay


def _given_access(api_key: str, base_url: str) -> ConvaiAccess:
    """The access of a client built from its arguments: a library caller, who is told about
    them and nothing else (the client reads neither a stack's config nor the environment)."""
    try:
        return checked_access(
            api_key,
            API_KEY_ARGUMENT,
            base_url,
            BASE_URL_ARGUMENT,
            missing=f"No Convai API key: pass {API_KEY_ARGUMENT} to ConvaiClient.",
        )
    except (ConvaiKeyError, ConvaiURLError) as exc:
        raise InvalidRequestError(str(exc)) from None


def is_error_envelope(path: str, payload: Any) -> bool:
    """Whether an error reply is Convai's own shape for the call: `{"status": "error",
    "message": ..., "transactionID": ...}` for `/llm-models/*`, `{"ERROR": ...}` for the
    character calls. A proxy's page, a wrong URL's or a framework's default 404 is not."""
    if not isinstance(payload, dict):
        return False
    if path.startswith(CHARACTER_PATH_PREFIX):
        return len(payload) == 1 and isinstance(payload.get("ERROR", payload.get("API_ERROR")), str)
    return (
        payload.get("status") == "error"
        and isinstance(payload.get("message"), str)
        and isinstance(payload.get("transactionID"), str)
        and bool(payload["transactionID"])
    )


def describe_reply(response: httpx.Response) -> str:
    """What came back, in a few words: for an error that says what the server sent instead."""
    kind = response.headers.get("content-type") or "no content type"
    text = server_text(response.content.decode("utf-8", "replace"), _SHOWN_OF_A_REPLY)
    return f"it sent {len(response.content)} bytes ({server_text(kind, 100)}): '{text}'"


def _created_since(live: PrivateModel, began: datetime) -> bool:
    """Whether Convai's `created_at` allows that the model was created by a register that began
    at `began` (on our clock, which Convai's may trail by up to `CLOCK_SKEW`). A model created
    before, or one whose creation time cannot be read, is not that register's own."""
    created = live.created()
    return created is not None and created >= began - timedelta(seconds=CLOCK_SKEW)


def _redirect_target(response: httpx.Response) -> str:
    location = response.headers.get("location")
    if not location:
        return "without saying where (no Location header)"
    return f"to {response.url.join(location)}"


def _is_utf8(content: bytes) -> bool:
    try:
        content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _json_payload(response: httpx.Response) -> tuple[Any, str]:
    """The reply's JSON, or None and why it could not be read ('' for an empty body)."""
    if not response.content.strip():
        return None, ""
    try:
        return parse_json(response.content), ""
    except DocumentError as exc:
        return None, str(exc)
