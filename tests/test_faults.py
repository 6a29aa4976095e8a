"""A bad network day: the full lifecycle through the real provider under injected faults.

After each step, and after a rerun of any step that failed, Convai must hold exactly the declared
models: none orphaned, duplicated or lost; and every failure must be a clear error.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from convai_provider import ConvaiPrivateModel
from convai_provider.api.client import ConvaiClient
from convai_provider.emulator.faults import FaultRule
from convai_provider.emulator.process import EmulatorProcess
from testkit.convai import CONVAI_KEY, stack_config
from testkit.engine import Declared, Engine, ProviderError, run_program

CLEAR_ERROR = re.compile(
    r"^Could not (create|update|read|delete) Convai private model '[^']+': "
    r"(Convai \w+ failed with HTTP \d{3}: .+ transactionID [0-9a-f-]{36}\. .+"
    r"|Convai \w+ could not reach .+|Convai \w+ at .+ timed out: .+)$"
)


def declared_models(count: int, generation: int) -> dict[str, dict[str, Any]]:
    return {
        f"g{i:03d}": {
            "model_group_name": f"g{i:03d}",
            "model_name": f"model-{i}",
            "api_key": f"sk-{generation}-{i}",
            "display_name": f"Model {i} v{generation}",
            "is_uncensored": generation % 2 == 1,
            "base_url": f"https://llm{i}.example.com/v1",
            "verify_endpoint": False,
        }
        for i in range(count)
    }


def as_program(models: dict[str, dict[str, Any]]) -> list[Declared]:
    def program() -> None:
        for name, fields in models.items():
            ConvaiPrivateModel(name, **fields)

    return [Declared.from_registration(r) for r in run_program(program)]


def assert_convai_holds(convai: EmulatorProcess, models: dict[str, dict[str, Any]]) -> None:
    with ConvaiClient(CONVAI_KEY, convai.url) as client:
        listing = client.list_models()
    names = [m.model_group_name for m in listing.models]
    assert len(names) == len(set(names)), "duplicated models"
    assert set(names) == set(models), (
        f"orphaned: {sorted(set(names) - set(models))}, lost: {sorted(set(models) - set(names))}"
    )
    for live in listing.models:
        declared = models[live.model_group_name]
        for field in ("model_name", "display_name", "is_uncensored", "base_url"):
            assert getattr(live, field) == declared[field], (live.model_group_name, field)


def assert_state_matches(engine: Engine, models: dict[str, dict[str, Any]]) -> None:
    assert set(engine.state) == set(models)
    for name, entry in engine.state.items():
        assert entry.outputs["api_key"] == models[name]["api_key"]
        assert entry.outputs["convai_key_fingerprint"]


def run_until_done(step: Callable[[], Any], failures: list[str], attempts: int = 4) -> None:
    """Run a step; on failure check every error is clear, then run it again (as a user would)."""
    for _ in range(attempts):
        try:
            step()
            return
        except ProviderError as exc:
            last_line = exc.details.strip().splitlines()[-1]
            assert CLEAR_ERROR.search(last_line), last_line
            failures.append(last_line)
    raise AssertionError(f"the step still failed after {attempts} runs: {failures[-1]}")


def bad_day(convai: EmulatorProcess) -> None:
    convai.inject(status=503, fraction=0.10, seed=11)
    convai.inject(drop_after_commit=True, fraction=0.05, seed=12)
    convai.inject(latency_ms=250, fraction=0.03, seed=13)
    convai.inject(latency_ms=5)


def burst_of_429(convai: EmulatorProcess) -> None:
    convai.inject(status=429, retry_after="1", count=6, message="Too many requests")


def lifecycle(convai: EmulatorProcess, count: int) -> list[str]:
    engine = Engine({**stack_config(convai), "convai:maxRetries": "4"})
    failures: list[str] = []
    bad_day(convai)

    first = declared_models(count, 1)
    burst_of_429(convai)
    run_until_done(lambda: engine.up(as_program(first)), failures)
    assert_convai_holds(convai, first)
    assert_state_matches(engine, first)

    second = declared_models(count, 2)
    burst_of_429(convai)
    # Enough consecutive 500s on update that some updates exhaust their retries: the rerun path.
    convai.inject(path="/llm-models/update", status=500, count=12)
    run_until_done(lambda: engine.up(as_program(second)), failures)
    assert_convai_holds(convai, second)
    assert_state_matches(engine, second)

    burst_of_429(convai)
    run_until_done(engine.refresh, failures)
    assert_convai_holds(convai, second)
    assert_state_matches(engine, second)
    assert all(entry.outputs["created_at"] for entry in engine.state.values())  # read back
    assert engine.preview(as_program(second)) == dict.fromkeys(second, "same")

    burst_of_429(convai)
    run_until_done(engine.destroy, failures)
    assert_convai_holds(convai, {})
    assert engine.state == {}
    return failures


def test_lifecycle_under_faults_converges(convai: EmulatorProcess) -> None:
    failures = lifecycle(convai, 40)
    assert failures, "the injected update burst should have failed at least one step"
    counts = convai.request_counts()
    assert counts["/llm-models/register"] >= 40


@pytest.mark.slow
def test_lifecycle_of_200_models_under_faults_converges(convai: EmulatorProcess) -> None:
    lifecycle(convai, 200)


def test_an_emulator_restart_mid_run_loses_nothing(tmp_path: Path) -> None:
    with EmulatorProcess(tmp_path / "convai.sqlite3") as emu:
        emu.inject(latency_ms=100)
        engine = Engine(stack_config(emu))
        models = declared_models(40, 1)
        resources = as_program(models)
        failures: list[str] = []
        outcome: list[BaseException] = []

        def create_all() -> None:
            try:
                run_until_done(lambda: engine.up(resources), failures)
            except BaseException as exc:  # surfaced below, in the test's thread
                outcome.append(exc)

        worker = threading.Thread(target=create_all)
        worker.start()
        time.sleep(0.8)  # creates are under way
        emu.restart()  # fault rules and counts live in memory: the new process starts clean
        worker.join(300)
        assert not worker.is_alive() and outcome == []
        assert emu.request_counts().get("/llm-models/register", 0) > 0  # work went on after it
        assert_convai_holds(emu, models)
        assert_state_matches(engine, models)


@pytest.mark.parametrize(
    ("value", "problem"),
    [("1\r\nSet-Cookie: x", "control character"), (" 1", "whitespace"), ("1é", "non-ASCII")],
)
def test_a_retry_after_a_header_cannot_carry_is_refused_naming_the_header(
    value: str, problem: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        FaultRule(status=503, retry_after=value)
    said = str(refused.value)
    assert problem in said and "it is sent as the Retry-After header" in said
    assert FaultRule(status=503, retry_after="Wed, 21 Oct 2026 07:28:00 GMT").retry_after
