"""What the suite's Python processes may resolve and reach: this machine only.

Python imports `sitecustomize` at start from the first directory of its path that has one. The
suite puts this directory first on PYTHONPATH for every process it starts (tests/conftest.py),
so the emulator, the Pulumi language host's program, the dynamic provider and the stand-in
plugins all load it, and conftest installs it in the pytest process itself. Then:

- each host name in $CONVAI_TEST_HOSTS (`host=127.0.0.1:port,...`) resolves to that loopback
  address and port, so the stack tests' endpoint preflight, which connects to https://HOST/v1 on
  port 443, reaches the test's stand-in server instead;
- `localhost` and loopback addresses resolve as usual; any other name, and any IP address off
  the loopback network, is refused (EAI_NONAME), so no lookup leaves the machine;
- a connect to an address off the loopback network is refused (ENETUNREACH) before any packet
  is sent; Unix sockets are not network addresses and pass.

Each refusal is also appended to the file $TESTKIT_NETWORK_LOG names (when set), so one that a
caller catches and swallows is still seen: the run's summary lists them. A process started with
$TESTKIT_NETWORK_GUARD=record is let through, each off-machine lookup and connect recorded as
`allowed`: the one test that sets it says why (tests/test_dev_up.py: dev-up's pip install asks
the package index).

Nothing of the product changes: its preflight calls the names it always calls, and verifies the
server's certificate as always (against $SSL_CERT_FILE, the test CA, which httpx reads).
C-level sockets (gRPC's core, which the Pulumi SDK uses to talk to the engine on 127.0.0.1) do
not go through Python's socket module and are not seen here.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from typing import Any

_resolve = socket.getaddrinfo
_connect = socket.socket.connect
_connect_ex = socket.socket.connect_ex


def _overrides(text: str) -> dict[str, tuple[str, int]]:
    table = {}
    for item in filter(None, text.split(",")):
        host, _, target = item.partition("=")
        address, _, port = target.rpartition(":")
        table[host.strip().lower()] = (address, int(port))
    return table


HOSTS = _overrides(os.environ.get("CONVAI_TEST_HOSTS", ""))
REFUSING = os.environ.get("TESTKIT_NETWORK_GUARD") != "record"


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None


def on_this_machine(host: str) -> bool:
    """`localhost` or a loopback address (IPv4-mapped ones too)."""
    if host.lower().rstrip(".") == "localhost":
        return True
    address = _address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address is not None and address.is_loopback


def _record(what: str) -> None:
    log = os.environ.get("TESTKIT_NETWORK_LOG")
    if log:
        with open(log, "a") as out:
            out.write(f"{'refused' if REFUSING else 'allowed'} {what} (pid {os.getpid()})\n")


def getaddrinfo(  # type: ignore[no-untyped-def]  # noqa: PLR0917 - socket.getaddrinfo's signature
    host, port, family=0, type=0, proto=0, flags=0
):
    name = host.decode() if isinstance(host, bytes) else host
    if name is not None:
        target = HOSTS.get(name.lower().rstrip("."))
        if target is not None:
            return _resolve(target[0], target[1], family, type, proto, flags)
        if not on_this_machine(name):
            _record(f"resolve {name}")
            if REFUSING:
                # The system resolver's words for EAI_NONAME first: callers (the preflight) read
                # them.
                raise socket.gaierror(
                    socket.EAI_NONAME,
                    f"Name or service not known: the test suite's resolver refuses '{name}': "
                    "only the names of $CONVAI_TEST_HOSTS, localhost and loopback addresses "
                    "resolve here",
                )
    return _resolve(host, port, family, type, proto, flags)


def _refused(sock: socket.socket, address: Any) -> bool:
    if sock.family not in (socket.AF_INET, socket.AF_INET6) or on_this_machine(address[0]):
        return False
    _record(f"connect {address[0]}:{address[1]}")
    return REFUSING


def connect(self: socket.socket, address: Any) -> None:
    if _refused(self, address):
        raise OSError(errno.ENETUNREACH, f"the test suite refuses a connect to {address[0]}")
    _connect(self, address)


def connect_ex(self: socket.socket, address: Any) -> int:
    if _refused(self, address):
        return errno.ENETUNREACH
    return _connect_ex(self, address)


socket.getaddrinfo = getaddrinfo
socket.socket.connect = connect  # type: ignore[method-assign,assignment]
socket.socket.connect_ex = connect_ex  # type: ignore[method-assign,assignment]
