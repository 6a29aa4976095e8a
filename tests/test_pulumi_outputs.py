"""A program's wait for its pending outputs grows with the outputs, not with their square, and
still waits for each of them and fails as the SDK's own wait fails."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

import pulumi
import pytest

from convai_provider import ConvaiPrivateModel
from testkit.engine import run_program_fully

OUTPUTS = 300


async def after_turns(turns: int) -> int:
    """Done after `turns` turns of the event loop: each output completes on a turn of its own,
    as a big stack's outputs complete one create after another."""
    for _ in range(turns):
        await asyncio.sleep(0)
    return turns


def output_after(turns: int) -> pulumi.Output[int]:
    output: pulumi.Output[int] = pulumi.Output.from_input(after_turns(turns))
    return output


def declare(outputs: Iterable[pulumi.Output[Any]]) -> None:
    ConvaiPrivateModel("m", model_group_name="g", model_name="n", api_key="sk-endpoint-key")
    pulumi.export("outputs", pulumi.Output.all(*outputs))


def test_pending_outputs_are_waited_for_in_rounds_that_grow_with_them_not_their_square(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waited_on: list[int] = []
    sdk_wait = asyncio.wait

    async def counted_wait(futures: Iterable[Any], **options: Any) -> Any:
        futures = list(futures)
        waited_on.append(len(futures))
        return await sdk_wait(futures, **options)

    monkeypatch.setattr(asyncio, "wait", counted_wait)

    def program() -> None:
        declare(output_after(i) for i in range(1, OUTPUTS + 1))

    run = run_program_fully(program)
    assert run.exports["outputs"] == list(range(1, OUTPUTS + 1))
    # Before: one round per completion over every output still pending, ~OUTPUTS^2 / 2 in all.
    assert sum(waited_on) < 4 * OUTPUTS, waited_on


def test_an_output_that_fails_fails_the_program_as_before() -> None:
    async def fails() -> str:
        await asyncio.sleep(0)
        raise ValueError("the endpoint key could not be generated")

    def program() -> None:
        declare([pulumi.Output.from_input(fails()), output_after(50)])

    with pytest.raises(ValueError, match="could not be generated"):
        run_program_fully(program)


def test_outputs_made_while_waiting_are_waited_for_too() -> None:
    """An apply that makes outputs of its own, as a program declaring resources in an apply."""
    seen: list[int] = []

    def make_more(turns: int) -> int:
        output_after(turns + 100).apply(seen.append)
        return turns

    def program() -> None:
        declare([output_after(20).apply(make_more)])

    run_program_fully(program)
    assert seen == [120]
