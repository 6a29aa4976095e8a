"""One path for the Convai API key: the client, the provider, the program and the commands take
it in the same order, refuse the same keys in the same words (never repeating the key), and,
when Convai refuses it, name the setting it actually came from."""

from __future__ import annotations

import json

import pulumi
import pytest

from convai_provider.api.client import ConvaiClient
from convai_provider.api.errors import InvalidRequestError
from convai_provider.resources.settings import ConvaiSettings, InvalidSettingError
from convai_stack.commands.main import main
from testkit.convai import declare, turbo
from testkit.engine import Engine, ProviderError, RecordingMocks
from testkit.hostile_server import http_answer, serve_answer
from tests.test_stacks import run_stack, stack_runtime_config

KEY = "cvk-Pd4Rw8Nx2Lq6Zs9Tb1"
PADDED = {"trailing space": f"{KEY} ", "leading space": f" {KEY}", "trailing newline": f"{KEY}\n"}
WHITESPACE = "starts or ends with whitespace"


@pytest.mark.parametrize("padded", list(PADDED.values()), ids=list(PADDED))
def test_the_client_refuses_a_padded_key_before_sending_anything(padded: str) -> None:
    """It used to send it: the HTTP library refused the header, quoting it (key included), and
    the failure was retried as a connection error for about 15 seconds."""
    answer = http_answer(200, {"status": "success", "models": []})
    with serve_answer(answer) as url, pytest.raises(InvalidRequestError) as caught:
        ConvaiClient(padded, url).list_models()
    assert str(caught.value).startswith(f"api_key {WHITESPACE}")
    assert KEY not in str(caught.value)
    assert answer.requests == []


@pytest.mark.parametrize("padded", list(PADDED.values()), ids=list(PADDED))
def test_the_provider_refuses_a_padded_key_naming_its_setting(padded: str) -> None:
    with pytest.raises(InvalidSettingError) as from_config:
        ConvaiSettings.resolve({"convai:apiKey": padded}, {})
    assert str(from_config.value).startswith(f"convai:apiKey {WHITESPACE}")
    assert "pulumi config set --secret convai:apiKey" in str(from_config.value)
    with pytest.raises(InvalidSettingError) as from_env:
        ConvaiSettings.resolve({}, {"CONVAI_API_KEY": padded})
    assert str(from_env.value).startswith(f"CONVAI_API_KEY {WHITESPACE}")
    assert KEY not in str(from_config.value) + str(from_env.value)


@pytest.mark.parametrize("padded", list(PADDED.values()), ids=list(PADDED))
def test_the_commands_refuse_a_padded_key_naming_where_it_came_from(
    padded: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONVAI_BASE_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("CONVAI_API_KEY", padded)
    assert main(["list"]) == 2
    _, from_env = capsys.readouterr()
    assert from_env.startswith(f"error: CONVAI_API_KEY {WHITESPACE}")
    assert main(["list", "--api-key", padded]) == 2
    _, from_flag = capsys.readouterr()
    assert from_flag.startswith(f"error: --api-key {WHITESPACE}")
    assert KEY not in from_env + from_flag


def test_the_program_refuses_a_padded_key_before_any_resource() -> None:
    mocks = RecordingMocks()
    config = stack_runtime_config("staging", **{"convai:apiKey": f"{KEY} "})
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("staging", config, mocks)
    assert str(caught.value).startswith(f"convai:apiKey {WHITESPACE}")
    assert KEY not in str(caught.value) and mocks.registrations == []


def test_the_program_refuses_a_convai_url_the_key_may_not_travel_to_before_any_resource() -> None:
    """The provider refused it only at the account's first operation, mid-`up`: the program now
    resolves every account's key and URL by the provider's one path before any resource."""
    mocks = RecordingMocks()
    accounts = {"partner": {"apiKey": KEY, "baseUrl": "http://convai.example.com"}}
    config = stack_runtime_config("staging", **{"convai:accounts": json.dumps(accounts)})
    with pytest.raises(pulumi.RunError) as caught:
        run_stack("staging", config, mocks)
    assert str(caught.value).startswith(
        "convai:accounts.partner.baseUrl 'http://convai.example.com' must use https"
    )
    assert mocks.registrations == []


# A refused key: the hint names the setting it came from ----------------------------------------

REFUSED = http_answer(401, {"status": "error", "message": "Invalid API key", "transactionID": "t"})


def test_a_refused_key_from_the_environment_is_named_by_the_commands(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONVAI_API_KEY", KEY)
    with serve_answer(REFUSED) as url:
        assert main(["list", "--base-url", url]) == 2
        _, from_env = capsys.readouterr()
        assert main(["list", "--base-url", url, "--api-key", KEY]) == 2
        _, from_flag = capsys.readouterr()
    assert "from $CONVAI_API_KEY was refused; export a valid one." in from_env
    assert "given with --api-key was refused; pass a valid one." in from_flag
    assert "convai:apiKey" not in from_env + from_flag  # which the commands cannot read


@pytest.mark.parametrize(
    ("config", "env", "named"),
    [
        (
            {"convai:apiKey": KEY},
            {"CONVAI_API_KEY": "cvk-other-key-77"},
            "the stack's convai:apiKey",
        ),
        ({}, {"CONVAI_API_KEY": KEY}, "$CONVAI_API_KEY"),
    ],
)
def test_a_refused_key_is_named_by_the_provider(
    config: dict[str, str], env: dict[str, str], named: str
) -> None:
    with serve_answer(REFUSED) as url:
        engine = Engine({**config, "convai:baseUrl": url}, env=env)
        with pytest.raises(ProviderError) as caught:
            engine.up(declare(m=turbo()))
    assert f"The CONVAI-API-KEY from {named} was refused" in caught.value.details
