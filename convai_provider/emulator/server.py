"""Run the emulator: bind a socket, announce the address, serve with uvicorn until stopped."""

from __future__ import annotations

import errno
import logging
import signal
import socket
import sqlite3
import sys
from pathlib import Path
from types import FrameType
from typing import NoReturn

import uvicorn

from convai_provider.emulator.app import ConvaiEmulator, HideInjectedDrops
from convai_provider.emulator.process import READY_PREFIX
from convai_provider.emulator.store import ConvaiStore


class EmulatorStartError(Exception):
    """The emulator cannot start: one sentence naming the option to change."""


def serve(host: str, port: int, db: Path, access_log: bool = True) -> None:
    sock = listening_socket(host, port)
    try:
        store = open_store(db)
    except EmulatorStartError:
        sock.close()
        raise
    app = ConvaiEmulator(store).asgi(served_name=host)
    bound_port = sock.getsockname()[1]
    # No colours: the command's output escapes every escape sequence (guards.text.safe_output),
    # and uvicorn's would show as `\x1b[32mINFO` on a terminal.
    config = uvicorn.Config(
        app,
        log_level="info",
        access_log=access_log,
        timeout_graceful_shutdown=1,
        use_colors=False,
    )
    server = uvicorn.Server(config)
    logging.getLogger("uvicorn.error").addFilter(HideInjectedDrops())
    shown_host = (
        f"[{host.strip('[]')}]" if ":" in host else host
    )  # an IPv6 address, as URLs write it
    print(f"{READY_PREFIX}http://{shown_host}:{bound_port} (db: {db})", flush=True)
    # uvicorn shuts down gracefully on SIGTERM and SIGINT, then raises the signal again once it
    # restored the previous handler: with the default SIGTERM one the process dies before
    # `finally` closes the store, leaving its -shm and -wal files; with the default SIGINT one,
    # Ctrl-C ends in a traceback. Both stops end here, in an orderly exit 0.
    for stop in (signal.SIGTERM, signal.SIGINT):
        signal.signal(stop, _exit_cleanly)
    try:
        server.run(sockets=[sock])
    finally:
        store.close()
        sys.stdout.flush()


def _exit_cleanly(signum: int, frame: FrameType | None) -> NoReturn:
    raise SystemExit(0)


def listening_socket(host: str, port: int) -> socket.socket:
    """A socket bound to HOST:PORT, or an EmulatorStartError that says which option to fix."""
    if not host.strip():
        raise EmulatorStartError(
            "--host is empty, which would listen on every interface: give 127.0.0.1 (this "
            "machine only) or, deliberately, 0.0.0.0"
        )
    try:
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        raise EmulatorStartError(
            f"--host {host!r} does not resolve ({exc}): give an address such as 127.0.0.1"
        ) from None
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: without it, Nagle holds each reply ~40 ms.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise EmulatorStartError(_bind_failure(host, port, exc)) from None
    # Listening now, before the address is announced: uvicorn starts listening only once its
    # loop runs, and a client that connects in between would be refused, not queued.
    sock.listen(2048)
    return sock


def _bind_failure(host: str, port: int, exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is in use: stop what listens there, or pass another --port "
            "(0 picks a free one)"
        )
    if exc.errno == errno.EACCES:
        return f"port {port} needs privileges: pass a --port above 1023 (0 picks a free one)"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"--host {host} is not an address of this machine: give 127.0.0.1"
    return f"cannot listen on {host}:{port} ({exc.strerror or exc}): check --host and --port"


def open_store(db: Path) -> ConvaiStore:
    try:
        return ConvaiStore(db)
    except (sqlite3.Error, OSError) as exc:
        raise EmulatorStartError(
            f"--db {db} cannot be used as the emulator's database ({exc}): give the path of a "
            "new or existing SQLite file in a writable directory"
        ) from None
