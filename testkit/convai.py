"""The test account on the local emulator: its key, the stack config that points at it, and a
look at what Convai holds. Shared by the tests and the benchmarks."""

from __future__ import annotations

from typing import Any

from pulumi.runtime import rpc

from convai_provider import ConvaiPrivateModel
from convai_provider.api.client import ConvaiClient
from convai_provider.api.retry import Backoff
from convai_provider.api.wire import RegisterRequest
from convai_provider.emulator.process import EmulatorProcess
from convai_provider.emulator.store import ConvaiStore, account_for_key

from .engine import Declared, run_program

CONVAI_KEY = "convai-test-key-7f3a9c"
"""The test account's CONVAI-API-KEY; secrets tests search for it everywhere."""

TURBO = RegisterRequest(
    model_group_name="my-turbo",
    model_name="gpt-4o-mini",
    api_key="sk-proxy-123",
    is_uncensored=False,
    display_name="Turbo (Private)",
)
"""A register request the client tests send."""

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


ENDPOINT_KEY = "sk-endpoint-5d21e0"
"""The endpoint key `turbo` declares; secrets tests search for it too."""


def declare(**models: dict[str, Any]) -> list[Declared]:
    """Run a program declaring one ConvaiPrivateModel per keyword; return what it registered."""

    def program() -> None:
        for name, fields in models.items():
            ConvaiPrivateModel(name, **fields)

    return [Declared.from_registration(r) for r in run_program(program)]


def turbo(**changes: Any) -> dict[str, Any]:
    """A model declaration the provider tests vary one field at a time."""
    return {
        "model_group_name": "turbo",
        "model_name": "llama-3.1-8b",
        "api_key": ENDPOINT_KEY,
        "display_name": "Turbo",
        "base_url": "https://llm.example.com/v1",
        "verify_endpoint": False,  # the preflight has tests of its own (test_preflight.py)
        **changes,
    }


def stored_endpoint_key(convai: EmulatorProcess, group: str) -> str | None:
    """The endpoint key Convai holds for a model: never returned by its API, read from the store."""
    store = ConvaiStore(convai.db)
    try:
        return store.endpoint_key(account_for_key(CONVAI_KEY), group)
    finally:
        store.close()
