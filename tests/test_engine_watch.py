"""A provider process whose engine is gone ends itself, once its operations in flight are done."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from pulumi.runtime.proto import engine_pb2_grpc

from convai_provider.emulator.process import EmulatorProcess
from convai_provider.resources.engine_watch import (
    IN_FLIGHT,
    MISSES,
    engine_address,
    engine_answers,
    watch_engine,
)
from testkit.convai import declare, stack_config, turbo
from testkit.engine import Engine


@pytest.mark.parametrize(
    ("argv", "address"),
    [
        (["-m", "127.0.0.1:40123"], "127.0.0.1:40123"),
        (["-m", "[::1]:40123"], "[::1]:40123"),
        (["-m"], None),
        (["pytest", "tests/test_x.py::test_y"], None),
    ],
)
def test_the_engine_address_is_the_providers_argument(argv: list[str], address: str) -> None:
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


def test_the_watch_exits_after_consecutive_misses_only_once_idle() -> None:
    # Never answered: not an engine that left. Then alive, one miss, alive, then gone.
    answers = iter([False, False, False, False, True, False, True, *[False] * MISSES])
    exits: list[int] = []
    operation_done = threading.Event()

    def exit_process(code: int) -> None:
        assert operation_done.is_set(), "exited while an operation was in flight"
        exits.append(code)

    def operation() -> None:
        with IN_FLIGHT.running():
            started.set()
            operation_done.wait(30)

    started = threading.Event()
    worker = threading.Thread(target=operation)
    worker.start()
    started.wait(30)
    watcher = threading.Thread(
        target=watch_engine,
        args=("127.0.0.1:1", 60.0),
        kwargs={"answers": lambda _: next(answers), "exit_process": exit_process, "interval": 0},
    )
    watcher.start()
    watcher.join(0.5)
    assert watcher.is_alive() and exits == []  # the engine is gone, the operation is not done
    operation_done.set()
    worker.join()
    watcher.join(30)
    assert exits == [0]
    assert next(answers, "all read") == "all read"  # it left only after the last misses


def test_a_provider_process_whose_engine_stops_exits_by_itself(convai: EmulatorProcess) -> None:
    engine = Engine(stack_config(convai))
    (model,) = declare(m=turbo())
    with engine.command() as provider:
        engine.check(model, {})  # the provider is configured: its watch runs
        assert provider.engine_answered.wait(60), "the provider's watch never had an answer"
        provider.engine.stop(None)
        provider.proc.wait(timeout=120)  # the test's own deadline: GONE_WITHIN is 13 s
        assert provider.proc.returncode == 0
