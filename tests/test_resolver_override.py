"""The stack tests' resolver (testkit/resolver_override): their public host names reach the
loopback server, and no other name resolves in the processes that load it."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from testkit.published_endpoints import RESOLVER_OVERRIDE

PROBE = """
import socket, sys
# Nothing is looked up unless the override is in place (else a name could reach real DNS).
assert socket.getaddrinfo.__module__ == "sitecustomize", "the override did not load"
names = [
    ("llama-8b.staging.llm.example.com", 443),
    ("LLAMA-8B.staging.llm.example.com.", 443),
    ("127.0.0.1", 80),
    ("localhost", 80),
    ("convai-models.invalid", 443),
    ("10.0.0.7", 443),
    ("::1", 80),
    ("::ffff:127.0.0.1", 80),
]
for host, port in names:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        print(host, sorted({a[4][:2] for a in found}))
    except socket.gaierror as exc:
        print(host, "refused:", exc)
"""


CONNECT = """
import socket
for address in [("10.0.0.7", 443), ("2001:db8::1", 443)]:
    family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
    with socket.socket(family) as sock:
        try:
            sock.connect(address)
        except OSError as exc:
            print("refused:", exc)
        with socket.socket(family) as other:
            print("connect_ex:", other.connect_ex(address))
with socket.socket() as server, socket.socket() as client:
    server.bind(("127.0.0.1", 0))
    server.listen()
    client.connect(server.getsockname())
    print("loopback connected")
"""


def run_in_a_child(program: str, hosts: str, log: Path | None = None) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(RESOLVER_OVERRIDE), "CONVAI_TEST_HOSTS": hosts}
    env["TESTKIT_NETWORK_LOG"] = str(log or "")
    done = subprocess.run(
        [sys.executable, "-c", program], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.splitlines()


def resolve_in_a_child(hosts: str) -> list[str]:
    return run_in_a_child(PROBE, hosts)


def test_listed_names_reach_the_loopback_server_and_no_other_name_resolves() -> None:
    lines = resolve_in_a_child("llama-8b.staging.llm.example.com=127.0.0.1:8443")
    assert lines[0] == "llama-8b.staging.llm.example.com [('127.0.0.1', 8443)]"
    assert lines[1].endswith("[('127.0.0.1', 8443)]")  # any case, a trailing dot
    assert lines[2] == "127.0.0.1 [('127.0.0.1', 80)]"
    assert "('127.0.0.1', 80)" in lines[3]
    assert lines[4].startswith("convai-models.invalid refused:")
    assert "only the names of $CONVAI_TEST_HOSTS, localhost and loopback addresses" in lines[4]
    assert lines[5].startswith("10.0.0.7 refused:")  # an address off the machine, too
    assert lines[6] == "::1 [('::1', 80)]"
    assert lines[7] == "::ffff:127.0.0.1 [('::ffff:127.0.0.1', 80)]"


def test_a_connect_off_the_loopback_network_is_refused_and_recorded(tmp_path: Path) -> None:
    log = tmp_path / "refused.log"
    lines = run_in_a_child(CONNECT, "", log)
    assert lines == [
        "refused: [Errno 101] the test suite refuses a connect to 10.0.0.7",
        "connect_ex: 101",
        "refused: [Errno 101] the test suite refuses a connect to 2001:db8::1",
        "connect_ex: 101",
        "loopback connected",
    ]
    recorded = [line.rsplit(" (pid", 1)[0] for line in log.read_text().splitlines()]
    refused = ["refused connect 10.0.0.7:443"] * 2 + ["refused connect 2001:db8::1:443"] * 2
    assert recorded == refused


def test_the_suite_runs_under_the_guard() -> None:
    """conftest installs it in this process and puts it first on every child's path."""
    assert os.environ["PYTHONPATH"].split(os.pathsep)[0] == str(RESOLVER_OVERRIDE)
    with pytest.raises(socket.gaierror, match=r"refuses 'convai-models\.invalid'"):
        socket.getaddrinfo("convai-models.invalid", 443)
    with socket.socket() as sock, pytest.raises(OSError, match=r"refuses a connect to 10\.0\.0\.7"):
        sock.connect(("10.0.0.7", 443))


def test_without_a_listing_the_public_names_are_refused_too() -> None:
    lines = resolve_in_a_child("")
    assert lines[0].startswith("llama-8b.staging.llm.example.com refused:")
