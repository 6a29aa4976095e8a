"""A provider process whose engine is gone ends itself, once its operations in flight are done.

The decision from each sign, then the provider process itself under the engine stand-in; the
real CLI killed at each moment is in test_state_integrity.py.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from pulumi.runtime.proto import engine_pb2_grpc

from convai_provider.emulator.process import EmulatorProcess
from convai_provider.resources.engine_watch import (
    IN_FLIGHT,
    MISSES,
    MISSES_UNANSWERED,
    AddressMisses,
    Departure,
    engine_address,
    engine_answers,
    is_a_pipe,
    watch_engine,
    watch_stdin,
)
from testkit.convai import declare, stack_config, turbo
from testkit.engine import Engine, ProviderProcess


@pytest.mark.parametrize(
    ("argv", "address"),
    [
        (["-m", "127.0.0.1:40123"], "127.0.0.1:40123"),
        (["-m", "[::1]:40123"], "[::1]:40123"),
        # `pulumi --logflow -v=9 --tracing URL` puts its flags before the address
        (["-m", "--logtostderr", "-v=9", "127.0.0.1:40123"], "127.0.0.1:40123"),
        (["-m", "--tracing", "http://127.0.0.1:9411", "127.0.0.1:40123"], "127.0.0.1:40123"),
        (["-m"], None),
        (["pytest", "tests/test_x.py::test_y"], None),
    ],
)
def test_the_engine_address_is_the_providers_last_argument(
    argv: list[str], address: str | None
) -> None:
    assert engine_address(argv) == address


def test_an_engine_answering_anything_is_alive_and_a_closed_port_is_not() -> None:
    server = grpc.server(ThreadPoolExecutor(1))
    engine_pb2_grpc.add_EngineServicer_to_server(engine_pb2_grpc.EngineServicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        assert engine_answers(f"127.0.0.1:{port}")  # UNIMPLEMENTED is an answer
    finally:
        server.stop(None)
    assert not engine_answers(f"127.0.0.1:{port}")


# the decision from each sign --------------------------------------------------------------------


def misses_until_gone(answers: list[bool]) -> int | None:
    """After how many of `answers` the engine is taken for gone; None: not within them."""
    counter = AddressMisses()
    for index, answered in enumerate(answers, 1):
        if counter.gone_after(answered):
            return index
    return None


def test_an_address_that_answered_is_gone_after_consecutive_misses() -> None:
    assert misses_until_gone([True, *[False] * MISSES]) == 1 + MISSES
    # an answer between misses starts the count again
    alive_between = [True, *[False] * (MISSES - 1), True, *[False] * (MISSES - 1)]
    assert misses_until_gone(alive_between) is None


def test_an_address_that_never_answered_is_gone_after_a_larger_budget() -> None:
    # The engine died before the provider's first call was answered: today's F8.
    assert misses_until_gone([False] * (MISSES_UNANSWERED - 1)) is None
    assert misses_until_gone([False] * MISSES_UNANSWERED) == MISSES_UNANSWERED
    assert MISSES_UNANSWERED > MISSES


class StopWatchingError(Exception):
    """Ends a watch loop that would otherwise run forever."""


def recorded_departure() -> tuple[Departure, list[int]]:
    exits: list[int] = []
    return Departure(60.0, exit_process=exits.append), exits


def answers_then_stop(answers: list[bool]) -> Callable[[str], bool]:
    remaining = iter(answers)

    def answer(_address: str) -> bool:
        try:
            return next(remaining)
        except StopIteration:
            raise StopWatchingError from None

    return answer


def test_an_engine_that_keeps_answering_never_ends_the_provider() -> None:
    departure, exits = recorded_departure()
    with pytest.raises(StopWatchingError):  # the watch was still asking after 500 answers
        watch_engine(
            "127.0.0.1:1",
            departure,
            parent=os.getppid(),
            answers=answers_then_stop([True] * 500),
            interval=0,
        )
    assert exits == []


def test_the_provider_leaves_when_the_process_that_started_it_ends() -> None:
    departure, exits = recorded_departure()
    parents = iter([41, 41, 41, 1])  # orphaned: the kernel gave it to init
    watch_engine(
        None, departure, parent=41, current_parent=lambda: next(parents), interval=0
    )  # no address to ask: the parent alone decides
    assert exits == [0]
    assert next(parents, "all read") == "all read"


@pytest.fixture
def operation_in_flight() -> Iterator[threading.Event]:
    """An operation running until the test sets the event it yields."""
    done, started = threading.Event(), threading.Event()

    def operation() -> None:
        with IN_FLIGHT.running():
            started.set()
            done.wait(30)

    worker = threading.Thread(target=operation)
    worker.start()
    started.wait(30)
    yield done
    done.set()
    worker.join()


def test_the_watch_leaves_after_consecutive_misses_only_once_idle(
    operation_in_flight: threading.Event,
) -> None:
    # Never answered: not yet gone. Then alive, one miss, alive, then gone.
    answers = iter([False, False, False, True, False, True, *[False] * MISSES])
    exits: list[int] = []

    def exit_process(code: int) -> None:
        assert operation_in_flight.is_set(), "exited while an operation was in flight"
        exits.append(code)

    watcher = threading.Thread(
        target=watch_engine,
        args=("127.0.0.1:1", Departure(60.0, exit_process)),
        kwargs={"parent": os.getppid(), "answers": lambda _: next(answers), "interval": 0},
    )
    watcher.start()
    watcher.join(0.5)
    assert watcher.is_alive() and exits == []  # the engine is gone, the operation is not done
    operation_in_flight.set()
    watcher.join(30)
    assert exits == [0]
    assert next(answers, "all read") == "all read"  # it left only after the last misses


def test_the_engines_pipe_closed_ends_the_provider_and_what_it_writes_does_not() -> None:
    read_end, write_end = os.pipe()
    departure, exits = recorded_departure()
    watcher = threading.Thread(target=watch_stdin, args=(departure, read_end))
    watcher.start()
    try:
        os.write(write_end, b"anything\n")
        watcher.join(0.5)
        assert watcher.is_alive() and exits == []
    finally:
        os.close(write_end)  # what the kernel does when the CLI dies
    watcher.join(30)
    os.close(read_end)
    assert exits == [0]


def test_only_a_pipe_on_stdin_is_the_engines(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    regular = tmp_path / "stdin"
    regular.write_text("")
    with open(os.devnull, "rb") as devnull, regular.open("rb") as file:
        assert is_a_pipe(read_end)
        assert not is_a_pipe(devnull.fileno())  # its end of file says nothing
        assert not is_a_pipe(file.fileno())
    os.close(read_end)
    os.close(write_end)
    assert not is_a_pipe(read_end)  # closed


def test_the_process_leaves_once_whatever_the_signs_say() -> None:
    departure, exits = recorded_departure()
    signs = [threading.Thread(target=departure.leave, args=(f"sign {i}",)) for i in range(4)]
    for sign in signs:
        sign.start()
    for sign in signs:
        sign.join(30)
    assert exits == [0]


# the provider process, under the engine stand-in --------------------------------------------------


@contextmanager
def configured_provider(convai: EmulatorProcess) -> Iterator[ProviderProcess]:
    """A provider process under the engine stand-in, configured: its watch of the engine runs."""
    engine = Engine(stack_config(convai))
    (model,) = declare(m=turbo())
    with engine.command() as provider:
        engine.check(model, {})
        yield provider


def test_a_provider_process_whose_engine_stops_answering_exits_by_itself(
    convai: EmulatorProcess,
) -> None:
    with configured_provider(convai) as provider:
        assert provider.engine_answered.wait(60), "the provider's watch never had an answer"
        provider.engine.stop(None)  # its pipe on stdin stays open: the address alone tells
        provider.proc.wait(timeout=120)  # the test's own deadline: GONE_WITHIN is 27 s
        assert provider.proc.returncode == 0


def test_a_provider_process_whose_engine_closes_its_pipe_exits_by_itself(
    convai: EmulatorProcess,
) -> None:
    with configured_provider(convai) as provider:
        provider.close_engine_pipe()  # its address still answers: the pipe alone tells
        provider.proc.wait(timeout=120)
        assert provider.proc.returncode == 0
        assert provider.proc.stderr is not None
        assert "its pipe on standard input was closed" in provider.proc.stderr.read()


def test_a_provider_whose_engine_never_answered_exits_by_itself(convai: EmulatorProcess) -> None:
    # The CLI died before the provider's first call was answered: its address never answers.
    engine = Engine(stack_config(convai))
    (model,) = declare(m=turbo())
    with engine.command() as provider:
        provider.engine.stop(None)
        engine.check(model, {})  # the first call: it loads our provider, and the watch
        provider.proc.wait(timeout=120)  # the test's own deadline: GONE_WITHIN is 27 s
        assert provider.proc.returncode == 0
