"""The stack tests' resolver (testkit/resolver_override): their public host names reach the
loopback server, and no other name resolves in the processes that load it."""

from __future__ import annotations

import os
import subprocess
import sys

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
]
for host, port in names:
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        print(host, sorted({a[4][:2] for a in found}))
    except socket.gaierror as exc:
        print(host, "refused:", exc)
"""


def resolve_in_a_child(hosts: str) -> list[str]:
    env = {**os.environ, "PYTHONPATH": str(RESOLVER_OVERRIDE), "CONVAI_TEST_HOSTS": hosts}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.splitlines()


def test_listed_names_reach_the_loopback_server_and_no_other_name_resolves() -> None:
    lines = resolve_in_a_child("llama-8b.staging.llm.example.com=127.0.0.1:8443")
    assert lines[0] == "llama-8b.staging.llm.example.com [('127.0.0.1', 8443)]"
    assert lines[1].endswith("[('127.0.0.1', 8443)]")  # any case, a trailing dot
    assert lines[2] == "127.0.0.1 [('127.0.0.1', 80)]"
    assert "('127.0.0.1', 80)" in lines[3]
    assert lines[4].startswith("convai-models.invalid refused:")
    assert "only the names of $CONVAI_TEST_HOSTS, localhost and IP addresses" in lines[4]


def test_without_a_listing_the_public_names_are_refused_too() -> None:
    lines = resolve_in_a_child("")
    assert lines[0].startswith("llama-8b.staging.llm.example.com refused:")
