"""HTTP calls that end by their deadline and read at most a capped number of bytes.

A call's deadline bounds every socket operation it makes (`guards.deadline_transport`): the call
ends by its deadline whatever the server does, and its connection is dropped with it.

The body is read in chunks up to a cap, counted after decompression: an endless or inflating
reply is an error that says so, not a process grown to gigabytes.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from convai_provider.guards.deadline_transport import (
    FIRST_BYTES,
    DeadlineTransport,
    call_deadline,
    environment_mounts,
)
from convai_provider.guards.text import server_text

MIB = 1 << 20

_SHOWN_OF_NOT_HTTP = 60
"""Characters shown of the FIRST_BYTES a server sent instead of HTTP, keys redacted (the rest
lets a key the cut would split be found)."""


DECODABLE_ENCODINGS = frozenset({"identity", "gzip", "deflate", "x-gzip"})
"""Content-Encodings a reply may use: httpx decodes these; any other it would pass through
undecoded, as if the compressed bytes were the body."""


class UndecodableReplyError(httpx.TransportError):
    """A reply whose body cannot be decoded (a Content-Encoding we cannot undo, a corrupt one, or
    text that is not UTF-8): as good as lost, since what it said cannot be known."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code
        """The reply's status, which was read: a refusal (4xx) is one whatever its body says."""


class ReplyTooLargeError(Exception):
    """A reply body longer than the cap; reading stopped there."""

    def __init__(self, cap: int, status_code: int) -> None:
        self.cap = cap
        self.status_code = status_code
        super().__init__(f"a reply larger than {size(cap)} (reading stopped there)")


def size(count: int) -> str:
    return f"{count / MIB:g} MiB" if count >= MIB else f"{count} bytes"


def bounded_client(*, transport: httpx.BaseTransport | None = None, **options: Any) -> httpx.Client:
    """An `httpx.Client` whose calls through `send` end by their deadline, through the proxies
    the environment names (unless `trust_env=False`, as for httpx). A transport passed in (tests'
    MockTransport) has no network to bound and is used as it is (httpx then ignores the
    environment's proxies too)."""
    if transport is not None:
        return httpx.Client(transport=transport, **options)
    trust_env = bool(options.get("trust_env", True))
    return httpx.Client(
        transport=DeadlineTransport(trust_env=trust_env),
        mounts=environment_mounts() if trust_env else {},
        **options,
    )


def send(
    client: httpx.Client, method: str, url: str, *, seconds: float, cap: int, **options: Any
) -> httpx.Response:
    """One request that ends within `seconds`, whatever the server does, with its body read
    (at most `cap` bytes, else `ReplyTooLargeError`). Transport failures are httpx's errors."""
    with call_deadline(time.monotonic() + seconds) as first_bytes:
        try:
            with client.stream(method, url, timeout=seconds, **options) as streamed:
                _refuse_unknown_encoding(streamed)
                try:
                    body = _read_capped(streamed, cap)
                except httpx.DecodingError as exc:
                    raise UndecodableReplyError(
                        f"its {streamed.headers.get('content-encoding')} body is corrupt: {exc}",
                        streamed.status_code,
                    ) from None
        except httpx.RemoteProtocolError as exc:
            if first_bytes and "without sending a response" in str(exc):
                # h11 read bytes but no status line in them (HTTP/0.9, another protocol).
                sent = server_text(
                    first_bytes.decode("latin-1"),
                    _SHOWN_OF_NOT_HTTP,
                    more_follows=len(first_bytes) == FIRST_BYTES,
                )
                raise httpx.RemoteProtocolError(
                    f"no HTTP status line in what it sent: '{sent}'"
                ) from None
            raise
    headers = streamed.headers.copy()
    for decoded in ("content-encoding", "transfer-encoding", "content-length"):
        headers.pop(decoded, None)  # the body is whole and decoded
    extensions = {k: v for k, v in streamed.extensions.items() if k != "network_stream"}
    return httpx.Response(
        streamed.status_code,
        headers=headers,
        content=body,
        request=streamed.request,
        extensions=extensions,
    )


def _refuse_unknown_encoding(response: httpx.Response) -> None:
    encoding = response.headers.get("content-encoding", "")
    unknown = [
        token.strip()
        for token in encoding.lower().split(",")
        if token.strip() and token.strip() not in DECODABLE_ENCODINGS
    ]
    if unknown:
        raise UndecodableReplyError(
            f"its body is in Content-Encoding {', '.join(unknown)}", response.status_code
        )


def _read_capped(response: httpx.Response, cap: int) -> bytes:
    announced = response.headers.get("content-length", "")
    if announced.isdigit() and int(announced) > cap:
        raise ReplyTooLargeError(cap, response.status_code)
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > cap:
            raise ReplyTooLargeError(cap, response.status_code)
    return bytes(body)


def what_went_wrong(exc: httpx.TransportError) -> str:
    """What a transport failure means, in words that do not blame the network when a
    connection was made: `{url} ` + this reads as a sentence."""
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, UndecodableReplyError):
        return f"answered with a reply that cannot be decoded ({exc})"
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        return f"did not accept a connection in time ({detail})"
    if isinstance(exc, httpx.TimeoutException):
        return f"accepted the connection but did not complete its reply in time ({detail})"
    if isinstance(exc, httpx.RemoteProtocolError):
        text = str(exc).lower()
        if "disconnected" in text or "peer closed" in text or "incomplete" in text:
            return f"accepted the connection but closed it before its reply was complete ({detail})"
        return f"answered, but not in HTTP/1.1 ({detail}); is that port an HTTP API?"
    if isinstance(exc, httpx.ReadError | httpx.WriteError):
        return f"accepted the connection but it broke before the reply was complete ({detail})"
    return f"could not be connected to ({detail})"
