"""HTTP calls that end by their deadline and read at most a capped number of bytes.

httpx's timeouts bound each socket operation, never a whole call: a server that sends one byte
every few seconds trips none of them and holds the call as long as it likes. Here every socket
operation of a call (connect, TLS handshake, each write, each read) may take at most the time
left before the call's deadline, so the call ends by its deadline whatever the server does, and
its connection is dropped with it. The alternatives fall short: checking the deadline between
body chunks leaves the status line and headers unbounded (httpx reads them before it returns a
response), and a worker thread with a hard cutoff returns on time but leaves the thread and its
connection hanging on the server for as long as the server likes.

The body is read in chunks up to a cap, counted after decompression: an endless or inflating
reply is an error that says so, not a process grown to gigabytes.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import httpcore
import httpx

from convai_provider.guards.text import server_text

MIB = 1 << 20

_call = threading.local()
"""The deadline (a `time.monotonic()` value) of the call this thread is making, if any, and the
first bytes its server sent (to say what came back instead of HTTP)."""

_FIRST_BYTES = 1024
"""Bytes of a reply kept to say what came back instead of HTTP; the message shows the first
`_SHOWN_CHARACTERS` of them, keys redacted (the rest lets a key the cut would split be found)."""
_SHOWN_CHARACTERS = 60


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


def _time_left(timeout: float | None, expired: type[Exception]) -> float | None:
    deadline: float | None = getattr(_call, "deadline", None)
    if deadline is None:
        return timeout
    left = deadline - time.monotonic()
    if left <= 0:
        raise expired("the call's deadline passed")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self._inner.read(max_bytes, _time_left(timeout, httpcore.ReadTimeout))
        first: bytearray | None = getattr(_call, "first_bytes", None)
        if first is not None and len(first) < _FIRST_BYTES:
            first += data[: _FIRST_BYTES - len(first)]
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _time_left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, left))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Connect:
    """A connect that returns by its deadline although the name lookup inside it does not heed
    timeouts (`getaddrinfo` waits for the system resolver). It runs in a thread of its own; one
    that finishes after the caller gave up closes what it opened."""

    def __init__(self, connect: Callable[[], httpcore.NetworkStream]) -> None:
        self._connect = connect
        self._lock = threading.Lock()
        self._abandoned = False
        self._stream: httpcore.NetworkStream | None = None
        self._error: BaseException | None = None
        self._done = threading.Event()

    def within(self, seconds: float | None, where: str) -> httpcore.NetworkStream:
        threading.Thread(target=self._run, daemon=True, name=f"connect {where}").start()
        if not self._done.wait(seconds):
            with self._lock:
                self._abandoned = True
                stream = self._stream
            if stream is not None:
                stream.close()
            raise httpcore.ConnectTimeout(
                f"connecting to {where} (name lookup included) outlasted the call's deadline"
            )
        if self._error is not None:
            raise self._error
        assert self._stream is not None
        return self._stream

    def _run(self) -> None:
        try:
            stream = self._connect()
        except BaseException as exc:
            self._error = exc
        else:
            with self._lock:
                self._stream = stream
                if self._abandoned:
                    stream.close()
        self._done.set()


class _DeadlineBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        connecting = _Connect(
            lambda: self._inner.connect_tcp(host, port, left, local_address, socket_options)
        )
        return _DeadlineStream(connecting.within(left, f"{host}:{port}"))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        left = _time_left(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.connect_unix_socket(path, left, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def bounded_client(**options: Any) -> httpx.Client:
    """An `httpx.Client` whose calls through `send` end by their deadline.

    httpx has no public hook for the network layer; its transports keep their httpcore pool in
    `_pool`, whose backend opens every connection. Transports passed in (tests' MockTransport)
    have no network and are left alone."""
    client = httpx.Client(**options)
    for transport in (client._transport, *client._mounts.values()):
        if isinstance(transport, httpx.HTTPTransport):
            pool = transport._pool
            pool._network_backend = _DeadlineBackend(pool._network_backend)
    return client


@contextmanager
def _deadline(deadline: float) -> Iterator[bytearray]:
    outer = getattr(_call, "deadline", None)
    _call.deadline = deadline if outer is None else min(outer, deadline)
    _call.first_bytes = bytearray()
    try:
        yield _call.first_bytes
    finally:
        _call.deadline = outer
        _call.first_bytes = None


def send(
    client: httpx.Client, method: str, url: str, *, seconds: float, cap: int, **options: Any
) -> httpx.Response:
    """One request that ends within `seconds`, whatever the server does, with its body read
    (at most `cap` bytes, else `ReplyTooLargeError`). Transport failures are httpx's errors."""
    with _deadline(time.monotonic() + seconds) as first_bytes:
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
                    _SHOWN_CHARACTERS,
                    more_follows=len(first_bytes) == _FIRST_BYTES,
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
