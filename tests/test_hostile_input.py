"""Input no one should give: refused up front, naming the setting and the fix, leaking nothing."""

from __future__ import annotations

import io
import json
import logging
import math
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi.dynamic import ConfigureRequest, ReadResult
from pulumi.dynamic.config import Config

from convai_provider.api.access import LIBRARY_HINTS, ConvaiKeyError, Hints
from convai_provider.api.client import ConvaiClient
from convai_provider.api.errors import InvalidRequestError
from convai_provider.api.resolver import resolve_access
from convai_provider.api.retry import parse_retry_after
from convai_provider.emulator.process import EmulatorProcess
from convai_provider.guards.redaction import remember
from convai_provider.guards.text import SafeLogFilter
from convai_provider.preflight.checks import check_endpoint
from convai_provider.resources.base import ConvaiProvider
from convai_provider.resources.character_model import CharacterModelProvider
from convai_provider.resources.private_model import PrivateModelProvider
from convai_provider.resources.provider_errors import RedactedError
from convai_provider.resources.settings import (
    PULUMI_HINTS,
    ConvaiSettings,
    InvalidSettingError,
    MissingApiKeyError,
)
from convai_stack.commands.convai import CLI_HINTS
from convai_stack.commands.main import main
from convai_stack.stack_config import StackConfigError, parse_stack_config
from testkit.convai import CONVAI_KEY, ENDPOINT_KEY, declare, stack_config, turbo
from testkit.engine import Engine, ProviderError
from testkit.hostile_server import http_answer, serve_answer

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


# No Convai key: one sentence, saying where to set one ----------------------------------------

NO_KEY = (
    "No Convai API key: run `pulumi config set --secret convai:apiKey` or export CONVAI_API_KEY."
)


def missing_key_message(blank: str | None, hints: Hints) -> str:
    with pytest.raises(ConvaiKeyError) as missing:
        resolve_access({"convai:apiKey": blank}, {"CONVAI_API_KEY": blank or ""}, hints=hints)
    assert missing.value.missing
    return str(missing.value)


@pytest.mark.parametrize("blank", [None, "", "  ", "\t\n"])
def test_no_convai_key_is_one_sentence_with_the_callers_way_to_set_it(blank: str | None) -> None:
    assert missing_key_message(blank, PULUMI_HINTS) == NO_KEY
    assert missing_key_message(blank, CLI_HINTS) == (
        "No Convai API key: pass --api-key or export CONVAI_API_KEY."
    )
    assert missing_key_message(blank, LIBRARY_HINTS) == (
        "No Convai API key: set convai:apiKey or export CONVAI_API_KEY."
    )


@pytest.mark.parametrize("blank", ["", "  "])
def test_the_provider_settings_and_the_client_say_where_their_key_comes_from(blank: str) -> None:
    with pytest.raises(MissingApiKeyError) as missing:
        ConvaiSettings.resolve({"convai:apiKey": blank}, {"CONVAI_API_KEY": blank})
    assert str(missing.value) == NO_KEY
    with pytest.raises(InvalidRequestError) as refused:
        ConvaiClient(blank)  # a library caller: the client reads neither config nor environment
    assert str(refused.value) == "No Convai API key: pass api_key to ConvaiClient."


# Keys that cannot go in a header are refused without being repeated -------------------------

SECRET = "SECRET-7c1e9b44"
BAD_KEYS = {
    "LF": f"{SECRET}\n",
    "CR LF header": f"{SECRET}\r\nX-Injected: 1",
    "NUL": f"{SECRET}\x00",
    "tab": f"{SECRET}\tx",
    "DEL": f"{SECRET}\x7f",
    "non-ASCII": f"{SECRET}é",
    "zero-width": f"{SECRET}\u200b",
}


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_error_line_without(secret: str, code: int, out: str, err: str, *names: str) -> None:
    assert code == 2, out + err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert any(name in err for name in names), err
    assert secret not in out + err


@pytest.mark.parametrize("bad", list(BAD_KEYS))
def test_preflight_refuses_such_an_endpoint_key(
    bad: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["preflight", "--base-url", "http://127.0.0.1:9/v1", "--model", "m", "--timeout", "0"]
    result = cli([*argv, "--api-key", BAD_KEYS[bad]], capsys)
    assert_one_error_line_without(SECRET, *result, "--api-key")
    if "\x00" in BAD_KEYS[bad]:
        return  # an environment variable cannot hold NUL
    monkeypatch.setenv("ENDPOINT_API_KEY", BAD_KEYS[bad])
    assert_one_error_line_without(SECRET, *cli(argv, capsys), "ENDPOINT_API_KEY")


@pytest.mark.parametrize("bad", list(BAD_KEYS))
def test_list_refuses_such_a_convai_key(
    bad: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CONVAI_BASE_URL", "http://127.0.0.1:9")
    key = BAD_KEYS[bad].rstrip("\n\t")  # inside the key (surrounding whitespace: test_convai_key)
    if key == SECRET:
        key += "\x01"
    assert_one_error_line_without(SECRET, *cli(["list", "--api-key", key], capsys), "--api-key")
    if "\x00" in key:
        return  # an environment variable cannot hold NUL
    monkeypatch.setenv("CONVAI_API_KEY", key)
    assert_one_error_line_without(SECRET, *cli(["list"], capsys), "CONVAI_API_KEY")


@pytest.mark.parametrize("bad", list(BAD_KEYS))
def test_the_provider_settings_and_client_refuse_such_a_convai_key(bad: str) -> None:
    key = f"{BAD_KEYS[bad]}tail"  # inside the key, past what strip() removes
    with pytest.raises(InvalidSettingError) as caught:
        ConvaiSettings.resolve({"convai:apiKey": key})
    assert str(caught.value).startswith("convai:apiKey ") and SECRET not in str(caught.value)
    with pytest.raises(InvalidRequestError) as refused:
        ConvaiClient(key)
    assert SECRET not in str(refused.value)


ENDPOINT_KEY_REFUSAL = {
    "LF": "api_key must not start or end with whitespace",
    "CR LF header": "api_key must not contain control characters (found U+000D)",
    "NUL": "api_key must not contain control characters (found U+0000)",
    "tab": "api_key must not contain control characters (found U+0009)",
    "DEL": "api_key must not contain control characters (found U+007F)",
    "non-ASCII": "api_key contains a non-ASCII character, which HTTP headers cannot carry",
    "zero-width": "api_key contains a non-ASCII character, which HTTP headers cannot carry",
}


@pytest.mark.parametrize("bad", list(BAD_KEYS))
def test_check_refuses_such_an_endpoint_key_naming_the_field(bad: str) -> None:
    result = PrivateModelProvider().check({}, turbo(api_key=BAD_KEYS[bad]))
    (failure,) = result.failures
    assert failure.property == "api_key" and SECRET not in failure.reason
    assert failure.reason.startswith(ENDPOINT_KEY_REFUSAL[bad])


def test_a_create_handed_such_a_key_anyway_does_not_repeat_it(convai: EmulatorProcess) -> None:
    """The engine runs check first; a create that is handed the key all the same (verifying
    the endpoint, whose request would quote the header) still never repeats it."""
    provider = PrivateModelProvider()
    config = {"convai:apiKey": CONVAI_KEY, "convai:baseUrl": convai.url, "convai:verifyTimeout": 0}
    provider.configure(ConfigureRequest(Config(config, "convai-models")))
    with serve_answer(http_answer(200, {})) as url, pytest.raises(RedactedError) as caught:
        key = BAD_KEYS["CR LF header"]
        provider.create(turbo(api_key=key, base_url=f"{url}/v1", verify_endpoint=True))
    assert SECRET not in str(caught.value)


@pytest.mark.parametrize("where", ["environment", "outputs"])
@pytest.mark.parametrize("bad", ["CR LF header", "non-ASCII"])
def test_health_refuses_such_an_endpoint_key_naming_where_it_came_from(
    bad: str,
    where: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    write_stack(tmp_path, "http://127.0.0.1:9/v1")
    argv = ["health", "--stack", "s", "--root", str(tmp_path), "--timeout", "0"]
    if where == "environment":
        monkeypatch.setenv("LOCAL_VLLM_API_KEY", BAD_KEYS[bad])
        name = "LOCAL_VLLM_API_KEY"
    else:
        outputs = json.dumps({"endpointKeys": {"alpha": BAD_KEYS[bad]}})
        monkeypatch.setattr(sys, "stdin", io.StringIO(outputs))
        argv += ["--outputs", "-"]
        name = "endpointKeys.alpha"
    assert_one_error_line_without(SECRET, *cli(argv, capsys), name)


# The last line of defence: a key a server echoes never leaves the process -----------------


def test_a_key_echoed_by_convai_is_redacted_from_the_list_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    echo = http_answer(401, {"status": "error", "message": f"Invalid key {CONVAI_KEY}"})
    with serve_answer(echo) as url:
        monkeypatch.setenv("CONVAI_API_KEY", CONVAI_KEY)
        code, out, err = cli(["list", "--base-url", url], capsys)
    assert code == 2 and "Invalid key [secret]" in err
    assert CONVAI_KEY not in out + err


def test_an_endpoint_key_echoed_by_the_endpoint_is_redacted_from_health(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key = "sk-endpoint-echoed-40c2"
    echo = http_answer(401, {"error": {"message": f"Incorrect API key provided: {key}"}})
    with serve_answer(echo) as url:
        write_stack(tmp_path, f"{url}/v1")
        monkeypatch.setenv("LOCAL_VLLM_API_KEY", key)
        code, out, err = cli(["health", "--stack", "s", "--root", str(tmp_path)], capsys)
    assert code == 1 and "Incorrect API key provided: [secret]" in out
    assert key not in out + err


def test_a_key_echoed_by_convai_is_redacted_from_provider_errors(convai: EmulatorProcess) -> None:
    echo = http_answer(400, {"status": "error", "message": f"bad {CONVAI_KEY} / {ENDPOINT_KEY}"})
    engine = Engine(stack_config(convai))
    with serve_answer(echo) as url:
        engine.config = {**stack_config(convai), "convai:baseUrl": url}
        with pytest.raises(ProviderError) as caught:
            engine.up(declare(m=turbo()))
    assert "bad [secret] / [secret]" in caught.value.details
    assert CONVAI_KEY not in caught.value.details and ENDPOINT_KEY not in caught.value.details


def test_the_provider_log_is_redacted() -> None:
    remember("sk-logged-key-88f1")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(SafeLogFilter())
    log = logging.getLogger("convai_provider.test_redaction")
    log.addHandler(handler)
    log.warning("key %s and %r", "sk-logged-key-88f1", "sk-logged-key-88f1\n")
    assert "sk-logged-key" not in stream.getvalue() and stream.getvalue().count("[secret]") == 2


def write_stack(root: Path, base_url: str) -> None:
    endpoint = {
        "name": "local",
        "kind": "external",
        "base_url": base_url,
        "model_name": "llama-3.1-8b",
        "api_key_config": "localVllmApiKey",
    }
    config = {
        "convai-models:endpoints": [endpoint],
        "convai-models:models": [{"model_group_name": "alpha", "endpoint": "local"}],
    }
    (root / "stacks").mkdir(exist_ok=True)
    (root / "stacks" / "Pulumi.s.yaml").write_text(yaml.safe_dump({"config": config}))


# nan and inf are no timeouts ----------------------------------------------------------------

TIMEOUTS = ["convai:requestTimeout", "convai:operationTimeout", "convai:verifyTimeout"]
NOT_A_NUMBER_OF_SECONDS = ["nan", "NaN", "inf", "-inf", "1e999", "1e300", "-1", "ten", True]


@pytest.mark.parametrize("setting", [*TIMEOUTS, "convai:maxRetries"])
@pytest.mark.parametrize("value", NOT_A_NUMBER_OF_SECONDS)
def test_every_timeout_and_retry_setting_refuses_what_is_not_a_sane_number(
    setting: str, value: object
) -> None:
    with pytest.raises(InvalidSettingError) as caught:
        ConvaiSettings.resolve({"convai:apiKey": "k", setting: value})
    assert str(caught.value).startswith(f"{setting} is ")


@pytest.mark.parametrize("value", ["2.5", "0.5", 1.25])
def test_max_retries_must_be_a_whole_number(value: str) -> None:
    with pytest.raises(InvalidSettingError, match="whole number"):
        ConvaiSettings.resolve({"convai:apiKey": "k", "convai:maxRetries": value})


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("convai:requestTimeout", "2.5", 2.5),
        ("convai:operationTimeout", "600", 600.0),
        ("convai:verifyTimeout", "0", 0.0),
        ("convai:maxRetries", "0", 0),
        ("convai:maxRetries", "7", 7),
    ],
)
def test_sane_numbers_are_accepted(setting: str, value: str, expected: float) -> None:
    settings = ConvaiSettings.resolve({"convai:apiKey": "k", setting: value})
    field = {
        "convai:requestTimeout": "request_timeout",
        "convai:operationTimeout": "operation_timeout",
        "convai:verifyTimeout": "verify_timeout",
        "convai:maxRetries": "max_retries",
    }[setting]
    assert getattr(settings, field) == expected


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "1e999", "-1", "90000"])
@pytest.mark.parametrize("command", ["preflight", "health"])
def test_the_commands_refuse_a_timeout_that_is_not_a_number_of_seconds(
    command: str, value: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_stack(tmp_path, "http://127.0.0.1:9/v1")
    argv = {
        "preflight": ["preflight", "--base-url", "http://127.0.0.1:9/v1", "--model", "m"],
        "health": ["health", "--stack", "s", "--root", str(tmp_path)],
    }[command]
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--timeout", value])
    err = capsys.readouterr().err
    assert exited.value.code == 2
    assert err.startswith("error: argument --timeout: ") and err.count("\n") == 1, err


@pytest.mark.parametrize(
    ("build", "name"),
    [
        (lambda: ConvaiClient("k", timeout=float("nan")), "timeout"),
        (lambda: ConvaiClient("k", timeout=float("inf")), "timeout"),
        (lambda: ConvaiClient("k", max_retries=-1), "max_retries"),
        (lambda: check_endpoint("http://127.0.0.1:9/v1", "m", None, wait=float("nan")), "wait"),
        (
            lambda: check_endpoint("http://127.0.0.1:9/v1", "m", None, request_timeout=math.inf),
            "request_timeout",
        ),
    ],
)
def test_the_library_refuses_nan_and_inf_naming_the_argument(
    build: Callable[[], object], name: str
) -> None:
    with pytest.raises(ValueError, match=f"^{name} "):
        build()


@pytest.mark.parametrize("header", ["nan", "inf", "-inf", "1e999"])
def test_a_retry_after_that_is_not_a_number_of_seconds_is_ignored(header: str) -> None:
    assert parse_retry_after(header) is None


# Names a user cannot see, or that hold control characters ---------------------------------

INVISIBLE_OR_CONTROL = {
    "zero-width space": "\u200b",
    "zero-width joiners": "\u200d\u200c\ufeff",
    "word joiner and space": "\u2060 \u200b",
    "newline inside": "a\nb",
    "NUL inside": "a\x00b",
    "escape inside": "a\x1b[31mb",
    "line separator inside": "a\u2028b",
    "lone surrogate": "a\ud800b",
}
PRIVATE_MODEL_NAMES = ["model_group_name", "model_name", "display_name"]


@pytest.mark.parametrize("field", PRIVATE_MODEL_NAMES)
@pytest.mark.parametrize("name", list(INVISIBLE_OR_CONTROL))
def test_check_refuses_invisible_names_and_control_characters_naming_the_field(
    field: str, name: str
) -> None:
    result = PrivateModelProvider().check({}, turbo(**{field: INVISIBLE_OR_CONTROL[name]}))
    assert [f.property for f in result.failures] == [field]
    reason = result.failures[0].reason
    control = name not in ("zero-width space", "zero-width joiners", "word joiner and space")
    expected = "not contain control characters" if control else "contain a visible character"
    assert reason.startswith(f"{field} must {expected}")


@pytest.mark.parametrize("field", ["char_id", "model_group_name", "fallback_model_group_name"])
@pytest.mark.parametrize("name", list(INVISIBLE_OR_CONTROL))
def test_the_character_binding_refuses_them_too(field: str, name: str) -> None:
    news = {"char_id": "c1", "model_group_name": "g", field: INVISIBLE_OR_CONTROL[name]}
    result = CharacterModelProvider().check({}, news)
    assert [f.property for f in result.failures] == [field]


@pytest.mark.parametrize(
    "name", ["Llama 3.1 (8B)", "Ünïcödé", "模型", "👩\u200d💻 coder", "a\u200bb", "عربي\u200f"]
)
def test_visible_names_with_any_script_or_joiner_are_accepted(name: str) -> None:
    assert PrivateModelProvider().check({}, turbo(display_name=name)).failures == []


@pytest.mark.parametrize("url", ["https://llm.example.com/v1\n", "https://llm.exa\tmple.com/v1"])
def test_check_refuses_a_base_url_with_control_characters(url: str) -> None:
    (failure,) = PrivateModelProvider().check({}, turbo(base_url=url)).failures
    assert failure.property == "base_url" and "control" in failure.reason


@pytest.mark.parametrize("name", list(INVISIBLE_OR_CONTROL))
def test_the_stack_schema_refuses_them_naming_the_path(name: str) -> None:
    config = {
        "endpoints": [
            {
                "name": "local",
                "kind": "external",
                "base_url": "http://127.0.0.1:8000/v1",
                "model_name": "m",
                "api_key_config": "localVllmApiKey",
            }
        ],
        "models": [{"model_group_name": INVISIBLE_OR_CONTROL[name], "endpoint": "local"}],
    }
    with pytest.raises(StackConfigError, match=r"convai-models:models\[0\]\.model_group_name"):
        parse_stack_config(config)


@pytest.mark.parametrize("field", ["storage_class", "ingress_class", "cluster_issuer"])
def test_kubernetes_names_in_the_stack_refuse_control_characters(field: str) -> None:
    endpoint = {
        "name": "big",
        "kind": "vllm",
        "model": "meta-llama/Llama-3.1-8B-Instruct",
        "served_model_name": "llama",
        "host": "llama.example.com",
        field: "nginx\nx",
    }
    with pytest.raises(StackConfigError, match=rf"endpoints\[0\]\.{field}: must not contain"):
        parse_stack_config({"endpoints": [endpoint]})


class ChainingProvider(ConvaiProvider):
    """A provider whose read fails with an error caused by one that quotes the key."""

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        try:
            raise ValueError(f"header {props['api_key']!r} refused")
        except ValueError:
            raise RuntimeError("read failed")  # noqa: B904 - the implicit chain is the point


def test_no_key_reaches_pulumi_through_a_chained_exception() -> None:
    key = "sk-chained-key-5e0d"
    with pytest.raises(RedactedError) as caught:
        ChainingProvider().read("m", {"api_key": key})
    printed = "".join(traceback.format_exception(caught.value))
    assert key not in printed and "read failed" in printed
