"""The deadline-bounded transport: the environment's proxies, and httpx's public API only."""

from __future__ import annotations

import ast
import os
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import httpcore
import httpx
import pytest

from convai_provider.guards.bounded_http import MIB, bounded_client, send
from convai_provider.guards.deadline_transport import DeadlineTransport, environment_mounts
from convai_provider.preflight.checks import check_endpoint
from testkit.hostile_server import dribbled, http_answer, serve_answer
from testkit.openai_server import EndpointBehaviour, serve_endpoint
from testkit.tls import TestCA

ROOT = Path(__file__).resolve().parent.parent

NETWORK_VARIABLES = (
    "http_proxy",
    "https_proxy",
    "all_proxy",
    "no_proxy",
    "ssl_cert_file",
    "ssl_cert_dir",
)


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """No proxy or CA variable but those a test sets."""
    for name in NETWORK_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    yield monkeypatch


def test_the_environments_proxy_carries_the_call(environment: pytest.MonkeyPatch) -> None:
    proxied = http_answer(200, {"object": "list", "data": []})
    with serve_answer(proxied) as proxy:
        environment.setenv("http_proxy", proxy)
        with bounded_client() as client:
            reply = send(client, "GET", "http://endpoint.test/v1/models", seconds=5, cap=MIB)
    assert reply.json() == {"object": "list", "data": []}
    # The absolute form a proxy is asked in: the name endpoint.test was never looked up here.
    assert proxied.requests[0].startswith(b"GET http://endpoint.test/v1/models HTTP/1.1\r\n")


def test_a_call_through_a_proxy_ends_by_its_deadline(environment: pytest.MonkeyPatch) -> None:
    """The proxy's connection is bounded as a direct one is: one byte every 0.25 s trips no
    per-read timeout, and the whole reply would take longer than a minute."""
    with serve_answer(dribbled(http_answer(200, {"data": ["x" * 200]}), 0.25)) as proxy:
        environment.setenv("http_proxy", proxy)
        with bounded_client() as client, pytest.raises(httpx.ReadTimeout):
            send(client, "GET", "http://endpoint.test/v1/models", seconds=1.5, cap=MIB)


def test_no_proxy_spares_the_hosts_it_names(environment: pytest.MonkeyPatch) -> None:
    direct = http_answer(200, {"via": "direct"})
    with serve_answer(http_answer(200, {"via": "proxy"})) as proxy, serve_answer(direct) as url:
        environment.setenv("http_proxy", proxy)
        environment.setenv("no_proxy", "127.0.0.1")
        with bounded_client() as client:
            reply = send(client, "GET", f"{url}/v1/models", seconds=5, cap=MIB)
    assert reply.json() == {"via": "direct"}


def test_a_client_that_does_not_trust_the_environment_ignores_its_proxies(
    environment: pytest.MonkeyPatch,
) -> None:
    direct = http_answer(200, {"via": "direct"})
    with serve_answer(http_answer(200, {"via": "proxy"})) as proxy, serve_answer(direct) as url:
        environment.setenv("http_proxy", proxy)
        with bounded_client(trust_env=False) as client:
            reply = send(client, "GET", f"{url}/v1/models", seconds=5, cap=MIB)
    assert reply.json() == {"via": "direct"}


@pytest.mark.parametrize(
    ("variables", "proxied", "spared"),
    [
        ({}, set(), set()),
        ({"http_proxy": "proxy.test:3128"}, {"http://"}, set()),
        ({"HTTPS_PROXY": "http://proxy.test:3128"}, {"https://"}, set()),
        ({"all_proxy": "http://proxy.test:3128"}, {"all://"}, set()),
        ({"https_proxy": "http://proxy.test:3128", "no_proxy": "*"}, set(), set()),
        (
            {
                "https_proxy": "http://proxy.test:3128",
                "no_proxy": "localhost, 10.0.0.1,::1,.example.com,example.org,10.0.0.0/8,"
                "https://direct.test",
            },
            {"https://"},
            {
                "all://localhost",
                "all://10.0.0.1",
                "all://[::1]",
                "all://*.example.com",
                "all://*example.org",
                "all://10.0.0.0/8",
                "https://direct.test",
            },
        ),
    ],
)
def test_the_environment_is_read_as_httpx_reads_it(
    environment: pytest.MonkeyPatch, variables: dict[str, str], proxied: set[str], spared: set[str]
) -> None:
    for name, value in variables.items():
        environment.setenv(name, value)
    mounts = environment_mounts()
    assert {p for p, t in mounts.items() if isinstance(t, DeadlineTransport)} == proxied
    assert {p for p, t in mounts.items() if t is None} == spared


def test_a_proxy_that_is_not_http_is_refused_naming_the_variables(
    environment: pytest.MonkeyPatch,
) -> None:
    environment.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
    with pytest.raises(ValueError, match=r"socks5://127\.0\.0\.1 .*ALL_PROXY.*unset the variable"):
        environment_mounts()


@pytest.mark.parametrize("trusted", [True, False])
def test_certificates_are_verified_against_the_environments_ca_file(
    environment: pytest.MonkeyPatch, tmp_path: Path, trusted: bool
) -> None:
    """$SSL_CERT_FILE is read as httpx reads it (the stack tests trust their CA so)."""
    ca = TestCA(tmp_path)
    with serve_endpoint(EndpointBehaviour(), tls=ca.issue("endpoint", hosts=("127.0.0.1",))) as url:
        if trusted:
            environment.setenv("SSL_CERT_FILE", str(ca.certificate))
        report = check_endpoint(url, "llama-3.1-8b", "sk-endpoint", wait=0)
    assert report.ok is trusted, report.summary()
    assert trusted or "certificate that is not trusted" in report.summary()


# httpx's and httpcore's private attributes are theirs to change ------------------------------


@cache
def private_names_of(*packages: object) -> frozenset[str]:
    """Every `_name` (not `__dunder__`) the packages define as an attribute or a method."""
    names: set[str] = set()
    for package in packages:
        for path in Path(str(getattr(package, "__file__", ""))).parent.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.Attribute):
                    names.add(node.attr)
                elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    names.add(node.name)
    return frozenset(n for n in names if n.startswith("_") and not n.endswith("__"))


def our_sources() -> Iterator[Path]:
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT).parts
        if not any(part.startswith(".") or part == "node_modules" for part in parts):
            yield path


def private_uses(source: str, private: frozenset[str]) -> list[str]:
    """httpx/httpcore privates `source` reaches: their private modules, their modules' private
    names, or, in a module that imports either, their objects' private attributes (an attribute
    of `self` or `cls` is our own; elsewhere a name they share, Pulumi's `Output._data`, is not
    theirs)."""
    tree = ast.parse(source)
    deals_in_httpx = any(
        name == "httpx" or name.startswith(("httpx.", "httpcore"))
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for name in (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        )
    )
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            ("httpx._", "httpcore._")
        ):
            found.append(f"line {node.lineno}: from {node.module} import")
        elif isinstance(node, ast.Import):
            found += [
                f"line {node.lineno}: import {alias.name}"
                for alias in node.names
                if alias.name.startswith(("httpx._", "httpcore._"))
            ]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_"):
            owner = node.value.id if isinstance(node.value, ast.Name) else None
            if owner in ("httpx", "httpcore") and not node.attr.endswith("__"):
                found.append(f"line {node.lineno}: {owner}.{node.attr}")
            elif deals_in_httpx and node.attr in private and owner not in ("self", "cls"):
                found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_of_ours_touches_httpx_or_httpcore_privates() -> None:
    private = private_names_of(httpx, httpcore)
    assert {"_transport", "_mounts", "_pool", "_network_backend"} <= private
    uses = {
        str(path.relative_to(ROOT)): found
        for path in our_sources()
        if (found := private_uses(path.read_text(), private))
    }
    assert uses == {}


@pytest.mark.parametrize(
    "source",
    [
        "import httpx\nclient._transport._pool._network_backend = backend",
        "import httpx\nfor t in client._mounts.values(): pass",
        "from httpx._transports.default import map_httpcore_exceptions",
        "import httpcore._backends.sync",
        "httpx._config.DEFAULT_LIMITS",
    ],
)
def test_the_scan_finds_each_way_of_reaching_them(source: str) -> None:
    assert private_uses(source, private_names_of(httpx, httpcore))


def test_the_scan_reads_every_source_of_ours() -> None:
    scanned = {str(p.relative_to(ROOT)) for p in our_sources()}
    assert {"convai_provider/guards/deadline_transport.py", "tests/conftest.py"} <= scanned
    assert not any(name.startswith(".venv") for name in scanned)
    assert os.sep.join(("testkit", "hostile_server.py")) in scanned
