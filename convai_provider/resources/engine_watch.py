"""The provider process ends itself once the Pulumi engine that started it is gone.

The CLI starts the provider (`python -m pulumi.dynamic ENGINE_ADDRESS`) and, when it exits
normally, stops it. A CLI that is killed (SIGKILL, an OOM kill, a closed CI runner) stops
nothing: the SDK's server would wait forever. So `configure` starts a watch: every
`CHECK_INTERVAL` seconds it asks the engine's gRPC address for the stack's root resource. After
`MISSES` answers in a row that the address is unavailable, the engine is gone: the process waits
for the operations in flight to end (each is bounded by `convai:operationTimeout`, so a register
already sent still lands and `convai-models recover` can settle it), then exits.

An engine that is alive but slow to answer is not gone: only "unavailable" counts as a miss, and
only once the address has answered at least once.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import grpc
from pulumi.runtime.proto import engine_pb2, engine_pb2_grpc

log = logging.getLogger("convai_provider")

CHECK_INTERVAL = 2.0
MISSES = 3
CALL_TIMEOUT = 5.0
GONE_WITHIN = (MISSES + 1) * CHECK_INTERVAL + CALL_TIMEOUT
"""Seconds after the engine is gone by which an idle provider process has exited (13)."""


class OperationsInFlight:
    """How many provider operations are running; thread-safe."""

    def __init__(self) -> None:
        self._count = 0
        self._idle = threading.Condition()

    @contextmanager
    def running(self) -> Iterator[None]:
        with self._idle:
            self._count += 1
        try:
            yield
        finally:
            with self._idle:
                self._count -= 1
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._idle:
            return self._idle.wait_for(lambda: self._count == 0, timeout)


IN_FLIGHT = OperationsInFlight()
_started = threading.Event()


def engine_address(argv: list[str]) -> str | None:
    """The engine's gRPC address the CLI passes the provider (`host:port`), if any."""
    if len(argv) < 2:
        return None
    host, _, port = argv[1].rpartition(":")
    return argv[1] if host and port.isdigit() else None


def engine_answers(address: str, timeout: float = CALL_TIMEOUT) -> bool:
    """False only when the address is unavailable: nothing listens there any more."""
    with grpc.insecure_channel(address) as channel:
        try:
            engine_pb2_grpc.EngineStub(channel).GetRootResource(
                engine_pb2.GetRootResourceRequest(), timeout=timeout
            )
        except grpc.RpcError as exc:
            return bool(exc.code() != grpc.StatusCode.UNAVAILABLE)
    return True


def watch_engine(
    address: str,
    drain_timeout: float,
    *,
    answers: Callable[[str], bool] = engine_answers,
    exit_process: Callable[[int], None] = os._exit,
    interval: float = CHECK_INTERVAL,
) -> None:
    """Block until the engine at `address` is gone, then until no operation is in flight (at
    most `drain_timeout` seconds), then exit the process."""
    misses = 0
    answered = False  # an address that never answered is not taken for an engine that left
    while True:
        if answers(address):
            answered, misses = True, 0
        elif answered:
            misses += 1
        if misses >= MISSES:
            break
        time.sleep(interval)
    log.warning(
        "the Pulumi engine at %s is gone (its CLI was killed?); ending this provider process "
        "once its operations in flight are done",
        address,
    )
    IN_FLIGHT.wait_idle(drain_timeout)
    sys.stderr.flush()
    exit_process(0)


def start_engine_watch(drain_timeout: float) -> None:
    """Start the watch once per provider process (the caller checks it runs in one)."""
    address = engine_address(sys.argv)
    if address is None or _started.is_set():
        return
    _started.set()
    threading.Thread(
        target=watch_engine, args=(address, drain_timeout), name="engine-watch", daemon=True
    ).start()
