"""The endpoint preflight against a local OpenAI-compatible server, every failure mode included."""

from __future__ import annotations

import importlib
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, NamedTuple

import httpx
import pytest

from convai_provider import ConvaiPrivateModel
from convai_provider.emulator.process import EmulatorProcess
from convai_provider.preflight.certificates import is_staging_issuer
from convai_provider.preflight.checks import (
    WAIT_NOTICE_EVERY,
    Preflight,
    PreflightReport,
    check_endpoint,
)
from convai_stack.commands.preflight_command import Progress
from testkit.convai import live, stack_config
from testkit.engine import Declared, Engine, ProviderError, run_program
from testkit.openai_server import EndpointBehaviour, serve_endpoint

KEY = "sk-endpoint"
MODEL = "llama-3.1-8b"


def run(
    base_url: str, model: str = MODEL, key: str | None = KEY, wait: float = 0.0
) -> PreflightReport:
    return check_endpoint(base_url, model, key, wait=wait, interval=0.05, request_timeout=2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("flavour", ["vllm", "vllm-legacy", "sglang", "openai"])
def test_a_healthy_endpoint_passes_every_check(flavour: str) -> None:
    behaviour = EndpointBehaviour(flavour=flavour)
    with serve_endpoint(behaviour) as url:
        report = run(url)
    assert report.ok, report.summary()
    assert [c.name for c in report.checks] == [
        "reachable",
        "key accepted",
        "model listed",
        "key enforced",
        "chat completion",
    ]
    assert behaviour.chats == 1


@pytest.mark.parametrize("flavour", ["vllm", "vllm-legacy", "sglang", "openai"])
def test_a_wrong_key_is_reported_with_the_servers_words(flavour: str) -> None:
    with serve_endpoint(EndpointBehaviour(flavour=flavour)) as url:
        report = run(url, key="sk-wrong", wait=30)
    assert report.attempts == 1  # waiting cannot fix a wrong key
    failure = report.failure
    assert failure is not None and failure.name == "key accepted"
    assert "refused the API key (HTTP 401" in failure.detail
    expected = "Incorrect API key provided" if flavour == "openai" else "Unauthorized"
    assert expected in failure.detail
    assert "--api-key" in failure.detail


def test_a_model_that_is_not_served_names_the_ones_that_are() -> None:
    with serve_endpoint(EndpointBehaviour(served=["qwen-7b", "llama-3.1-8b"])) as url:
        report = run(url, model="mistral-7b")
    failure = report.failure
    assert failure is not None and failure.name == "model listed"
    assert "'mistral-7b' is not served" in failure.detail
    assert "'qwen-7b', 'llama-3.1-8b'" in failure.detail


@pytest.mark.parametrize(
    ("flavour", "message"),
    [("vllm", "engine failure"), ("vllm-legacy", "engine failure"), ("sglang", "engine failure")],
)
def test_a_failing_completion_is_reported_with_the_servers_message(
    flavour: str, message: str
) -> None:
    with serve_endpoint(EndpointBehaviour(flavour=flavour, chat_status=500)) as url:
        report = run(url)
    failure = report.failure
    assert failure is not None and failure.name == "chat completion"
    assert "HTTP 500" in failure.detail and message in failure.detail


def test_an_endpoint_without_auth_passes_but_is_called_out() -> None:
    with serve_endpoint(EndpointBehaviour(api_key=None)) as url:
        report = run(url, key="EMPTY")
    assert report.ok
    enforced = next(c for c in report.checks if c.name == "key enforced")
    assert "does not check keys" in enforced.detail and enforced.warning


def test_a_closed_port_is_unreachable() -> None:
    report = run(f"http://127.0.0.1:{free_port()}/v1")
    failure = report.failure
    assert failure is not None and failure.name == "reachable"
    assert "could not connect" in failure.detail and "is the server running" in failure.detail


def test_a_host_that_does_not_resolve_is_a_dns_failure() -> None:
    report = run("http://convai-preflight.invalid/v1")
    failure = report.failure
    assert failure is not None and "does not resolve (DNS)" in failure.detail


def test_tls_to_a_plain_http_server_is_a_tls_failure() -> None:
    with serve_endpoint(EndpointBehaviour()) as url:
        report = run(url.replace("http://", "https://"), wait=30)
    failure = report.failure
    assert failure is not None and "TLS handshake" in failure.detail
    assert report.attempts == 1


def test_a_server_that_never_answers_times_out() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        preflight = Preflight(f"http://127.0.0.1:{port}/v1", MODEL, KEY, request_timeout=0.3)
        report = preflight.run_once()
        preflight.close()
    failure = report.failure
    assert failure is not None
    assert "accepted the connection but did not complete its reply in time" in failure.detail


def test_a_base_url_that_is_not_the_api_root_is_explained() -> None:
    with serve_endpoint(EndpointBehaviour()) as url:
        report = run(url.removesuffix("/v1"))
    failure = report.failure
    assert failure is not None and failure.name == "key accepted"
    root = url.removesuffix("/v1")
    assert f"{root}/models answered HTTP 404" in failure.detail
    assert f"it usually ends in /v1 (try {root}/v1)" in failure.detail
    assert report.attempts == 1


def test_no_key_is_said_to_be_missing_not_refused() -> None:
    with serve_endpoint(EndpointBehaviour()) as url:
        report = run(url, key=None, wait=30)
    failure = report.failure
    assert failure is not None and failure.name == "key accepted"
    assert "no API key was given and the endpoint requires one (HTTP 401" in failure.detail
    assert "--api-key or $ENDPOINT_API_KEY" in failure.detail
    assert "refused" not in failure.detail
    assert report.attempts == 1


def test_a_base_url_that_is_not_a_url_is_said_to_be_one() -> None:
    report = run("not-a-url", wait=30)
    failure = report.failure
    assert failure is not None and failure.final
    assert failure.detail == (
        "base_url 'not-a-url' must be an http(s) URL with a host, such as "
        "https://llm.example.com/v1"
    )
    assert report.attempts == 1


class FakeTime:
    """A clock that moves only when the preflight sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.mark.parametrize("wait", [10.0, 30.0, 100.0])
def test_the_whole_wait_budget_is_used(wait: float) -> None:
    fake = FakeTime()
    with serve_endpoint(EndpointBehaviour(ready_at=time.monotonic() + 600)) as url:
        preflight = Preflight(url, MODEL, KEY, sleep=fake.sleep, clock=fake.clock)
        report = preflight.run(wait=wait, interval=5.0)
        preflight.close()
    assert report.failure is not None and "HTTP 503" in report.failure.detail
    assert wait - 1 <= report.waited <= wait
    assert report.attempts >= 3


def run_on(fake: FakeTime, url: str, wait: float, interval: float = 0.05) -> PreflightReport:
    preflight = Preflight(url, MODEL, KEY, sleep=fake.sleep, clock=fake.clock)
    try:
        return preflight.run(wait=wait, interval=interval)
    finally:
        preflight.close()


EPOCH = 1_700_000_000.0
"""The wall clock of the table's preflights: Tue, 14 Nov 2023 22:13:20 GMT."""

MODEL_LIST = {"object": "list", "data": [{"id": MODEL}]}


def scripted_endpoint(answers: list[tuple[int, dict[str, str]]]) -> httpx.MockTransport:
    """Each keyed GET /models answers the next (status, headers) of `answers`, then the model
    list; a keyless one is refused, a chat completion succeeds."""
    left = list(answers)

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/chat/completions"):
            return httpx.Response(200, json={"choices": [{"index": 0}]})
        if "authorization" not in request.headers:
            return httpx.Response(401, json={"error": "Unauthorized"})
        if left:
            status, headers = left.pop(0)
            return httpx.Response(status, json={"error": "busy"}, headers=headers)
        return httpx.Response(200, json=MODEL_LIST)

    return httpx.MockTransport(answer)


RETRY_AT_SEVEN = {"Retry-After": "Tue, 14 Nov 2023 22:13:27 GMT"}


class Wait(NamedTuple):
    answers: list[tuple[int, dict[str, str]]]
    """What the keyed GET /models answers before the model list: (status, headers)."""
    wait: float
    interval: float
    slept: list[float]
    """Every sleep, pauses longer than WAIT_NOTICE_EVERY in slices."""
    attempts: int
    ok: bool


WAITS = {
    "ready": Wait([], 60, 2.0, [], 1, True),
    "backoff doubles": Wait([(503, {})] * 2, 60, 2.0, [2.0, 4.0], 3, True),
    # 8, 16, 30 (the cap), then what is left but the last attempt's half second
    "capped, to the end": Wait([(500, {})] * 9, 60, 8.0, [8, 10, 6, 10, 10, 10, 5.5], 5, False),
    "the last attempt at the end": Wait([(503, {})] * 9, 10, 5.0, [5.0, 4.5], 3, False),
    "retry-after": Wait([(429, {"Retry-After": "7"})], 60, 2.0, [7.0], 2, True),
    "retry-after as a date": Wait([(429, RETRY_AT_SEVEN)], 60, 2.0, [7.0], 2, True),
    "retry-after past the wait": Wait([(429, {"Retry-After": "61"})], 60, 2.0, [], 1, False),
    "a long retry-after, sliced": Wait([(503, {"Retry-After": "25"})], 60, 2, [10, 10, 5], 2, True),
    "a refusal is final": Wait([(401, {})], 60, 2.0, [], 1, False),
    "not the api root: final": Wait([(404, {})], 60, 2.0, [], 1, False),
}


@pytest.mark.parametrize("case", list(WAITS))
def test_the_wait_follows_the_one_retry_policy_on_the_preflights_clock(
    monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    """Every pause and deadline is on the injected clocks (no jitter: `random` patched to 0)."""
    expected = WAITS[case]
    monkeypatch.setattr(random, "random", lambda: 0.0)
    fake = FakeTime()
    preflight = Preflight(
        "http://127.0.0.1:8000/v1",
        MODEL,
        KEY,
        transport=scripted_endpoint(expected.answers),
        sleep=fake.sleep,
        clock=fake.clock,
        wall_clock=lambda: EPOCH + fake.now,
    )
    try:
        report = preflight.run(wait=expected.wait, interval=expected.interval)
    finally:
        preflight.close()
    assert fake.slept == expected.slept
    assert report.ok is expected.ok, report.summary()
    assert report.attempts == expected.attempts


@pytest.mark.parametrize("flavour", ["vllm", "openai"])
def test_a_rate_limited_endpoint_is_asked_again_after_its_retry_after(flavour: str) -> None:
    fake = FakeTime()
    behaviour = EndpointBehaviour(flavour=flavour, rate_limited=2, retry_after="7")
    with serve_endpoint(behaviour) as url:
        report = run_on(fake, url, wait=60)
    assert report.ok, report.summary()
    assert fake.slept == [7.0, 7.0] and report.attempts == 3


def test_a_retry_after_past_the_wait_ends_it_with_the_reason() -> None:
    fake = FakeTime()
    with serve_endpoint(EndpointBehaviour(rate_limited=1, retry_after="120")) as url:
        report = run_on(fake, url, wait=60)
    assert fake.slept == [] and report.attempts == 1
    assert report.failure is not None and report.failure.name == "reachable"
    assert "HTTP 429" in report.summary()
    assert "rate limited, asked to retry after 120s" in report.summary()


def test_a_rate_limit_without_retry_after_is_retried_with_the_backoff() -> None:
    fake = FakeTime()
    with serve_endpoint(EndpointBehaviour(rate_limited=3)) as url:
        report = run_on(fake, url, wait=60, interval=2.0)
    assert report.ok and report.attempts == 4
    # Backoff: doubling from the interval, each cut by up to a quarter (jitter).
    for retry, slept in enumerate(fake.slept):
        assert 0.75 * 2.0 * 2**retry <= slept <= 2.0 * 2**retry


def test_an_unready_answer_to_the_keyless_probe_is_no_verdict_on_keys() -> None:
    """A 503 to the request without the key says nothing about whether keys are checked."""
    fake = FakeTime()
    with serve_endpoint(EndpointBehaviour(keyless_unready=1)) as url:
        report = run_on(fake, url, wait=60)
    assert report.ok and report.attempts == 2
    (enforced,) = [c for c in report.checks if c.name == "key enforced"]
    assert not enforced.warning and enforced.detail == "requests without the key are refused"


def test_the_preflight_command_waits_out_a_rate_limit() -> None:
    with serve_endpoint(EndpointBehaviour(rate_limited=1, retry_after="1")) as url:
        done = preflight_cli(
            "--base-url", url, "--model", MODEL, "--api-key", KEY, "--timeout", "30"
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "rate limited" in done.stderr  # the wait was said


def test_a_long_wait_says_why_at_least_every_ten_seconds() -> None:
    fake = FakeTime()
    notices: list[float] = []
    with serve_endpoint(EndpointBehaviour(ready_at=time.monotonic() + 600)) as url:
        preflight = Preflight(url, MODEL, KEY, sleep=fake.sleep, clock=fake.clock)
        report = preflight.run(wait=120, interval=5.0, on_wait=lambda r: notices.append(r.waited))
        preflight.close()
    assert report.attempts < len(notices)  # pauses of 20 and 30 s are cut into slices
    gaps = [b - a for a, b in zip([0.0, *notices], [*notices, report.waited], strict=True)]
    assert max(gaps) <= WAIT_NOTICE_EVERY + 1e-9, gaps  # sums of floats


def test_waits_until_a_loading_model_is_ready() -> None:
    behaviour = EndpointBehaviour(loading=3)
    with serve_endpoint(behaviour) as url:
        report = run(url, wait=20)
    assert report.ok
    assert report.attempts > 1 and report.waited > 0


def test_gives_up_when_the_budget_is_spent_with_the_last_reason() -> None:
    behaviour = EndpointBehaviour(ready_at=time.monotonic() + 60)
    with serve_endpoint(behaviour) as url:
        report = run(url, wait=0.5)
    assert not report.ok and report.attempts >= 2
    assert report.failure is not None and report.failure.name == "reachable"
    assert "HTTP 503" in report.summary() and "not ready yet" in report.summary()


# The CLI --------------------------------------------------------------------------------------


def preflight_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "convai_provider", "preflight", *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_prints_each_check_and_exits_zero_when_healthy() -> None:
    with serve_endpoint(EndpointBehaviour()) as url:
        done = preflight_cli(
            "--base-url", url, "--model", MODEL, "--api-key", KEY, "--timeout", "5"
        )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("reachable", "key accepted", "model listed", "key enforced", "chat completion"):
        assert name in done.stdout
    assert KEY not in done.stdout + done.stderr


def test_cli_retries_for_its_whole_timeout_and_says_so_when_piped() -> None:
    with serve_endpoint(EndpointBehaviour(ready_at=time.monotonic() + 600)) as url:
        done = preflight_cli(
            "--base-url", url, "--model", MODEL, "--api-key", KEY, "--timeout", "4"
        )
    assert done.returncode == 1
    attempts, waited = re.search(r"after (\d+) attempts over (\d+)s", done.stdout).groups()  # type: ignore[union-attr]
    assert int(attempts) >= 2 and int(waited) >= 3
    assert "waiting (0s): Endpoint check 'reachable' failed" in done.stderr


def test_piped_progress_is_shown_every_ten_seconds(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress(terminal=False)
    for waited in (0.0, 5.0, 10.0, 12.0, 21.0, 25.0):
        progress(PreflightReport("http://127.0.0.1:1/v1", MODEL, attempts=2, waited=waited))
    shown = [line.split(")")[0] for line in capsys.readouterr().err.splitlines()]
    assert shown == ["waiting (0s", "waiting (10s", "waiting (21s"]


def test_cli_refuses_a_base_url_that_is_not_a_url() -> None:
    done = preflight_cli("--base-url", "not-a-url", "--model", MODEL, "--timeout", "30")
    assert done.returncode == 2
    assert done.stderr == (
        "error: --base-url 'not-a-url' must be an http(s) URL with a host, such as "
        "https://llm.example.com/v1\n"
    )


def test_cli_shows_a_keyless_endpoint_as_a_warning() -> None:
    with serve_endpoint(EndpointBehaviour(api_key=None)) as url:
        done = preflight_cli("--base-url", url, "--model", MODEL, "--timeout", "5")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "WARN  key enforced: the endpoint does not check keys" in done.stdout
    assert "PASS  key enforced" not in done.stdout


def test_cli_exits_non_zero_with_the_reason() -> None:
    with serve_endpoint(EndpointBehaviour()) as url:
        done = preflight_cli(
            "--base-url", url, "--model", "nope", "--api-key", KEY, "--timeout", "0"
        )
    assert done.returncode == 1
    assert "'nope' is not served" in done.stdout


# In the resource --------------------------------------------------------------------------------


def declare_model(url: str, key: str, **extra: Any) -> list[Declared]:
    def program() -> None:
        ConvaiPrivateModel(
            "m", model_group_name="g", model_name=MODEL, api_key=key, base_url=url, **extra
        )

    return [Declared.from_registration(r) for r in run_program(program)]


def test_the_resource_refuses_to_register_a_failing_endpoint(convai: EmulatorProcess) -> None:
    engine = Engine({**stack_config(convai), "convai:verifyTimeout": "0"})
    with serve_endpoint(EndpointBehaviour()) as url, pytest.raises(ProviderError) as caught:
        engine.up(declare_model(url, "sk-wrong"))
    assert "Could not create Convai private model 'g'" in caught.value.details
    assert "refused the API key" in caught.value.details
    assert "Nothing was sent to Convai" in caught.value.details
    assert convai.request_counts() == {}
    assert live(convai) == {}


def test_the_resource_registers_a_healthy_endpoint(convai: EmulatorProcess) -> None:
    engine = Engine(stack_config(convai))
    with serve_endpoint(EndpointBehaviour()) as url:
        engine.up(declare_model(url, KEY))
    assert list(live(convai)) == ["g"]


def test_an_update_to_a_broken_endpoint_is_refused_before_convai_hears_of_it(
    convai: EmulatorProcess,
) -> None:
    engine = Engine({**stack_config(convai), "convai:verifyTimeout": "0"})
    with serve_endpoint(EndpointBehaviour()) as url:
        engine.up(declare_model(url, KEY))
        convai.clear_counts()
        with pytest.raises(ProviderError, match="refused the API key"):
            engine.up(declare_model(url, "sk-rotated-wrong"))
    assert convai.request_counts() == {}


def test_preview_never_runs_the_preflight(convai: EmulatorProcess) -> None:
    behaviour = EndpointBehaviour()
    with serve_endpoint(behaviour) as url:
        Engine(stack_config(convai)).preview(declare_model(url, KEY))
    assert behaviour.chats == 0


def test_verify_endpoint_false_skips_the_preflight(convai: EmulatorProcess) -> None:
    engine = Engine(stack_config(convai))
    engine.up(declare_model(f"http://127.0.0.1:{free_port()}/v1", KEY, verify_endpoint=False))
    assert list(live(convai)) == ["g"]


def self_signed(tmp: Path) -> tuple[Path, Path]:
    key, cert = tmp / "key.pem", tmp / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


def refused_certificate(tls: tuple[Path, Path], wait: float) -> tuple[str, int]:
    """What the `reachable` check says of an endpoint serving the key and certificate `tls`, and
    how many attempts the preflight made."""
    with serve_endpoint(EndpointBehaviour(), tls=tls) as url:
        report = run(url, wait=wait)
    failure = report.failure
    assert failure is not None and failure.name == "reachable"
    return failure.detail, report.attempts


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a certificate")
def test_an_untrusted_certificate_is_waited_for_then_reported(tmp_path: Path) -> None:
    detail, attempts = refused_certificate(self_signed(tmp_path), wait=0.5)
    assert "certificate that is not trusted" in detail
    assert "issued by 127.0.0.1" in detail
    assert "staging" not in detail
    assert attempts >= 2  # a placeholder certificate may be replaced soon: retried


def issued_by_a_staging_ca(tmp: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by a CA named the way Let's Encrypt's staging CAs are."""
    ca_key, ca_cert = tmp / "ca-key.pem", tmp / "ca.pem"
    key, request, cert = tmp / "key.pem", tmp / "request.pem", tmp / "cert.pem"
    extensions = tmp / "san.cnf"
    extensions.write_text("subjectAltName=IP:127.0.0.1\n")
    staging = "/O=(STAGING) Let's Encrypt/CN=(STAGING) Wannabe Watercress R11"
    for command in (
        [
            *f"req -x509 -newkey rsa:2048 -nodes -days 1 -keyout {ca_key} -out {ca_cert}".split(),
            *("-subj", staging),
        ],
        f"req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout {key} -out {request}".split(),
        f"x509 -req -in {request} -CA {ca_cert} -CAkey {ca_key} -CAcreateserial -days 1 "
        f"-extfile {extensions} -out {cert}".split(),
    ):
        subprocess.run(["openssl", *command], check=True, capture_output=True)
    return key, cert


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a certificate")
def test_a_certificate_from_a_staging_ca_is_named_as_such_at_once(tmp_path: Path) -> None:
    detail, attempts = refused_certificate(issued_by_a_staging_ca(tmp_path), wait=2)
    assert attempts == 1  # cert-manager will not replace what the issuer was asked for
    assert "issued by a staging CA ((STAGING) Let's Encrypt, (STAGING) Wannabe Watercress R11)" in (
        detail
    )
    assert "which no client trusts, Convai included" in detail
    assert "cluster_issuer such as letsencrypt-prod" in detail


@pytest.mark.parametrize(
    ("issuer", "staging"),
    [
        ("(STAGING) Let's Encrypt, (STAGING) Counterfeit Cashew R10", True),
        ("Fake LE Intermediate X1", True),  # Let's Encrypt's staging names before 2020
        ("Let's Encrypt, R11", False),
        ("Acme Co, Kubernetes Ingress Controller Fake Certificate", False),  # a placeholder
    ],
)
def test_staging_issuers_are_told_from_real_ones_and_placeholders(
    issuer: str, staging: bool
) -> None:
    assert is_staging_issuer(issuer) is staging


@pytest.mark.parametrize(
    "name",
    [
        "DEFAULT_WAIT",
        "WAIT_NOTICE_EVERY",
        "EndpointCheck",
        "Preflight",
        "PreflightReport",
        "check_endpoint",
    ],
)
def test_what_other_modules_import_from_the_checks_module_stays_there(name: str) -> None:
    """The preflight's modules were one, `checks`, which the resources, the commands and the
    tests import from."""
    module = importlib.import_module("convai_provider.preflight.checks")
    assert name in module.__all__ and getattr(module, name) is not None
