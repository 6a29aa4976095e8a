"""One exception tree for every way a Convai call can fail, mapped from HTTP status in one place."""

from __future__ import annotations

from convai_provider.api.access import (
    API_KEY_ARGUMENT,
    BASE_URL_ARGUMENT,
    LIBRARY_HINTS,
    TIMEOUT_ARGUMENT,
    Hints,
)
from convai_provider.guards.text import sentence


class ConvaiError(Exception):
    """Base of every error this package raises about Convai."""

    attempts: int = 1
    """How many times the request was sent before this error was final."""
    outcome_unknown: bool = False
    """Whether Convai may have carried the request out although no reply said so: it went out
    and its reply was lost (a timeout or a broken connection after sending, a reply that could
    not be decoded, a gateway's own 5xx)."""
    after_lost_reply: bool = False
    """Whether an earlier attempt of the same call had an unknown outcome: only then may a
    register's 409 be this call's own earlier attempt."""
    url_setting: str = BASE_URL_ARGUMENT
    """The setting the URL called came from, which a hint about a wrong URL names (the client
    sets it to its own)."""


class InvalidRequestError(ConvaiError, ValueError):
    """The caller passed something that cannot be sent (an empty identifier, a wrong type)."""


class ConvaiAPIError(ConvaiError):
    """Convai answered with an error status."""

    hint = "Check the request and try again."

    def __init__(
        self,
        operation: str,
        status_code: int,
        message: str,
        transaction_id: str = "",
        retry_after: float | None = None,
        *,
        envelope: bool = False,
    ) -> None:
        self.operation = operation
        self.status_code = status_code
        self.message = message
        self.transaction_id = transaction_id
        self.retry_after = retry_after
        self.envelope = envelope
        """Whether the body was Convai's own error shape for the call (`status: error`,
        `message`, `transactionID`; `{"ERROR": ...}` for the character calls): Convai's word,
        not a proxy's or a wrong URL's."""
        # A gateway's own 5xx may come after it forwarded the request; Convai's own error, a
        # 429 or a 4xx proves nothing was written.
        self.outcome_unknown = not envelope and status_code >= 500
        super().__init__(str(self))

    def __str__(self) -> str:
        server_said = self.message.strip() or "no message"
        tx = f", transactionID {self.transaction_id}" if self.transaction_id else ""
        return (
            f"Convai {self.operation} failed with HTTP {self.status_code}: "
            f"{sentence(server_said + tx)} {self.hint}"
        )


class BadRequestError(ConvaiAPIError):
    hint = "Fix the field the message names; retrying the same request will not help."


class AuthenticationError(ConvaiAPIError):
    key_source: str = API_KEY_ARGUMENT
    """The setting the refused key came from, which the hint names (the client sets it)."""
    hints: Hints = LIBRARY_HINTS
    """The caller's words for setting a key (the client sets its own)."""

    @property
    def hint(self) -> str:  # type: ignore[override]
        return self.hints.refused(self.key_source)


class NotFoundError(ConvaiAPIError):
    MODEL_OPERATIONS = ("update", "deregister")
    """The calls that name a model: their 404 is about the model, any other's about the URL."""

    @property
    def hint(self) -> str:  # type: ignore[override]
        if self.operation in self.MODEL_OPERATIONS:
            return "No model of that model_group_name exists in this Convai account."
        return f"No such call there: check that {self.url_setting} is Convai's API root."


class AbsenceNotConfirmedError(ConvaiError):
    """A call that names a model met 404, but a whole list did not confirm the model is gone."""

    def __init__(self, not_found: NotFoundError, why: str) -> None:
        self.not_found = not_found
        self.why = why
        super().__init__(str(self))

    def __str__(self) -> str:
        refusal = self.not_found
        said = refusal.message.strip().rstrip(".") or "no message"
        return (
            f"Convai {refusal.operation} answered HTTP 404 ({said}), {sentence(self.why)} "
            "Nothing was dropped: a 404 is taken as gone only when a list from the same Convai "
            f"confirms it. Check that {refusal.url_setting} is Convai's API root, then run again."
        )


class ConflictError(ConvaiAPIError):
    hint = (
        "model_group_name and display_name must be unique in the account: choose another, "
        "or take the existing model over with adopt_existing set to true (in a stack file: "
        "`adopt_existing: true`)."
    )


class RateLimitError(ConvaiAPIError):
    hint = "Convai is rate limiting this account; retries were exhausted, wait and run again."


class ServerError(ConvaiAPIError):
    hint = "Convai had an internal error and retries were exhausted; run again later."


class UnexpectedReplyError(ConvaiAPIError):
    """Convai's address answered, but not with the documented reply of the endpoint: a proxy, a
    captive portal or a wrong URL. Never read as an empty result; never retried."""

    @property
    def hint(self) -> str:  # type: ignore[override]
        return (
            f"Check that {self.url_setting} is Convai's API "
            "(a proxy, a captive portal or a wrong URL answers like this)."
        )

    def __str__(self) -> str:
        return (
            f"Convai {self.operation} answered HTTP {self.status_code} with a reply that is not "
            f"Convai's: {sentence(self.message)} {self.hint}"
        )


class RedirectError(UnexpectedReplyError):
    """Convai's API does not redirect; a redirect means the base URL is not the API's. It is not
    followed: the key would go wherever it points."""

    @property
    def hint(self) -> str:  # type: ignore[override]
        return (
            "The redirect was not followed (the API key would go with it): set "
            f"{self.url_setting} to Convai's API itself."
        )

    def __str__(self) -> str:
        return (
            f"Convai {self.operation} was redirected (HTTP {self.status_code}) "
            f"{sentence(self.message)} {self.hint}"
        )


class ConvaiConnectionError(ConvaiError):
    """Convai could not be reached, or the connection broke before a full reply arrived."""

    def __init__(
        self, operation: str, base_url: str, detail: str, *, outcome_unknown: bool = False
    ) -> None:
        self.operation = operation
        self.base_url = base_url
        self.detail = detail
        self.outcome_unknown = outcome_unknown
        super().__init__(str(self))

    def __str__(self) -> str:
        return (
            f"Convai {self.operation} could not reach {self.base_url}: {sentence(self.detail)} "
            f"Check the network and {self.url_setting}."
        )


class ConvaiProtocolError(ConvaiConnectionError):
    """A connection was made, but what came back was not a complete HTTP reply."""

    def __str__(self) -> str:
        return (
            f"Convai {self.operation} at {self.base_url}: the server {sentence(self.detail)} "
            f"Check {self.url_setting}, or run again."
        )


class ConvaiTimeoutError(ConvaiConnectionError):
    timeout_setting: str | None = TIMEOUT_ARGUMENT
    """What raises the time a request may take, which the hint names (the client sets its
    caller's; None: nothing does, and the hint says to run again)."""

    def __str__(self) -> str:
        raise_it = f", or raise {self.timeout_setting}" if self.timeout_setting else ""
        return (
            f"Convai {self.operation} at {self.base_url} timed out: {sentence(self.detail)} "
            f"Convai may be slow or unreachable; run again{raise_it}."
        )


_STATUS_ERRORS: dict[int, type[ConvaiAPIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: AuthenticationError,
    404: NotFoundError,
    409: ConflictError,
    429: RateLimitError,
}


def error_for_status(
    operation: str,
    status_code: int,
    message: str,
    transaction_id: str = "",
    retry_after: float | None = None,
    *,
    envelope: bool = False,
) -> ConvaiAPIError:
    """The one mapping from an HTTP error status to the exception a caller catches."""
    if status_code >= 500:
        cls: type[ConvaiAPIError] = ServerError
    else:
        cls = _STATUS_ERRORS.get(status_code, ConvaiAPIError)
    return cls(operation, status_code, message, transaction_id, retry_after, envelope=envelope)
