"""Name resolution for the processes of a stack test: the program and its providers.

Python imports `sitecustomize` at start from the first directory of its path that has one; only
the stack tests put this directory on PYTHONPATH, for the Pulumi CLI and what it starts. Then:

- each host name in $CONVAI_TEST_HOSTS (`host=127.0.0.1:port,...`) resolves to that loopback
  address and port, so the endpoint preflight, which connects to https://HOST/v1 on port 443,
  reaches the test's stand-in server instead;
- any other name that is not an IP address or `localhost` is refused, so nothing in these
  processes resolves or dials a host outside the machine.

Nothing of the product changes: its preflight calls the names it always calls, and verifies the
server's certificate as always (against $SSL_CERT_FILE, the test CA, which httpx reads).
"""

from __future__ import annotations

import ipaddress
import os
import socket

_resolve = socket.getaddrinfo


def _overrides(text: str) -> dict[str, tuple[str, int]]:
    table = {}
    for item in filter(None, text.split(",")):
        host, _, target = item.partition("=")
        address, _, port = target.rpartition(":")
        table[host.strip().lower()] = (address, int(port))
    return table


HOSTS = _overrides(os.environ.get("CONVAI_TEST_HOSTS", ""))


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    return True


def getaddrinfo(  # type: ignore[no-untyped-def]  # noqa: PLR0917 - socket.getaddrinfo's signature
    host, port, family=0, type=0, proto=0, flags=0
):
    name = host.decode() if isinstance(host, bytes) else host
    if name is not None:
        target = HOSTS.get(name.lower().rstrip("."))
        if target is not None:
            return _resolve(target[0], target[1], family, type, proto, flags)
        if not _is_address(name) and name.lower() != "localhost":
            raise socket.gaierror(
                socket.EAI_NONAME,
                f"the stack test's resolver refuses '{name}': only the names of "
                "$CONVAI_TEST_HOSTS, localhost and IP addresses resolve here",
            )
    return _resolve(host, port, family, type, proto, flags)


socket.getaddrinfo = getaddrinfo
