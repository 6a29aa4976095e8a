"""The emulator under requests nobody should send: every error in Convai's envelope, bounded
memory, an admin surface a web page cannot drive, and startup mistakes in one line."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from starlette.types import ASGIApp, Message

from convai_provider.api.client import ConvaiClient
from convai_provider.api.wire import RegisterRequest
from convai_provider.emulator.app import ConvaiEmulator
from convai_provider.emulator.process import EmulatorProcess
from convai_provider.emulator.store import ConvaiStore
from testkit.convai import CONVAI_KEY, new_character

KEY = {"CONVAI-API-KEY": "emulator-hostile-account"}
MODEL = {"model_group_name": "g", "model_name": "m", "api_key": "k", "is_uncensored": False}


def assert_envelope(response: httpx.Response, status: int, fragment: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error" and fragment in body["message"], body
    uuid.UUID(body["transactionID"])


@pytest.mark.parametrize(
    ("method", "path", "status", "fragment"),
    [
        ("POST", "/llm-models/nope", 404, "/llm-models/nope"),
        ("POST", "/", 404, "Not Found"),
        ("GET", "/llm-models/list", 405, "Method Not Allowed"),
        ("DELETE", "/llm-models/register", 405, "Method Not Allowed"),
        ("PUT", "/_emulator/reset", 405, "Method Not Allowed"),
        ("GET", "/_emulator/nope", 404, "Not Found"),
    ],
)
def test_unknown_paths_and_methods_answer_in_the_envelope(
    convai: EmulatorProcess, method: str, path: str, status: int, fragment: str
) -> None:
    response = httpx.request(method, f"{convai.url}{path}", headers=KEY, timeout=10)
    assert_envelope(response, status, fragment)


def test_a_trailing_slash_is_a_404_never_a_redirect_to_the_callers_host(
    convai: EmulatorProcess,
) -> None:
    response = httpx.post(f"{convai.url}/llm-models/list/", headers=KEY, timeout=10)
    assert "location" not in response.headers
    assert_envelope(response, 404, "/llm-models/list/")
    # Another Host is refused before any route (test_emulator_exposure.py): never redirected.
    elsewhere = {**KEY, "Host": "attacker.example"}
    response = httpx.post(f"{convai.url}/llm-models/list/", headers=elsewhere, timeout=10)
    assert "location" not in response.headers and response.status_code == 403


@pytest.mark.parametrize("path", ["/llm-models/register", "/character/create", "/_emulator/faults"])
def test_a_body_over_the_limit_is_a_413_in_the_envelope_and_nothing_is_stored(
    convai: EmulatorProcess, path: str
) -> None:
    huge = {**MODEL, "api_key": "k" * (10 * 1024 * 1024)}
    response = httpx.post(f"{convai.url}{path}", json=huge, headers=KEY, timeout=30)
    assert_envelope(response, 413, "larger than 1 MiB")
    assert httpx.post(f"{convai.url}/llm-models/list", headers=KEY).json()["models"] == []


def test_a_chunked_body_over_the_limit_is_a_413_too(convai: EmulatorProcess) -> None:
    def pieces() -> Iterator[bytes]:
        for _ in range(20):
            yield b"x" * (256 * 1024)

    response = httpx.post(
        f"{convai.url}/llm-models/register", content=pieces(), headers=KEY, timeout=30
    )
    assert_envelope(response, 413, "larger than 1 MiB")


def call_asgi(app: ASGIApp, path: str, headers: dict[str, str]) -> httpx.Response:
    """One POST straight into an ASGI app, as a server would make it."""
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [
            (k.lower().encode(), v.encode())
            for k, v in {"Host": "127.0.0.1:8787", **headers}.items()
        ],
        "server": ("127.0.0.1", 8787),
    }

    async def serve() -> None:
        with contextlib.suppress(Exception):  # Starlette re-raises after answering, for the log
            await app(scope, receive, send)

    loop = asyncio.new_event_loop()  # not asyncio.run: it would unset the thread's loop
    try:
        loop.run_until_complete(serve())
    finally:
        loop.close()
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return httpx.Response(start["status"], content=body)


def test_an_internal_error_is_a_500_in_the_envelope(tmp_path: Path) -> None:
    store = ConvaiStore(tmp_path / "db.sqlite3")
    app = ConvaiEmulator(store).asgi()
    store.close()  # the database goes away under the running server
    assert_envelope(call_asgi(app, "/llm-models/list", KEY), 500, "internal error")


# The admin surface -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/_emulator/reset"),
        ("POST", "/_emulator/faults"),
        ("DELETE", "/_emulator/faults"),
        ("GET", "/_emulator/stats"),
        ("DELETE", "/_emulator/stats"),
        ("GET", "/_emulator/characters/orphaned"),
    ],
)
@pytest.mark.parametrize("origin", ["https://evil.example", "null", "http://localhost:1"])
def test_a_cross_origin_admin_request_is_refused(
    convai: EmulatorProcess, method: str, path: str, origin: str
) -> None:
    httpx.post(f"{convai.url}/llm-models/register", json=MODEL, headers=KEY)
    response = httpx.request(
        method,
        f"{convai.url}{path}",
        content=b'{"status": 503}',
        headers={**KEY, "Origin": origin, "Content-Type": "text/plain"},
        timeout=10,
    )
    assert_envelope(response, 403, "Origin")
    assert len(httpx.post(f"{convai.url}/llm-models/list", headers=KEY).json()["models"]) == 1
    assert httpx.post(f"{convai.url}/llm-models/list", headers=KEY).status_code == 200


def test_admin_requests_from_its_own_origin_or_without_one_are_served(
    convai: EmulatorProcess,
) -> None:
    own = convai.url
    for headers in ({}, {"Origin": own}):
        response = httpx.get(f"{convai.url}/_emulator/stats", headers=headers, timeout=10)
        assert response.status_code == 200, response.text


def test_the_orphan_view_shows_only_the_callers_account(convai: EmulatorProcess) -> None:
    for key in (CONVAI_KEY, "another-account-key"):
        with ConvaiClient(key, convai.url) as client:
            client.register(RegisterRequest(**MODEL))
            char = new_character(convai.url, key=key)
            client.set_character_model(char, "g")
            client.deregister("g")
    mine = convai.orphaned_characters(CONVAI_KEY)
    theirs = convai.orphaned_characters("another-account-key")
    assert len(mine) == len(theirs) == 1 and mine != theirs
    assert "account" not in mine[0]
    refused = httpx.get(f"{convai.url}/_emulator/characters/orphaned", timeout=10)
    assert_envelope(refused, 401, "CONVAI-API-KEY")


def test_the_request_counter_keeps_one_entry_for_unknown_paths(convai: EmulatorProcess) -> None:
    for i in range(300):
        httpx.post(f"{convai.url}/scan/{i}", timeout=10)
    httpx.post(f"{convai.url}/llm-models/list", headers=KEY, timeout=10)
    counts = convai.request_counts()
    assert counts == {"/llm-models/list": 1, "(other paths)": 300}


@pytest.mark.parametrize("retry_after", ["1\r\nX-Injected: yes", "1\n", "\x00", "é"])
def test_a_fault_rule_with_a_retry_after_unfit_for_a_header_is_refused(
    convai: EmulatorProcess, retry_after: str
) -> None:
    response = httpx.post(
        f"{convai.url}/_emulator/faults", json={"status": 429, "retry_after": retry_after}
    )
    assert_envelope(response, 400, "retry_after")
    assert httpx.post(f"{convai.url}/llm-models/list", headers=KEY).status_code == 200


# Starting the emulator -------------------------------------------------------------------


def start(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "convai_provider", "emulator", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_port_in_use_is_one_line_naming_the_fix(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = start("--port", str(port), "--db", str(tmp_path / "db.sqlite3"))
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1
    assert f"port {port}" in done.stderr and "--port" in done.stderr


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--host", ""], "--host"),
        (["--host", "no-such-host.invalid"], "--host"),
        (["--port", "70000"], "--port"),
        (["--port", "-1"], "--port"),
        (["--db", "/nonexistent-dir/x/db.sqlite3"], "--db"),
        (["--db", "{tmp}"], "--db"),  # a directory
        (["--db", "{tmp}/not-sqlite.txt"], "--db"),
    ],
)
def test_a_bad_address_or_database_is_one_line_naming_the_option(
    tmp_path: Path, args: list[str], fragment: str
) -> None:
    (tmp_path / "not-sqlite.txt").write_text("plain text, not a database\n" * 100)
    defaults = ["--port", "0", "--db", str(tmp_path / "db.sqlite3")]
    done = start(*defaults, *(arg.format(tmp=tmp_path) for arg in args))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("error: ") and done.stderr.count("\n") == 1, done.stderr
    assert fragment in done.stderr
