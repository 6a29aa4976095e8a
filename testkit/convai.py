"""The test account on the local emulator: its key, the stack config that points at it, and a
look at what Convai holds. Shared by the tests and the benchmarks."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
from pulumi.runtime import rpc

from convai_provider import ConvaiPrivateModel
from convai_provider.api.client import ConvaiClient
from convai_provider.api.retry import Backoff
from convai_provider.api.wire import (
    API_KEY_HEADER,
    CHARACTER_CREATE_PATH,
    CharacterCreateRequest,
    CharacterCreateResponse,
    RegisterRequest,
)
from convai_provider.emulator.process import EmulatorProcess
from convai_provider.emulator.store import account_for_key

from .engine import Declared, run_program
from .pulumi_cli import STACK, PulumiProject

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


def live(convai: EmulatorProcess, key: str = CONVAI_KEY) -> dict[str, dict[str, Any]]:
    """Convai's models in `key`'s account (the test account's by default), by group name."""
    with ConvaiClient(key, convai.url) as client:
        return {m.model_group_name: m.model_dump() for m in client.list_models().models}


def new_character(url: str, name: str = "Ada", key: str = CONVAI_KEY) -> str:
    """A new character of `key`'s account at the Convai of `url`, for a stack to bind: its ID.
    Stacks bind characters that exist, so the product never creates one."""
    reply = httpx.post(
        f"{url}{CHARACTER_CREATE_PATH}",
        headers={API_KEY_HEADER: key},
        json=CharacterCreateRequest(charName=name).to_body(),
        timeout=10,
    )
    reply.raise_for_status()
    return CharacterCreateResponse.model_validate(reply.json()).charID


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
    """The endpoint key Convai holds for a model of the test account: never returned by its API,
    read from the emulator's database (read-only, beside the running emulator)."""
    with contextlib.closing(sqlite3.connect(f"file:{convai.db}?mode=ro", uri=True)) as db:
        row = db.execute(
            "SELECT api_key FROM models WHERE account = ? AND model_group_name = ?",
            (account_for_key(CONVAI_KEY), group),
        ).fetchone()
    return None if row is None else str(row[0])


def recovered(
    project: PulumiProject, convai: EmulatorProcess, work: Path
) -> subprocess.CompletedProcess[str]:
    """`convai-models recover` on the project's state, as docs/state-integrity.md has an operator
    run it: the state exported into `work`, settled, and imported back if the command succeeded.
    Returns the command's run."""
    exported, settled = work / "exported.json", work / "settled.json"
    project.run("stack", "export", "--file", str(exported))
    done = subprocess.run(
        [
            *(sys.executable, "-m", "convai_provider", "recover", "--stack", STACK),
            *("--base-url", convai.url, "--state", str(exported), "--out", str(settled)),
        ],
        env={**os.environ, "CONVAI_API_KEY": CONVAI_KEY},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == 0:
        project.run("stack", "import", "--file", str(settled))
    return done
