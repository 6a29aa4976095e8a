"""What the emulator exposes beyond its API: a database only its owner can read, and no answer
to a web page that reaches it by name (DNS rebinding) or from another origin."""

from __future__ import annotations

import os
import pty
import select
import socket
import sqlite3
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from convai_provider.api.client import ConvaiClient
from convai_provider.emulator.app import served_authorities
from convai_provider.emulator.process import EmulatorProcess
from convai_provider.emulator.store import ConvaiStore
from testkit.convai import CONVAI_KEY, TURBO

# The database: endpoint keys in clear, readable by its owner only ---------------------------


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """The usual umask, which lets everyone read a new file: the database must not rely on a
    stricter one."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def modes(db: Path) -> dict[str, int]:
    """The permission bits of the database and the files SQLite keeps beside it."""
    files = [db, db.with_name(f"{db.name}-wal"), db.with_name(f"{db.name}-shm")]
    return {f.name: stat.S_IMODE(f.stat().st_mode) for f in files if f.exists()}


@pytest.mark.usefixtures("permissive_umask")
def test_a_new_database_and_its_wal_and_shm_are_readable_by_their_owner_only(
    tmp_path: Path,
) -> None:
    db = tmp_path / "convai.sqlite3"
    with EmulatorProcess(db) as emulator, ConvaiClient(CONVAI_KEY, emulator.url) as client:
        client.register(TURBO)  # an endpoint key in clear, in the -wal first
        found = modes(db)
    assert sorted(found) == [db.name, f"{db.name}-shm", f"{db.name}-wal"]
    assert found == dict.fromkeys(found, 0o600), {k: oct(v) for k, v in found.items()}


@pytest.mark.usefixtures("permissive_umask")
def test_an_existing_database_readable_by_others_is_tightened(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    old = sqlite3.connect(db)
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE t (x)")
    companions = modes(db)
    assert len(companions) == 3 and set(companions.values()) == {
        0o644
    }  # as an older emulator left it
    store = ConvaiStore(db)
    try:
        assert modes(db) == dict.fromkeys(companions, 0o600)
    finally:
        store.close()
        old.close()


# Host and Origin: a web page cannot reach it -------------------------------------------------

ACCOUNT = {"CONVAI-API-KEY": "emulator-exposure-account"}
MODEL = {"model_group_name": "g", "model_name": "m", "api_key": "k", "is_uncensored": False}
ROUTES = [
    ("POST", "/llm-models/register"),
    ("POST", "/llm-models/update"),
    ("POST", "/llm-models/deregister"),
    ("POST", "/llm-models/list"),
    ("POST", "/character/create"),
    ("POST", "/character/get"),
    ("POST", "/character/update"),
    ("POST", "/_emulator/reset"),
    ("GET", "/_emulator/characters/orphaned"),
    ("GET", "/_emulator/faults"),
    ("POST", "/_emulator/faults"),
    ("DELETE", "/_emulator/faults"),
    ("GET", "/_emulator/stats"),
    ("DELETE", "/_emulator/stats"),
    ("POST", "/no/such/path"),
]


def port_of(emulator: EmulatorProcess) -> int:
    return int(emulator.url.rsplit(":", 1)[1])


def foreign_hosts(port: int) -> list[str]:
    """What a page's requests name after rebinding its own name to 127.0.0.1."""
    return [
        f"attacker.example:{port}",
        "attacker.example",
        f"127.0.0.1.nip.io:{port}",
        f"127.0.0.1:{port + 1}",
        f"0.0.0.0:{port}",
    ]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_refuses_a_host_it_does_not_serve_on(
    convai: EmulatorProcess, method: str, path: str
) -> None:
    for host in foreign_hosts(port_of(convai)):
        response = httpx.request(
            method, f"{convai.url}{path}", headers={**ACCOUNT, "Host": host}, json=MODEL
        )
        assert response.status_code == 403, (host, response.text)
        assert "names none of the addresses this emulator serves on" in response.json()["message"]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_every_route_refuses_another_origin(
    convai: EmulatorProcess, method: str, path: str
) -> None:
    for origin in ["https://evil.example", "null", f"http://attacker.example:{port_of(convai)}"]:
        headers = {**ACCOUNT, "Origin": origin, "Content-Type": "text/plain"}
        response = httpx.request(method, f"{convai.url}{path}", headers=headers, json=MODEL)
        assert response.status_code == 403, (origin, response.text)
        assert "Origin" in response.json()["message"]


def test_a_refused_request_changes_nothing(convai: EmulatorProcess) -> None:
    elsewhere = {**ACCOUNT, "Host": f"attacker.example:{port_of(convai)}"}
    httpx.post(f"{convai.url}/llm-models/register", headers=elsewhere, json=MODEL)
    from_a_page = {**ACCOUNT, "Origin": "https://evil.example"}
    httpx.post(f"{convai.url}/llm-models/register", headers=from_a_page, json=MODEL)
    listed = httpx.post(f"{convai.url}/llm-models/list", headers=ACCOUNT).json()
    assert listed["models"] == []
    assert convai.request_counts().get("/llm-models/register", 0) == 0


def test_a_request_without_a_host_header_is_refused(convai: EmulatorProcess) -> None:
    with socket.create_connection(("127.0.0.1", port_of(convai)), timeout=10) as conn:
        conn.sendall(b"POST /llm-models/list HTTP/1.0\r\nCONVAI-API-KEY: k\r\n\r\n")
        reply = b""
        while piece := conn.recv(65536):
            reply += piece
    assert reply.startswith(b"HTTP/1.1 403") and b"No Host header" in reply


def test_its_own_names_and_origins_are_served(convai: EmulatorProcess) -> None:
    port = port_of(convai)
    for name in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}"):
        for origin in (None, f"http://{name.lower()}"):
            headers = {**ACCOUNT, "Host": name, **({"Origin": origin} if origin else {})}
            response = httpx.post(f"{convai.url}/llm-models/list", headers=headers)
            assert response.status_code == 200, (name, origin, response.text)


def test_on_ipv6_loopback_it_serves_its_bracketed_address_and_localhost(tmp_path: Path) -> None:
    with EmulatorProcess(tmp_path / "v6.sqlite3", host="::1") as emulator:
        port = port_of(emulator)
        url = f"http://[::1]:{port}"
        assert emulator.url == url
        for name in (f"[::1]:{port}", f"localhost:{port}"):
            response = httpx.post(f"{url}/llm-models/list", headers={**ACCOUNT, "Host": name})
            assert response.status_code == 200, (name, response.text)
        refused = httpx.post(
            f"{url}/llm-models/list", headers={**ACCOUNT, "Host": f"127.0.0.1:{port}"}
        )
        assert refused.status_code == 403


@pytest.mark.parametrize(
    ("server", "name", "served"),
    [
        (("127.0.0.1", 8787), None, {"127.0.0.1:8787", "localhost:8787"}),
        (("::1", 8787), "::1", {"[::1]:8787", "localhost:8787"}),
        (("192.168.1.5", 8787), "0.0.0.0", {"192.168.1.5:8787"}),
        (("::ffff:127.0.0.1", 8787), "::", {"127.0.0.1:8787", "localhost:8787"}),
        (("127.0.0.1", 8787), "0.0.0.0", {"127.0.0.1:8787", "localhost:8787"}),
        (("10.0.0.2", 8787), "emu.lan", {"10.0.0.2:8787", "emu.lan:8787"}),
        (("127.0.0.1", 80), None, {"127.0.0.1:80", "localhost:80", "127.0.0.1", "localhost"}),
        (None, None, set()),
    ],
)
def test_the_names_it_serves_on(
    server: tuple[str, int] | None, name: str | None, served: set[str]
) -> None:
    assert served_authorities(server, name) == served


def read_until(terminal: int, marker: bytes, shown: bytes = b"") -> bytes:
    """What the terminal showed, read until `marker` appears (20 s at most per read)."""
    while marker not in shown:
        ready, _, _ = select.select([terminal], [], [], 20)
        assert ready, shown
        shown += os.read(terminal, 65536)
    return shown


def test_on_a_terminal_the_emulator_prints_plain_lines(tmp_path: Path) -> None:
    """Its output escapes escape sequences, so uvicorn's colours would show as `\\x1b[32m`."""
    terminal, its_end = pty.openpty()
    emulator = subprocess.Popen(
        [sys.executable, "-m", "convai_provider", "emulator", "--port", "0", "--db", "e.sqlite3"],
        stdout=its_end,
        stderr=its_end,
        cwd=tmp_path,
    )
    os.close(its_end)
    try:
        shown = read_until(terminal, b"Application startup complete")
        url = shown.split(b"listening on ", 1)[1].split()[0].decode()
        httpx.post(f"{url}/llm-models/list", headers=ACCOUNT, timeout=10)
        shown = read_until(terminal, b"POST /llm-models/list", shown)
    finally:
        emulator.terminate()
        emulator.wait(10)
        os.close(terminal)
    assert b"\\x1b" not in shown and b"\x1b" not in shown, shown
    assert b"INFO:" in shown
