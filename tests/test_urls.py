"""One set of URL rules, in the same words at every place a URL comes in."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Callable

import pytest

from convai_provider.api.access import convai_url_problem
from convai_provider.api.client import ConvaiClient
from convai_provider.api.errors import InvalidRequestError
from convai_provider.guards.urls import endpoint_url_problem, shown_url, url_on_loopback
from convai_provider.preflight.certificates import presented_issuer
from convai_provider.preflight.checks import Preflight
from convai_provider.resources.private_model import PrivateModelProvider
from convai_provider.resources.settings import ConvaiSettings, InvalidSettingError
from convai_stack.commands.main import main
from convai_stack.stack_config import StackConfigError, parse_stack_config

CONVAI = "such as https://api.convai.com"
ENDPOINT = "such as https://llm.example.com/v1"
NOT_A_CONVAI_URL = f"must be an https URL with a host, {CONVAI}"
NOT_AN_ENDPOINT_URL = f"must be an http(s) URL with a host, {ENDPOINT}"
UNREADABLE = "cannot be read as a URL"
CREDENTIALS = "must not carry credentials: the API key goes in a header"
SPACES = "must not contain spaces or control characters"
IN_CLEAR = "must use https: plain http would send the Convai API key in clear"

# (url, Convai's problem, an endpoint's problem); None: accepted.
CASES = [
    ("https://api.convai.com", None, None),
    ("https://llm.example.com:8443/v1/", None, None),
    ("http://127.0.0.1:8787", None, None),
    ("http://[::1]:8000/v1", None, None),
    ("http://localhost:8000", None, None),
    ("http://10.0.0.7:8000/v1", IN_CLEAR, None),
    ("HTTP://llm.example.com/v1", IN_CLEAR, None),
    ("ftp://llm.example.com/v1", NOT_A_CONVAI_URL, NOT_AN_ENDPOINT_URL),
    ("llm.example.com/v1", NOT_A_CONVAI_URL, NOT_AN_ENDPOINT_URL),
    ("https://", NOT_A_CONVAI_URL, NOT_AN_ENDPOINT_URL),
    ("https://[::1/v1", f"{UNREADABLE} (Invalid IPv6 URL)", f"{UNREADABLE} (Invalid IPv6 URL)"),
    (
        "https://llm.example.com:99999/v1",
        f"{UNREADABLE} (Port out of range 0-65535): give one {CONVAI}",
        f"{UNREADABLE} (Port out of range 0-65535): give one {ENDPOINT}",
    ),
    ("https://u:hunter22@llm.example.com/v1", CREDENTIALS, CREDENTIALS),
    (
        "https://llm.example.com/v1?key=1",
        f"must not carry a query string or fragment: give the API root, {CONVAI}",
        f"must not carry a query string or fragment: give the API root, {ENDPOINT}",
    ),
    ("https://llm.example.com/v1#top", "must not carry a query", "must not carry a query"),
    ("https://llm.example.com/v1\t", SPACES, SPACES),
    ("https://llm.exa mple.com/v1", SPACES, SPACES),
    ("https://llm.example.com/\u200bv1", SPACES, SPACES),
    ("https://llm.example.com/v1\n", SPACES, SPACES),
]


@pytest.mark.parametrize(("url", "convai", "endpoint"), CASES)
def test_each_kind_of_url_is_judged_by_the_shared_rules(
    url: str, convai: str | None, endpoint: str | None
) -> None:
    for problem, expected in (
        (convai_url_problem(url), convai),
        (endpoint_url_problem(url), endpoint),
    ):
        if expected is None:
            assert problem is None
        else:
            assert problem is not None and problem.startswith(expected)


def test_a_url_is_shown_without_its_credentials() -> None:
    assert shown_url("https://u:hunter22@h/v1") == "https://…@h/v1"
    assert shown_url("https://h/v1") == "https://h/v1"


# Every place a URL comes in says the same ------------------------------------------------------

BAD = "https://u:hunter22@llm.example.com/v1"
SHOWN = "'https://…@llm.example.com/v1'"


def _raised(call: Callable[[], object], kind: type[Exception]) -> str:
    with pytest.raises(kind) as caught:
        call()
    return str(caught.value)


def _command_error(*argv: str) -> str:
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert main(list(argv)) == 2
    return err.getvalue()


CONVAI_URL_DOORS: dict[str, tuple[Callable[[str], str], str]] = {
    "the client": (
        lambda url: _raised(lambda: ConvaiClient("k", url), InvalidRequestError),
        "base_url {shown} {problem}.",
    ),
    "the provider's settings": (
        lambda url: _raised(
            lambda: ConvaiSettings.resolve({"convai:apiKey": "k", "convai:baseUrl": url}),
            InvalidSettingError,
        ),
        "convai:baseUrl {shown} {problem}.",
    ),
    "the operator commands": (
        lambda url: _command_error("list", "--api-key", "k", "--base-url", url),
        "error: --base-url {shown} {problem}.\n",
    ),
}


@pytest.mark.parametrize("door", list(CONVAI_URL_DOORS))
def test_every_place_taking_convais_url_refuses_it_in_the_same_words(door: str) -> None:
    refuse, template = CONVAI_URL_DOORS[door]
    for url, shown in ((BAD, SHOWN), ("http://convai.invalid", "'http://convai.invalid'")):
        problem = convai_url_problem(url)
        assert refuse(url) == template.format(shown=shown, problem=problem)


def _model_check(url: str) -> str:
    fields = {"model_group_name": "g", "model_name": "m", "api_key": "EMPTY", "base_url": url}
    (failure,) = PrivateModelProvider().check({}, fields).failures
    return f"{failure.property}: {failure.reason}"


def _stack_config(url: str) -> str:
    endpoint = {
        "name": "ext",
        "kind": "external",
        "base_url": url,
        "model_name": "m",
        "api_key_config": "extKey",
    }
    return _raised(lambda: parse_stack_config({"endpoints": [endpoint]}), StackConfigError)


def _preflight_report(url: str) -> str:
    preflight = Preflight(url, "m", None)
    try:
        report = preflight.run_once()
    finally:
        preflight.close()
    failure = report.failure
    assert failure is not None and failure.final
    return failure.detail


ENDPOINT_URL_DOORS: dict[str, tuple[Callable[[str], str], str]] = {
    "a model's check": (_model_check, "base_url: base_url {problem} (got {shown})"),
    "a stack's endpoint": (
        _stack_config,
        "convai-models:endpoints[0].base_url: {problem} (got {shown})",
    ),
    "the preflight": (_preflight_report, "base_url {shown} {problem}"),
    "the preflight command": (
        lambda url: _command_error("preflight", "--base-url", url, "--model", "m"),
        "error: --base-url {shown} {problem}\n",
    ),
}


@pytest.mark.parametrize("door", list(ENDPOINT_URL_DOORS))
def test_every_place_taking_an_endpoints_url_refuses_it_in_the_same_words(door: str) -> None:
    refuse, template = ENDPOINT_URL_DOORS[door]
    for url, shown in ((BAD, SHOWN), ("llm.example.com/v1", "'llm.example.com/v1'")):
        expected = template.format(shown=shown, problem=endpoint_url_problem(url))
        said = refuse(url)
        assert expected in said and "hunter22" not in said


def test_an_unreadable_url_has_no_certificate_to_read() -> None:
    assert presented_issuer("https://llm.example.com:99999/v1", timeout=1) is None
    assert presented_issuer("http://llm.example.com/v1", timeout=1) is None


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8787", True),
        ("http://127.8.9.1/v1", True),
        ("http://localhost:8000/v1", True),
        ("http://LOCALHOST/v1", True),
        ("http://[::1]:8787", True),
        ("http://10.0.0.7/v1", False),
        ("http://127.0.0.1.example.com/v1", False),
        ("https://api.convai.com", False),
        ("not a url", False),
    ],
)
def test_one_rule_says_whether_a_url_stays_on_the_machine(url: str, loopback: bool) -> None:
    """The program (a plain key allowed for the emulator) and the policy pack (plain http allowed)
    ask the same question the same way."""
    assert url_on_loopback(url) is loopback
