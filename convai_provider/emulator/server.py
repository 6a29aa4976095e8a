"""Run the emulator: bind a socket, announce the address, serve with uvicorn until stopped."""

from __future__ import annotations

import logging
import socket
import sys
from pathlib import Path

import uvicorn

from .app import ConvaiEmulator, HideInjectedDrops
from .store import ConvaiStore

READY_PREFIX = "Convai emulator listening on "


def serve(host: str, port: int, db: Path, access_log: bool = True) -> None:
    store = ConvaiStore(db)
    app = ConvaiEmulator(store).asgi()
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: without it, Nagle holds each reply ~40 ms.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    bound_port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="info", access_log=access_log, timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    logging.getLogger("uvicorn.error").addFilter(HideInjectedDrops())
    print(f"{READY_PREFIX}http://{host}:{bound_port} (db: {db})", flush=True)
    try:
        server.run(sockets=[sock])
    finally:
        store.close()
        sys.stdout.flush()
