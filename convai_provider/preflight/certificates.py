"""Who issued the certificate an endpoint presents, for the preflight's account of an untrusted one.

Verification only says a certificate is not trusted. Whether waiting can help depends on who
issued it: an ingress controller's placeholder is replaced once cert-manager has the real one,
but a certificate from a staging CA (Let's Encrypt's staging issuers are named `(STAGING) ...`,
older ones `Fake LE ...`) is what was asked for, and no client, Convai included, will trust it.
"""

from __future__ import annotations

import socket
import ssl

from cryptography import x509
from cryptography.x509.oid import NameOID

from convai_provider.guards.urls import split_url

STAGING_MARKERS = ("staging", "fake le ")
"""Lower-case fragments of issuer names that only test CAs use."""


def presented_issuer(url: str, timeout: float) -> str | None:
    """The issuer (organisation and common name) of the certificate `url`'s server presents.

    A handshake that does not verify, made only to read the name; None when it cannot be read.
    """
    parts = split_url(url)
    if parts is None or parts.scheme != "https" or not parts.hostname:
        return None
    host = parts.hostname
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with (
            socket.create_connection((host, parts.port or 443), timeout=timeout) as raw,
            context.wrap_socket(raw, server_hostname=host) as tls,
        ):
            der = tls.getpeercert(binary_form=True)
    except (OSError, ValueError):
        return None
    if der is None:
        return None
    try:
        issuer = x509.load_der_x509_certificate(der).issuer
    except ValueError:
        return None
    names = [
        str(attribute.value)
        for oid in (NameOID.ORGANIZATION_NAME, NameOID.COMMON_NAME)
        for attribute in issuer.get_attributes_for_oid(oid)
    ]
    return ", ".join(names) or issuer.rfc4514_string()


def is_staging_issuer(issuer: str) -> bool:
    lowered = issuer.lower()
    return any(marker in lowered for marker in STAGING_MARKERS)
