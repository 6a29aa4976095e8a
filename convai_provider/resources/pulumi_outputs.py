"""Keep a program's wait for its pending outputs from growing with the square of the stack.

When a program's body has run, Pulumi's Python SDK waits for every output still pending
(`wait_for_rpcs` in pulumi/runtime/stack.py, pulumi 3.272) with `asyncio.wait(...,
FIRST_COMPLETED)` over all of them, again after each completion: every round adds and removes a
callback on each pending output. The outputs of a resource stay pending until its create
returns, so an `up` of N resources of k outputs each costs about k * N per completion, k * N^2 in
all. A ConvaiPrivateModel has 17 pending when the body ends (12 properties, urn, id, the
serialized provider, the secret endpoint key's two), the benchmark's floor 9: at 500 models this
loop was a third of our program's CPU (docs/big-stacks.md).

Before the SDK's own wait runs, the outputs pending are awaited in one `asyncio.wait(...,
FIRST_EXCEPTION)` per wave of new ones: the same outputs are waited for, and a failure ends the
wait at once, as it ends the SDK's. The SDK's wait then runs as it always does, finds those
outputs done, and does the rest (re-raises a failure, waits for RPCs and for outputs made
meanwhile). The first resource a program declares installs it; remove this module once the SDK
waits in one round itself.
"""

from __future__ import annotations

import asyncio
from typing import Any

from pulumi.runtime import settings, stack

_SDK_WAIT_FOR_RPCS = stack.wait_for_rpcs


def settle_outputs_in_one_wait() -> None:
    """Install the wait below in front of the SDK's, once per process."""
    internals = all(hasattr(settings.SETTINGS, name) for name in ("outputs", "lock"))
    if stack.wait_for_rpcs is _SDK_WAIT_FOR_RPCS and internals:
        setattr(stack, "wait_for_rpcs", _outputs_settled_first)  # noqa: B010 - a module function


async def _outputs_settled_first(await_all_outstanding_tasks: bool = True, **more: Any) -> None:
    if await_all_outstanding_tasks:
        await _pending_outputs_settled()
    await _SDK_WAIT_FOR_RPCS(await_all_outstanding_tasks, **more)


async def _pending_outputs_settled() -> None:
    """Until no output is pending, or one has failed (the SDK's wait reports it)."""
    while True:
        with settings.SETTINGS.lock:
            pending = [output for output in settings.SETTINGS.outputs if not output.done()]
        if not pending:
            return
        done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_EXCEPTION)
        if any(output.cancelled() or output.exception() is not None for output in done):
            return
