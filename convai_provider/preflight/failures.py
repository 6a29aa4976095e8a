"""What a failed request to an endpoint means, and whether waiting can fix it.

Each failure is an `EndpointCheck` that says what to fix in one sentence; `final` marks those no
wait will mend (a wrong key, a TLS mismatch, a reply that is not OpenAI's), and a transient status
(the one classifier: `api.retry`) carries the Retry-After the endpoint asked for.
"""

from __future__ import annotations

import ssl
from datetime import datetime

import httpx

from convai_provider.api.retry import is_retryable_status, parse_retry_after
from convai_provider.guards.bounded_http import ReplyTooLargeError, what_went_wrong
from convai_provider.guards.urls import api_root_hint
from convai_provider.preflight.certificates import is_staging_issuer, presented_issuer
from convai_provider.preflight.replies import error_message
from convai_provider.preflight.report import EndpointCheck

_REACHED = (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
"""Transport failures that happen after a connection was made."""


def transport_failure(exc: httpx.TransportError, url: str, timeout: float) -> EndpointCheck:
    text = f"{type(exc).__name__}: {exc}"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return _untrusted_certificate(url, text, timeout)
        if isinstance(cause, ssl.SSLError):
            return _tls_failure(url, text)
        cause = cause.__cause__ or cause.__context__
    lowered = text.lower()
    if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
        detail = f"{url} {what_went_wrong(exc)}; is it up and reachable?"
    elif isinstance(exc, _REACHED):
        # The connection was made: a slow, broken or non-HTTP server, not a network problem.
        not_http = isinstance(exc, httpx.RemoteProtocolError) and "HTTP/1.1" in what_went_wrong(exc)
        return EndpointCheck("reachable", False, f"{url} {what_went_wrong(exc)}", final=not_http)
    elif (
        "name or service not known" in lowered
        or "nodename nor servname" in lowered
        or ("name resolution" in lowered)
    ):
        detail = f"the host of {url} does not resolve (DNS); check base_url"
    elif "certificate verify failed" in lowered:
        return _untrusted_certificate(url, text, timeout)
    elif "ssl" in lowered or "tls" in lowered:
        return _tls_failure(url, text)
    else:
        detail = f"could not connect to {url} ({text}); is the server running and the port open?"
    return EndpointCheck("reachable", False, detail)


def too_large(exc: ReplyTooLargeError, url: str) -> EndpointCheck:
    return EndpointCheck(
        "reachable",
        False,
        f"{url} answered HTTP {exc.status_code} with {exc}: not an OpenAI-compatible reply",
        final=True,
    )


def _tls_failure(url: str, text: str) -> EndpointCheck:
    return EndpointCheck(
        "reachable",
        False,
        f"the TLS handshake with {url} failed ({text}); check the certificate and that the URL's "
        "scheme matches what the server speaks",
        final=True,
    )


def _untrusted_certificate(url: str, text: str, timeout: float) -> EndpointCheck:
    issuer = presented_issuer(url, timeout)
    if issuer is not None and is_staging_issuer(issuer):
        return EndpointCheck(
            "reachable",
            False,
            f"{url} presented a certificate issued by a staging CA ({issuer}), which no client "
            "trusts, Convai included; have it issued by a production CA (cert-manager: a "
            "cluster_issuer such as letsencrypt-prod)",
            final=True,
        )
    # Right after an Ingress is created its controller serves a placeholder certificate until
    # cert-manager has one issued: worth waiting for, within the budget.
    issued_by = f", issued by {issuer}" if issuer else ""
    return EndpointCheck(
        "reachable",
        False,
        f"{url} presented a certificate that is not trusted ({text}{issued_by}); if it was just "
        "deployed, its certificate may not be issued yet, otherwise fix the certificate",
    )


def status_failure(
    name: str, response: httpx.Response, url: str, now: datetime, *, key_given: bool = True
) -> EndpointCheck:
    """What a status other than success means; `now` (the wall clock) dates a Retry-After."""
    message = error_message(response)
    status = response.status_code
    if is_retryable_status(status):
        return _transient_status(name, response, url, message, now)
    if status in (401, 403) and not key_given:
        return EndpointCheck(
            name,
            False,
            f"no API key was given and the endpoint requires one (HTTP {status}: {message}); "
            "give the key the server was started with (preflight: --api-key or "
            "$ENDPOINT_API_KEY; a stack: the model's api_key)",
            final=True,
        )
    if status in (401, 403):
        return EndpointCheck(
            name,
            False,
            f"the endpoint refused the API key (HTTP {status}: {message}); set api_key to the key "
            "the server was started with (vLLM: --api-key or VLLM_API_KEY)",
            final=True,
        )
    if 300 <= status < 400:
        location = response.headers.get("location")
        where = f"to {response.url.join(location)}" if location else "without a Location header"
        return EndpointCheck(
            name,
            False,
            f"{url} answered HTTP {status}, redirecting {where} (redirects are not followed: "
            "the key would go with them)",
            final=True,
        )
    return EndpointCheck(name, False, f"{url} answered HTTP {status}: {message}", final=True)


def _transient_status(
    name: str, response: httpx.Response, url: str, message: str, now: datetime
) -> EndpointCheck:
    """A status worth another attempt (the one classifier: `api.retry`), and when to make it."""
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("Retry-After"), now)
    asked = f", asked to retry after {retry_after:.0f}s" if retry_after is not None else ""
    if status == 429:
        why = f"rate limited{asked}"
    elif status in (502, 503, 504):
        why = f"not ready yet{asked}"
    else:
        why = f"a server error{asked}"
    return EndpointCheck(
        name, False, f"{url} answered HTTP {status} ({message}): {why}", retry_after=retry_after
    )


def not_the_api_root(response: httpx.Response, url: str, base_url: str) -> EndpointCheck:
    missing_v1 = api_root_hint(base_url)
    hint = (
        f"is base_url the API root? {missing_v1}"
        if missing_v1
        else "is base_url the API root of an OpenAI-compatible server?"
    )
    return EndpointCheck(
        "key accepted",
        False,
        f"{url} answered HTTP 404 ({error_message(response)}); {hint}",
        final=True,
    )
