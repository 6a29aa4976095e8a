"""Prove an endpoint is OpenAI-compatible, keyed and serving the model, before Convai uses it.

Convai's FAQ: when an endpoint is down or wrong, characters on it just stop answering. The
preflight runs the calls Convai will make (list models, a one-token chat completion) and says in
one sentence what to fix. A freshly deployed vLLM needs minutes to load its model, so transient
failures are retried until a wait budget runs out, by the product's one retry policy
(`api.retry`): the same statuses are transient as for Convai's calls, the same backoff spaces the
attempts, and a server's Retry-After is honoured.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from convai_provider.api.retry import Backoff, is_retryable_status, parse_retry_after
from convai_provider.guards.bounded_http import (
    MIB,
    ReplyTooLargeError,
    bounded_client,
    send,
    what_went_wrong,
)
from convai_provider.guards.documents import DocumentError, parse_json
from convai_provider.guards.durations import seconds
from convai_provider.guards.keys import key_problem
from convai_provider.guards.redaction import remember
from convai_provider.guards.text import sentence, server_text
from convai_provider.guards.urls import api_root_hint, endpoint_url_problem, refusal
from convai_provider.preflight.certificates import is_staging_issuer, presented_issuer

DEFAULT_WAIT = 900.0
"""Seconds to wait for an endpoint to become ready: enough for vLLM to pull and load a model."""

DEFAULT_REQUEST_TIMEOUT = 30.0
"""Seconds one request may take, from connecting to the last byte of its reply."""

REPLY_CAP = 16 * MIB
"""Bytes read from one endpoint reply at most: far more than any model list."""

WAIT_NOTICE_EVERY = 10.0
"""Seconds a wait goes without saying why at most: a pause between attempts longer than this is
cut into slices, each followed by a notice (`pulumi up` shows each as it comes)."""

LAST_ATTEMPT = 0.5
"""Seconds of the wait budget kept for the last attempt's requests (a tenth of short budgets)."""

LONGEST_PAUSE = 30.0
"""Seconds between attempts at most, unless the endpoint asks for longer (Retry-After)."""


@dataclass(frozen=True)
class EndpointCheck:
    """One check's outcome (not Pulumi's `dynamic.CheckResult`, which is a provider's check)."""

    name: str
    """reachable, key accepted, key enforced, model listed or chat completion."""
    ok: bool
    detail: str
    final: bool = False
    """A failure that waiting will not fix (a wrong key, a model that is not served)."""
    warning: bool = False
    """Passed, but worth fixing (an endpoint anyone can use)."""
    retry_after: float | None = None
    """Seconds the endpoint asked to be left alone before the next attempt (Retry-After)."""


@dataclass
class PreflightReport:
    base_url: str
    model_name: str
    checks: list[EndpointCheck] = field(default_factory=list)
    attempts: int = 0
    waited: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failure(self) -> EndpointCheck | None:
        return next((c for c in self.checks if not c.ok), None)

    def summary(self) -> str:
        failure = self.failure
        if failure is None:
            return f"{self.base_url} serves '{self.model_name}' and answers chat completions."
        tries = (
            f" (after {self.attempts} attempts over {self.waited:.0f}s)"
            if self.attempts > 1
            else ""
        )
        return sentence(
            f"Endpoint check '{failure.name}' failed for {self.base_url}{tries}: {failure.detail}"
        )


def error_message(response: httpx.Response) -> str:
    """The human message in any of the error bodies OpenAI-style servers send.

    vLLM's auth middleware: {"error": "Unauthorized"}; vLLM and OpenAI: {"error": {"message": ..}};
    older vLLM and SGLang: {"object": "error", "message": ..}; FastAPI defaults: {"detail": ..}.
    """
    try:
        body = parse_json(response.content)
    except DocumentError:
        return server_text(response.text.strip(), 200) or response.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return server_text(error["message"])
        if isinstance(error, str):
            return server_text(error)
        for key in ("message", "detail"):
            if body.get(key):
                return server_text(body[key])
    return server_text(body, 200)


def _served_models(response: httpx.Response) -> list[str] | None:
    try:
        body = parse_json(response.content)
    except DocumentError:
        return None
    if not isinstance(body, dict) or not isinstance(body.get("data"), list):
        return None
    return [str(item.get("id")) for item in body["data"] if isinstance(item, dict)]


def _listed_names(served: list[str], shown: int = 20) -> str:
    names = ", ".join(f"'{server_text(n, 100)}'" for n in served[:shown]) or "none"
    return names + (f" and {len(served) - shown} more" if len(served) > shown else "")


_REACHED = (httpx.TimeoutException, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)
"""Transport failures that happen after a connection was made."""


def _transport_failure(exc: httpx.TransportError, url: str, timeout: float) -> EndpointCheck:
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


def _too_large(exc: ReplyTooLargeError, url: str) -> EndpointCheck:
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


def _status_failure(
    name: str, response: httpx.Response, url: str, *, key_given: bool = True
) -> EndpointCheck:
    message = error_message(response)
    status = response.status_code
    if is_retryable_status(status):
        return _transient_status(name, response, url, message)
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


def _transient_status(name: str, response: httpx.Response, url: str, message: str) -> EndpointCheck:
    """A status worth another attempt (the one classifier: `api.retry`), and when to make it."""
    status = response.status_code
    retry_after = parse_retry_after(response.headers.get("Retry-After"))
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


def _not_the_api_root(response: httpx.Response, url: str, base_url: str) -> EndpointCheck:
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


class Preflight:
    """Runs the checks once (`run_once`) or until they pass or the wait budget is spent (`run`)."""

    def __init__(
        self,
        base_url: str,
        model_name: str,
        api_key: str | None,
        *,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        problem = None if api_key is None else key_problem(api_key)
        if problem is not None:
            raise ValueError(f"the endpoint's api_key {problem}")
        remember(api_key)
        self.base_url = base_url.rstrip("/")
        self.model_name = model_name
        self.api_key = api_key
        self.request_timeout = seconds(request_timeout, "request_timeout", zero_ok=False)
        self._http = bounded_client(transport=transport)
        self._sleep = sleep
        self._clock = clock
        self._until: float | None = None
        """When `run`'s wait ends, on `clock`: no request outlasts it."""

    def close(self) -> None:
        self._http.close()

    def run(
        self,
        wait: float = DEFAULT_WAIT,
        interval: float = 5.0,
        on_wait: Callable[[PreflightReport], None] | None = None,
    ) -> PreflightReport:
        """Retry transient failures until the checks pass or `wait` seconds are spent; every
        request ends by then too. `wait=0` checks once, within one request timeout. Attempts
        are `interval` seconds apart at first, then further (`api.retry.Backoff`); an endpoint's
        Retry-After is waited for in full, or ends the wait when it reaches past it. `on_wait` is
        given the last failed attempt at every retry and every WAIT_NOTICE_EVERY seconds of a
        longer pause, so a wait is never silent for long."""
        wait, interval = seconds(wait, "wait"), seconds(interval, "interval")
        started = self._clock()
        budget = wait if wait > 0 else self.request_timeout
        backoff = Backoff(initial=interval, maximum=LONGEST_PAUSE, retry_after_cap=budget)
        self._until = started + budget
        attempts = 0
        try:
            while True:
                attempts += 1
                report = self.run_once()
                report.attempts = attempts
                report.waited = self._clock() - started
                failure = report.failure
                if failure is None or failure.final:
                    return report
                # The last attempt comes just before the budget ends, not a whole pause early.
                left = wait - (self._clock() - started) - min(LAST_ATTEMPT, wait / 10)
                pause = backoff.delay(attempts - 1, failure.retry_after)
                if left <= 0 or (failure.retry_after is not None and pause > left):
                    return report
                pause = min(pause, left)
                while True:
                    if on_wait is not None:
                        report.waited = self._clock() - started
                        on_wait(report)
                    self._sleep(min(pause, WAIT_NOTICE_EVERY))
                    pause -= WAIT_NOTICE_EVERY
                    if pause <= 0:
                        break
        finally:
            self._until = None

    def run_once(self) -> PreflightReport:
        report = PreflightReport(self.base_url, self.model_name)
        problem = endpoint_url_problem(self.base_url)
        if problem is not None:
            refused = refusal("base_url", self.base_url, problem)
            report.checks.append(EndpointCheck("reachable", False, refused, final=True))
            return report
        for check in (self._models_with_key, self._models_without_key, self._chat_completion):
            results = check()
            report.checks.extend(results)
            if not all(r.ok for r in results):
                break
        return report

    def _headers(self, with_key: bool = True) -> dict[str, str]:
        if with_key and self.api_key:
            return {"Authorization": f"Bearer {self.api_key}"}
        return {}

    def _send(
        self, method: str, url: str, with_key: bool, **options: Any
    ) -> httpx.Response | EndpointCheck:
        """One request, within the request timeout and what is left of `run`'s wait."""
        seconds = self.request_timeout
        if self._until is not None:
            seconds = min(seconds, self._until - self._clock())
        if seconds <= 0:
            return EndpointCheck(
                "reachable", False, f"the preflight's time ran out before {url} was checked"
            )
        started = self._clock()
        try:
            return send(
                self._http,
                method,
                url,
                seconds=seconds,
                cap=REPLY_CAP,
                headers=self._headers(with_key),
                **options,
            )
        except ReplyTooLargeError as exc:
            return _too_large(exc, url)
        except httpx.TransportError as exc:
            # Reading an untrusted certificate's issuer takes one more handshake: within what is
            # left of this request's time.
            left = max(seconds - (self._clock() - started), 0.1)
            return _transport_failure(exc, url, left)

    def _get(self, url: str, with_key: bool) -> httpx.Response | EndpointCheck:
        return self._send("GET", url, with_key)

    def _models_with_key(self) -> list[EndpointCheck]:
        url = f"{self.base_url}/models"
        response = self._get(url, with_key=True)
        if isinstance(response, EndpointCheck):
            return [response]
        if is_retryable_status(response.status_code):
            return [_status_failure("reachable", response, url)]
        reachable = EndpointCheck("reachable", True, f"{url} answered HTTP {response.status_code}")
        if response.status_code == 404:
            return [reachable, _not_the_api_root(response, url, self.base_url)]
        if response.status_code != 200:
            failure = _status_failure("key accepted", response, url, key_given=bool(self.api_key))
            return [reachable, failure]
        served = _served_models(response)
        if served is None:
            return [
                reachable,
                EndpointCheck(
                    "key accepted",
                    False,
                    f"{url} did not answer with an OpenAI model list; is base_url the API root "
                    "(ending in /v1)?",
                    final=True,
                ),
            ]
        accepted = EndpointCheck("key accepted", True, "GET /models succeeded with the key")
        if self.model_name not in served:
            names = _listed_names(served)
            return [
                reachable,
                accepted,
                EndpointCheck(
                    "model listed",
                    False,
                    f"model '{self.model_name}' is not served there; it serves {names}. Set "
                    "model_name to one of those (vLLM: --served-model-name)",
                    final=bool(served),
                ),
            ]
        return [
            reachable,
            accepted,
            EndpointCheck("model listed", True, f"'{self.model_name}' is served"),
        ]

    def _models_without_key(self) -> list[EndpointCheck]:
        url = f"{self.base_url}/models"
        response = self._get(url, with_key=False)
        if isinstance(response, EndpointCheck):
            return [response]
        if response.status_code in (401, 403):
            return [EndpointCheck("key enforced", True, "requests without the key are refused")]
        if is_retryable_status(response.status_code):  # says nothing about keys: ask again
            return [_status_failure("key enforced", response, url)]
        return [
            EndpointCheck(
                "key enforced",
                True,
                "the endpoint does not check keys: anyone who finds it can use it "
                "(vLLM: start it with --api-key)",
                warning=True,
            )
        ]

    def _chat_completion(self) -> list[EndpointCheck]:
        url = f"{self.base_url}/chat/completions"
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": [{"role": "user", "content": "ping"}],
            "max_tokens": 1,
        }
        response = self._send("POST", url, with_key=True, json=body)
        if isinstance(response, EndpointCheck):
            return [response]
        if response.status_code != 200:
            return [_status_failure("chat completion", response, url)]
        try:
            reply = parse_json(response.content)
        except DocumentError:
            reply = None
        choices = reply.get("choices") if isinstance(reply, dict) else None
        if not choices:
            return [
                EndpointCheck(
                    "chat completion",
                    False,
                    f"{url} answered 200 without choices: not an OpenAI-compatible reply",
                    final=True,
                )
            ]
        return [EndpointCheck("chat completion", True, "a 1-token completion succeeded")]


def check_endpoint(
    base_url: str,
    model_name: str,
    api_key: str | None,
    *,
    wait: float = DEFAULT_WAIT,
    interval: float = 5.0,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    on_wait: Callable[[PreflightReport], None] | None = None,
) -> PreflightReport:
    preflight = Preflight(base_url, model_name, api_key, request_timeout=request_timeout)
    try:
        return preflight.run(wait=wait, interval=interval, on_wait=on_wait)
    finally:
        preflight.close()
