"""Input no one should give: refused up front, naming the setting and the fix, leaking nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from convai_provider.cli import main
from convai_provider.client import ConvaiClient
from convai_provider.emulator.process import EmulatorProcess
from convai_provider.errors import InvalidRequestError
from convai_provider.settings import ConvaiSettings, InvalidSettingError

from .conftest import CONVAI_KEY
from .engine import Engine, ProviderError
from .test_private_model_engine import declare, stack_config, turbo

# Plain http to Convai only on loopback --------------------------------------------------------

IN_CLEAR = ["http://convai.invalid", "http://10.0.0.7:8787", "HTTP://api.convai.invalid/"]
LOOPBACK = [
    "http://127.0.0.1:8787",
    "http://localhost:8787",
    "http://[::1]:8787",
    "http://127.9.9.9",
]


@pytest.mark.parametrize("url", IN_CLEAR)
def test_the_provider_setting_refuses_plain_http_beyond_loopback(url: str) -> None:
    with pytest.raises(InvalidSettingError) as caught:
        ConvaiSettings.resolve({"convai:apiKey": "k", "convai:baseUrl": url})
    assert str(caught.value).startswith("convai:baseUrl ")
    assert "https" in str(caught.value) and "in clear" in str(caught.value)
    with pytest.raises(InvalidSettingError, match=r"^CONVAI_BASE_URL "):
        ConvaiSettings.resolve({"convai:apiKey": "k"}, {"CONVAI_BASE_URL": url})


@pytest.mark.parametrize("url", [*LOOPBACK, "https://api.convai.com", "https://10.0.0.7"])
def test_https_anywhere_and_http_on_loopback_are_accepted(url: str) -> None:
    settings = ConvaiSettings.resolve({"convai:apiKey": "k", "convai:baseUrl": url})
    assert settings.base_url == url
    ConvaiClient("k", url).close()


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://convai.invalid", "in clear"),
        ("https://user:pw@api.convai.invalid", "credentials"),
        ("https://api.convai.invalid/?key=1", "query"),
        ("https://", "host"),
        ("ftp://api.convai.invalid", "https://"),
    ],
)
def test_the_client_refuses_a_base_url_that_cannot_be_convais(url: str, problem: str) -> None:
    with pytest.raises(InvalidRequestError, match=f"^base_url .*{problem}"):
        ConvaiClient("k", url)


def test_the_password_of_a_url_with_credentials_is_not_repeated() -> None:
    with pytest.raises(InvalidSettingError) as caught:
        ConvaiSettings.resolve({"convai:apiKey": "k", "convai:baseUrl": "https://u:hunter22@x"})
    assert "hunter22" not in str(caught.value)


@pytest.mark.parametrize("source", ["--base-url", "CONVAI_BASE_URL", "convai:baseUrl"])
def test_the_operator_commands_refuse_plain_http_naming_where_it_came_from(
    source: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("CONVAI_API_KEY", CONVAI_KEY)
    monkeypatch.delenv("CONVAI_BASE_URL", raising=False)
    (tmp_path / "stacks").mkdir()
    config: dict[str, Any] = {}
    argv = ["audit", "--stack", "s", "--root", str(tmp_path)]
    if source == "--base-url":
        argv += ["--base-url", "http://convai.invalid"]
    elif source == "CONVAI_BASE_URL":
        monkeypatch.setenv("CONVAI_BASE_URL", "http://convai.invalid")
    else:
        config["convai:baseUrl"] = "http://convai.invalid"
    (tmp_path / "stacks" / "Pulumi.s.yaml").write_text(yaml.safe_dump({"config": config}))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {source} ") and "in clear" in err and err.count("\n") == 1


def test_a_stack_pointing_at_convai_over_plain_http_fails_naming_the_setting(
    convai: EmulatorProcess,
) -> None:
    engine = Engine({**stack_config(convai), "convai:baseUrl": "http://convai.invalid"})
    with pytest.raises(ProviderError, match=r"convai:baseUrl .*in clear"):
        engine.up(declare(m=turbo()))
