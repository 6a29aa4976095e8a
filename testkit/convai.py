"""The test account on the local emulator: its key, the stack config that points at it, and a
look at what Convai holds. Shared by the tests and the benchmarks."""

from __future__ import annotations

from typing import Any

from pulumi.runtime import rpc

from convai_provider.client import ConvaiClient
from convai_provider.emulator.process import EmulatorProcess
from convai_provider.retry import Backoff

CONVAI_KEY = "convai-test-key-7f3a9c"
"""The test account's CONVAI-API-KEY; secrets tests search for it everywhere."""

FAST_BACKOFF = Backoff(initial=0.01, maximum=0.05, retry_after_cap=0.2)


def engine_secret(value: str) -> dict[str, str]:
    """A secret value as the engine sends it to Configure."""
    return {rpc._special_sig_key: rpc._special_secret_sig, "value": value}


def stack_config(convai: EmulatorProcess) -> dict[str, Any]:
    """The whole stack config, as the engine sends it to Configure (secrets still wrapped)."""
    return {
        "convai:apiKey": engine_secret(CONVAI_KEY),
        "convai:baseUrl": convai.url,
        "convai:requestTimeout": "5",
        "aws:region": "eu-west-1",
    }


def live(convai: EmulatorProcess) -> dict[str, dict[str, Any]]:
    """Convai's models in the test account, by group name."""
    with ConvaiClient(CONVAI_KEY, convai.url) as client:
        return {m.model_group_name: m.model_dump() for m in client.list_models().models}
