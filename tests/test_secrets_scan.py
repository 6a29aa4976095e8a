"""After a full lifecycle, no key appears in plain text anywhere a user could see or that persists.

Searched: the pickled providers, every input and output as the engine would store them (values
marked secret are encrypted in state, so they are masked here), the stack's exports, the provider
processes' logs, the emulator's log, and the operator commands' output. The Convai key must appear
nowhere; endpoint keys only in values marked secret.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

from convai_provider import CHARACTER_TYPE_TOKEN, TYPE_TOKEN
from convai_provider.emulator.process import EmulatorProcess
from convai_stack.commands.main import main as cli_main
from convai_stack.program import main
from testkit.convai import CONVAI_KEY, engine_secret, new_character, stack_config
from testkit.engine import Declared, Engine, ProgramRun, Registration, run_program_fully

PARTNER_KEY = "convai-partner-key-d24e90"
"""The second account's Convai key (convai:accounts.partner.apiKey): searched for like the first."""
ACCOUNTS = json.dumps({"partner": {"apiKey": PARTNER_KEY}})
FIRST_KEY = "sk-endpoint-first-61c0f7"
ROTATED_KEY = "sk-endpoint-rotated-93ad2e"
MASK = "[secret]"


def stack(convai: EmulatorProcess, endpoint_key: str, char_id: str) -> dict[str, str]:
    endpoints = [
        {
            "name": "one",
            "kind": "external",
            "base_url": "http://127.0.0.1:8000/v1",
            "model_name": "llama-3.1-8b",
            "api_key_config": "localVllmApiKey",
        }
    ]
    models = [
        {
            "model_group_name": "alpha",
            "endpoint": "one",
            "display_name": "Alpha",
            "verify_endpoint": False,
            "characters": [char_id],
        },
        {
            "model_group_name": "beta",
            "endpoint": "one",
            "verify_endpoint": False,
            "account": "partner",
        },
    ]
    return {
        "convai:accounts": ACCOUNTS,
        "convai:apiKey": CONVAI_KEY,
        "convai:baseUrl": convai.url,
        "convai-models:localVllmApiKey": endpoint_key,
        "convai-models:endpoints": json.dumps(endpoints),
        "convai-models:models": json.dumps(models),
    }


def run(convai: EmulatorProcess, endpoint_key: str, char_id: str) -> ProgramRun:
    return run_program_fully(
        main,
        config=stack(convai, endpoint_key, char_id),
        secret_keys=["convai:apiKey", "convai:accounts", "convai-models:localVllmApiKey"],
    )


def masked(value: Any, secret_fields: set[str]) -> Any:
    """What the engine writes to state: secret values encrypted, here masked."""
    if isinstance(value, dict):
        if "4dabf18193072939515e22adb298388d" in value:
            return MASK
        return {k: MASK if k in secret_fields else masked(v, set()) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v, set()) for v in value]
    return value


def test_no_key_leaks_anywhere_after_a_full_lifecycle(
    convai: EmulatorProcess,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    char_id = new_character(convai.url)
    engine = Engine(stack_config(convai) | {"convai:accounts": engine_secret(ACCOUNTS)})
    seen: list[str] = []
    secret_outputs: dict[str, set[str]] = {}

    def record_program(endpoint_key: str) -> list[Declared]:
        program = run(convai, endpoint_key, char_id)
        for reg in program.registrations:
            secret_outputs[reg.name] = set(reg.additional_secret_outputs)
            seen.append(base64.b64decode(reg.inputs["__provider"]["value"]).decode("latin-1"))
            seen.append(json.dumps(masked(reg.inputs, set()), default=str))
        seen.append(
            json.dumps(masked(program.exports, set()) | {"endpointKeys": MASK}, default=str)
        )
        assert "endpointKeys" in program.secret_exports
        return [
            Declared.from_registration(r)
            for r in program.registrations
            if r.type in (TYPE_TOKEN, CHARACTER_TYPE_TOKEN)
        ]

    def record_state() -> None:
        for name, entry in engine.state.items():
            # Secret inputs stay secret in state; outputs are by additional_secret_outputs.
            seen.append(json.dumps(masked(entry.outputs, secret_outputs[name]), default=str))
            seen.append(json.dumps(masked(entry.inputs, secret_outputs[name]), default=str))

    engine.up(record_program(FIRST_KEY))
    record_state()
    engine.up(record_program(ROTATED_KEY))  # key rotation: an in-place update
    record_state()
    engine.refresh()
    record_state()

    monkeypatch.setenv("CONVAI_API_KEY", CONVAI_KEY)
    monkeypatch.setenv("CONVAI_BASE_URL", convai.url)
    monkeypatch.setenv("CONVAI_API_KEY_PARTNER", PARTNER_KEY)
    cli_main(["list"])
    cli_main(["list", "--json"])
    cli_main(["list", "--account", "partner", "--json"])
    seen.append(capsys.readouterr().out)

    engine.destroy()
    seen.extend(engine.logs)
    seen.append(convai.log_path.read_text())

    everything = "\n".join(seen)
    assert "llama-3.1-8b" in everything and "alpha" in everything  # the scan saw real content
    assert '"account": "partner"' in everything  # and the second account's model
    for key in (CONVAI_KEY, PARTNER_KEY, FIRST_KEY, ROTATED_KEY):
        assert key not in everything, f"{key} leaked"


def test_the_endpoint_key_is_marked_secret_wherever_it_is_stored(convai: EmulatorProcess) -> None:
    program = run(convai, FIRST_KEY, "c1")
    model: Registration = program.named("alpha")
    assert model.additional_secret_outputs == ["api_key", "convai_key_fingerprint"]
    assert model.inputs["api_key"]["value"] == FIRST_KEY  # a secret envelope, not a plain string
