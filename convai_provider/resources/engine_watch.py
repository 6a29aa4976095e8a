"""The provider process ends itself once the Pulumi engine that started it is gone.

The CLI starts the provider (`pulumi-resource-pulumi-python`, a `sh` script that runs
`python -u -m pulumi.dynamic ENGINE_ADDRESS`) and, when it exits normally, stops it. A CLI that
is killed (SIGKILL, an OOM kill, a closed CI runner) stops nothing: the SDK's server would wait
forever. Our code first runs in that process when the engine's first call unpickles our provider
and configures it, in that call: `configure` starts this watch, which takes the engine for gone
on the first of:

- **end of file on standard input**, when it is a pipe: the CLI gives every plugin a pipe as
  stdin (Go's `exec.Cmd.StdinPipe`), holds its only write end and writes nothing. The kernel
  closes it when the CLI ends, however it ends, so this sign comes at once;
- **the process that started this one has ended** (`os.getppid()` changed): for a provider the
  engine runs directly rather than through the `sh` script;
- **the engine's gRPC address unavailable**, asked every `CHECK_INTERVAL` seconds: `MISSES`
  times in a row once it has answered, `MISSES_UNANSWERED` times while it never has (the engine
  died before our first call was answered). For a provider started without a pipe on stdin.

Then the process waits for the operations in flight to end (each is bounded by
`convai:operationTimeout`, so a register already sent still lands and `convai-models recover` can
settle it), and exits. An engine that is alive never gives a sign, however slow or busy it is (a
stopped CLI, Ctrl-Z, keeps its pipe open and its port accepting): only "unavailable" counts as a
miss, and a 20-minute create keeps its provider as long as its CLI lives.
"""

from __future__ import annotations

import contextlib
import logging
import os
import stat
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
MISSES_UNANSWERED = 10
"""More than MISSES: an address that never answered is more likely one we misread (the watch
then ends a provider whose engine lives) than an address that answered and then stopped."""
CALL_TIMEOUT = 5.0
GONE_WITHIN = (MISSES_UNANSWERED + 1) * CHECK_INTERVAL + CALL_TIMEOUT
"""Seconds after the engine is gone by which an idle provider process has exited, whatever the
sign (27); with the CLI's pipe on stdin, at once."""
STDIN = 0


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


# the signs --------------------------------------------------------------------------------------


def engine_address(argv: list[str]) -> str | None:
    """The engine's gRPC address the CLI passes the provider (`host:port`), if any: the last
    argument, after any the CLI puts first (`--logtostderr`, `-v=9`, `--tracing URL`)."""
    if len(argv) < 2:
        return None
    host, _, port = argv[-1].rpartition(":")
    return argv[-1] if host and port.isdigit() else None


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


class AddressMisses:
    """Counts the engine address's answers in a row; says when they prove the engine gone."""

    def __init__(self) -> None:
        self.misses = 0
        self.answered = False

    def gone_after(self, answered: bool) -> bool:
        if answered:
            self.answered, self.misses = True, 0
            return False
        self.misses += 1
        return self.misses >= (MISSES if self.answered else MISSES_UNANSWERED)


def is_a_pipe(fd: int) -> bool:
    """Whether `fd` is a pipe (what the CLI gives), not a terminal, a file or /dev/null, whose
    end of file says nothing about the engine."""
    try:
        return stat.S_ISFIFO(os.fstat(fd).st_mode)
    except OSError:
        return False


def read_until_closed(fd: int) -> None:
    """Block until every writer of the pipe `fd` has closed it (whatever is written is dropped)."""
    while True:
        try:
            if not os.read(fd, 4096):
                return
        except InterruptedError:
            continue
        except OSError:  # closed under us: the same news
            return


# the watch --------------------------------------------------------------------------------------


class Departure:
    """Ends the process once: when a sign says the engine is gone, after the operations in
    flight (at most `drain_timeout` seconds)."""

    def __init__(self, drain_timeout: float, exit_process: Callable[[int], None] = os._exit):
        self.drain_timeout = drain_timeout
        self._exit_process = exit_process
        self._once = threading.Lock()

    def leave(self, sign: str) -> None:
        if not self._once.acquire(blocking=False):
            return
        # The CLI's end of stderr may be closed too: a line that cannot be written is dropped.
        log.warning(
            "the Pulumi engine is gone (%s; its CLI was killed?); ending this provider process "
            "once its operations in flight are done",
            sign,
        )
        IN_FLIGHT.wait_idle(self.drain_timeout)
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
        self._exit_process(0)


def watch_stdin(departure: Departure, fd: int = STDIN) -> None:
    read_until_closed(fd)
    departure.leave("its pipe on standard input was closed")


def watch_engine(
    address: str | None,
    departure: Departure,
    *,
    parent: int,
    answers: Callable[[str], bool] = engine_answers,
    current_parent: Callable[[], int] = os.getppid,
    interval: float = CHECK_INTERVAL,
) -> None:
    """Ask every `interval` seconds whether the process that started this one still lives
    (`parent`) and whether the engine's `address` answers; leave on the first that says no."""
    misses = AddressMisses()
    while True:
        if current_parent() != parent:
            departure.leave(f"the process that started this one, {parent}, has ended")
            return
        if address is not None and misses.gone_after(answers(address)):
            departure.leave(f"its address {address} no longer answers")
            return
        time.sleep(interval)


_watch: list[Departure] = []
_watch_lock = threading.Lock()


def start_engine_watch(drain_timeout: float) -> None:
    """Start the watch once per provider process (the caller checks it runs in one); a later
    call only sets how long operations in flight may still run once the engine is gone."""
    with _watch_lock:
        if _watch:
            _watch[0].drain_timeout = drain_timeout
            return
        departure = Departure(drain_timeout)
        _watch.append(departure)
    if is_a_pipe(STDIN):
        threading.Thread(
            target=watch_stdin, args=(departure,), name="engine-watch-stdin", daemon=True
        ).start()
    threading.Thread(
        target=watch_engine,
        args=(engine_address(sys.argv), departure),
        kwargs={"parent": os.getppid()},
        name="engine-watch",
        daemon=True,
    ).start()
