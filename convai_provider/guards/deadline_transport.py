"""An httpx transport whose every socket operation ends by the deadline of the call it serves.

httpx's timeouts bound each socket operation, never a whole call: a server that sends one byte
every few seconds trips none of them and holds the call as long as it likes. Here every socket
operation of a call (connect, TLS handshake, each write, each read) may take at most the time
left before the call's deadline, so the call ends by its deadline whatever the server does, and
its connection is dropped with it. The alternatives fall short: checking the deadline between
body chunks leaves the status line and headers unbounded (httpx reads them before it returns a
response), and a worker thread with a hard cutoff returns on time but leaves the thread and its
connection hanging on the server for as long as the server likes.

Built on public extension points only, so an httpx or httpcore upgrade cannot silently unbound
a call: httpcore's `network_backend` parameter of its connection pools (our backend wraps the
sockets it opens), httpx's `BaseTransport` (ours hands requests to that pool, as httpx's own
`HTTPTransport` does with one it builds and keeps to itself), and `httpx.Client(transport=...,
mounts=...)`, with a mount per proxy the environment names, as httpx would mount for a client
without a transport of its own.
"""

from __future__ import annotations

import ipaddress
import ssl
import threading
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypedDict

import httpcore
import httpx

_call = threading.local()
"""The deadline (a `time.monotonic()` value) of the call this thread is making, if any, and the
first bytes its server sent (to say what came back instead of HTTP)."""

FIRST_BYTES = 1024
"""Bytes of a reply kept to say what came back instead of HTTP."""


class _PoolLimits(TypedDict):
    max_connections: int
    max_keepalive_connections: int
    keepalive_expiry: float


POOL_LIMITS: _PoolLimits = {
    "max_connections": 100,
    "max_keepalive_connections": 20,
    "keepalive_expiry": 5.0,
}
"""The pool limits of a default httpx client (`httpx.Limits`), kept for ours."""

HTTPX_ERRORS: dict[type[Exception], type[httpx.TransportError]] = {
    httpcore.TimeoutException: httpx.TimeoutException,
    httpcore.ConnectTimeout: httpx.ConnectTimeout,
    httpcore.ReadTimeout: httpx.ReadTimeout,
    httpcore.WriteTimeout: httpx.WriteTimeout,
    httpcore.PoolTimeout: httpx.PoolTimeout,
    httpcore.NetworkError: httpx.NetworkError,
    httpcore.ConnectError: httpx.ConnectError,
    httpcore.ReadError: httpx.ReadError,
    httpcore.WriteError: httpx.WriteError,
    httpcore.ProxyError: httpx.ProxyError,
    httpcore.UnsupportedProtocol: httpx.UnsupportedProtocol,
    httpcore.ProtocolError: httpx.ProtocolError,
    httpcore.LocalProtocolError: httpx.LocalProtocolError,
    httpcore.RemoteProtocolError: httpx.RemoteProtocolError,
}
"""httpcore's errors as httpx's (the same names), which is what callers of httpx catch."""


@contextmanager
def call_deadline(deadline: float) -> Iterator[bytearray]:
    """Bound every socket operation of this thread by `deadline` (a `time.monotonic()` value, or
    an outer call's, whichever comes first) while the block runs; yields the bytes the server
    sends first, up to FIRST_BYTES."""
    outer = getattr(_call, "deadline", None)
    _call.deadline = deadline if outer is None else min(outer, deadline)
    _call.first_bytes = bytearray()
    try:
        yield _call.first_bytes
    finally:
        _call.deadline = outer
        _call.first_bytes = None


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
        if first is not None and len(first) < FIRST_BYTES:
            first += data[: FIRST_BYTES - len(first)]
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


class DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's network backend with every stream it opens bounded by the call's deadline."""

    def __init__(self, inner: httpcore.NetworkBackend | None = None) -> None:
        self._inner = inner or httpcore.SyncBackend()

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


@contextmanager
def _httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        mapped = next((HTTPX_ERRORS[t] for t in type(exc).__mro__ if t in HTTPX_ERRORS), None)
        if mapped is None:
            raise
        raise mapped(str(exc)) from exc


class _Body(httpx.SyncByteStream):
    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        with _httpx_errors():
            yield from self._chunks

    def close(self) -> None:
        close = getattr(self._chunks, "close", None)
        if close is not None:
            with _httpx_errors():
                close()


class DeadlineTransport(httpx.BaseTransport):
    """httpx's transport contract over an httpcore pool on a `DeadlineBackend`: direct, or
    through an HTTP(S) proxy. Certificates are verified as httpx does by default: against
    certifi's roots, or $SSL_CERT_FILE / $SSL_CERT_DIR when set and `trust_env`."""

    def __init__(self, proxy: httpx.Proxy | None = None, *, trust_env: bool = True) -> None:
        ssl_context = httpx.create_ssl_context(trust_env=trust_env)
        self._pool = _pool(proxy, ssl_context, DeadlineBackend())

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        url = request.url
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _httpx_errors():
            response = self._pool.handle_request(core_request)
        assert isinstance(response.stream, Iterable)
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(response.stream),
            extensions=response.extensions,
        )

    def close(self) -> None:
        with _httpx_errors():
            self._pool.close()


def _pool(
    proxy: httpx.Proxy | None, ssl_context: ssl.SSLContext, backend: httpcore.NetworkBackend
) -> httpcore.ConnectionPool:
    if proxy is None:
        return httpcore.ConnectionPool(
            ssl_context=ssl_context, network_backend=backend, **POOL_LIMITS
        )
    if proxy.url.scheme not in ("http", "https"):
        raise ValueError(
            f"the proxy {proxy.url.scheme}://{proxy.url.host} named by the environment "
            "(HTTP_PROXY, HTTPS_PROXY or ALL_PROXY) is not an HTTP proxy; only http:// and "
            "https:// proxies are supported: name one, or unset the variable"
        )
    return httpcore.HTTPProxy(
        proxy_url=httpcore.URL(
            scheme=proxy.url.raw_scheme,
            host=proxy.url.raw_host,
            port=proxy.url.port,
            target=proxy.url.raw_path,
        ),
        proxy_auth=proxy.raw_auth,
        proxy_headers=proxy.headers.raw,
        ssl_context=ssl_context,
        proxy_ssl_context=proxy.ssl_context,
        network_backend=backend,
        **POOL_LIMITS,
    )


def environment_mounts() -> dict[str, httpx.BaseTransport | None]:
    """A `DeadlineTransport` for each proxy HTTP_PROXY, HTTPS_PROXY and ALL_PROXY name, and no
    proxy for the hosts NO_PROXY names: the mounts httpx makes of the environment for a client
    without a transport of its own (curl's reading of NO_PROXY)."""
    found = urllib.request.getproxies()
    no_proxy = [host.strip() for host in found.get("no", "").split(",")]
    if "*" in no_proxy:
        return {}
    mounts: dict[str, httpx.BaseTransport | None] = {}
    for scheme in ("http", "https", "all"):
        if found.get(scheme):
            url = found[scheme] if "://" in found[scheme] else f"http://{found[scheme]}"
            mounts[f"{scheme}://"] = DeadlineTransport(httpx.Proxy(url))
    for host in filter(None, no_proxy):
        mounts[_unproxied_pattern(host)] = None
    return mounts


def _unproxied_pattern(host: str) -> str:
    if "://" in host:
        return host
    address = host.partition("/")[0]  # NO_PROXY may name a network: 10.0.0.0/8
    if _is_address(address):
        return f"all://[{host}]" if ":" in address else f"all://{host}"
    if host.lower() == "localhost":
        return f"all://{host}"
    # NO_PROXY=example.com spares example.com and its subdomains (not wwwexample.com).
    return f"all://*{host}"


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
