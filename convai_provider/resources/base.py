"""What both resources share: their providers' configuration, runtime, check and key redaction,
and `merge_args` for their resource classes.

Providers are pickled into Pulumi state, so they hold nothing but what configure() learns in
the provider process, and even that is dropped when pickled.
"""

from __future__ import annotations

import functools
import logging
import sys
import traceback
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from typing import Any

from pulumi.dynamic import CheckFailure, CheckResult, ConfigureRequest, ResourceProvider
from pulumi.output import Unknown
from pydantic import BaseModel, ValidationError

from convai_provider.api.account import DEFAULT_OPERATION_TIMEOUT
from convai_provider.api.accounts import (
    ACCOUNT_KEY,
    API_KEY_FIELD,
    AccountError,
    declared_accounts,
    unknown_account,
)
from convai_provider.api.errors import ConvaiError
from convai_provider.guards.fingerprints import is_fingerprint_of
from convai_provider.guards.keys import redact, remember
from convai_provider.guards.text import SafeLogFilter, escaped, sentence
from convai_provider.guards.validation import field_problems
from convai_provider.resources.engine_watch import IN_FLIGHT, start_engine_watch
from convai_provider.resources.key_identity import KEY_FINGERPRINT
from convai_provider.resources.runtime import ConvaiRuntime, runtime_for
from convai_provider.resources.settings import CONFIG_KEYS, ConvaiSettings

PROVIDER_KEY = "__provider"
FULL_TRACEBACK = 1000
"""Frames shown where a traceback is wanted whole (the process shows none by default)."""

log = logging.getLogger("convai_provider")


OPERATIONS = ("check", "diff", "create", "read", "update", "delete")


class ConvaiOperationError(Exception):
    """A failed provider operation, in one sentence: which resource, which operation, and why.
    Pulumi prints it to a terminal: it holds no key and starts no escape sequence, whatever
    Convai or an endpoint said."""

    def __init__(self, operation: str, subject: str, cause: Exception | str) -> None:
        said = f"Could not {operation} {subject}: {sentence(str(cause))}"
        super().__init__(escaped(redact(said)))


class RedactedError(Exception):
    """An error whose message held a key: raised in its place, with the key replaced."""


def _keeping_keys_out(operation: Callable[..., Any]) -> Callable[..., Any]:
    """Pulumi prints what a provider raises: no key may be in it, whatever raised it."""

    @functools.wraps(operation)
    def run(self: ConvaiProvider, *args: Any) -> Any:
        remember(*(arg.get("api_key") for arg in args if isinstance(arg, Mapping)))
        try:
            with IN_FLIGHT.running():
                return operation(self, *args)
        except Exception as exc:
            # Pulumi shows the traceback, chained exceptions included: look at all of it.
            printed = "".join(traceback.format_exception(exc, limit=FULL_TRACEBACK))
            if not isinstance(exc, ConvaiOperationError):
                log.error("%s failed unexpectedly:\n%s", operation.__name__, redact(printed))
            if redact(printed) == printed:
                raise
            raise RedactedError(redact(str(exc))) from None

    return run


def is_unknown(value: Any) -> bool:
    return isinstance(value, Unknown)


def differs(old: Any, new: Any) -> bool:
    """A value unknown at plan time may differ from anything."""
    return is_unknown(new) or old != new


def check_inputs(
    schema: type[BaseModel], news: Mapping[str, Any], computed: Iterable[str] = ()
) -> CheckResult:
    """Validate what is known, pass unknowns through, one failure per bad field. No network."""
    skipped = {PROVIDER_KEY, *computed}
    declared = {k: v for k, v in news.items() if k not in skipped}
    unknown = {k for k, v in declared.items() if is_unknown(v)}
    known = {k: v for k, v in declared.items() if k not in unknown and v is not None}
    try:
        checked = schema.model_validate(known).model_dump(exclude_none=True)
        failures = []
    except ValidationError as exc:
        checked = dict(known)
        failures = [
            CheckFailure(field, redact(f"{field} {reason}"))
            for field, reason in field_problems(exc)
            if field.split(".")[0] not in unknown
        ]
    checked.update({k: declared[k] for k in unknown})
    return CheckResult(checked, failures)


def log_to_stderr() -> None:
    """configure() runs only in the provider process, whose stderr the Pulumi CLI shows: say
    there what read and delete decided (a model dropped from state, one already gone)."""
    logger = logging.getLogger("convai_provider")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("convai: %(message)s"))
        handler.addFilter(SafeLogFilter())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


PROVIDER_SERVER = "pulumi.dynamic.__main__"
"""The module Pulumi runs as `python -m pulumi.dynamic`: the provider process."""


SENTENCES = (ConvaiOperationError, RedactedError, ConvaiError)
"""What our providers raise on purpose: a sentence that says what to do, shown alone."""


class _SentenceTracebacks:
    """The `traceback` module as the SDK's provider server sees it. The server answers a failed
    call with `traceback.format_exc()`, whose last line starts with the exception's class path
    (`convai_provider.resources.base.ConvaiOperationError: Could not ...`); one of our sentences
    is given alone, anything else as Python prints it."""

    def __getattr__(self, name: str) -> Any:
        return getattr(traceback, name)

    @staticmethod
    def format_exc(limit: int | None = None, chain: bool = True) -> str:
        error = sys.exc_info()[1]
        if isinstance(error, SENTENCES):
            return f"{error}\n"
        return traceback.format_exc(limit, chain)


def in_provider_server() -> bool:
    main = sys.modules.get("__main__")
    return getattr(getattr(main, "__spec__", None), "name", None) == PROVIDER_SERVER


def show_errors_without_tracebacks() -> None:
    """Pulumi prints `traceback.format_exc()` of whatever a provider raises: ten lines of SDK and
    provider frames and a class path before the one sentence a ConvaiOperationError says. In the
    provider process (and only there: the setting is process-wide) frames are left out of every
    printed traceback, and our sentences are printed alone; an unexpected error's frames are
    logged in full by the operation that met it."""
    if in_provider_server():
        main = sys.modules["__main__"]
        sys.tracebacklimit = 0
        main.traceback = _SentenceTracebacks()  # type: ignore[attr-defined]


class ConvaiProvider(ResourceProvider):
    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every operation a provider defines keeps keys out of what it raises."""
        super().__init_subclass__(**kwargs)
        for name in OPERATIONS:
            if name in vars(cls):
                setattr(cls, name, _keeping_keys_out(vars(cls)[name]))

    def __init__(self) -> None:
        super().__init__()
        self._config: dict[str, Any] = {}

    def __getstate__(self) -> dict[str, Any]:
        # What configure() learnt (the Convai key among it) must never reach state.
        return {}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self._config = {}

    def configure(self, req: ConfigureRequest) -> None:
        self._config = {key: req.config.get(key) for key in CONFIG_KEYS}
        self._remember_account_keys()
        log_to_stderr()
        show_errors_without_tracebacks()
        self._prepare_runtime()
        if in_provider_server():
            start_engine_watch(self._operation_timeout())

    def _prepare_runtime(self) -> None:
        """Build the client now, as a Terraform provider's Configure does: its TLS setup takes
        ~0.1 s, paid once when the provider starts rather than inside the first create. Settings
        that do not resolve are left for the first call that needs them to report: a preview
        runs Check, which needs no key."""
        with suppress(ConvaiError):
            self._runtime()

    def _operation_timeout(self) -> float:
        """How long operations in flight may still take (what a provider process whose engine
        is gone waits for before it exits)."""
        try:
            return self._runtime().settings.operation_timeout
        except ConvaiError:
            return DEFAULT_OPERATION_TIMEOUT

    def _runtime(self, account: str | None = None) -> ConvaiRuntime:
        """The runtime of `account` (an alias of convai:accounts; None: the default account)."""
        return runtime_for(ConvaiSettings.resolve(self._config, account=account))

    def _account_runtime(self, operation: str, subject: str, account: object) -> ConvaiRuntime:
        """The runtime of a resource's account; settings that cannot make one (an account the
        stack no longer declares, an account without a key, a bad URL) fail the operation in one
        sentence before anything is sent, naming the alias and the setting to fix."""
        try:
            return self._runtime(account if isinstance(account, str) else None)
        except ConvaiError as exc:
            raise ConvaiOperationError(operation, subject, exc) from None

    def _remember_account_keys(self) -> None:
        """Every account's key is kept out of messages from the start, used or not."""
        with suppress(AccountError):
            for settings in declared_accounts(self._config).values():
                key = settings.get(API_KEY_FIELD)
                if isinstance(key, str):
                    remember(key)

    def _account_renamed(self, olds: Mapping[str, Any], news: Mapping[str, Any]) -> bool:
        """Whether a resource's account changed in name only: an alias renamed, or the default
        account given an alias, with the same key. The key recorded for the resource tells it
        (key_identity): the new account's key is the one that created it or last saw it, and a
        key opens one Convai account. Nothing is sent; an account whose key cannot be read now
        is taken for another account."""
        old, new = olds.get(ACCOUNT_KEY), news.get(ACCOUNT_KEY)
        if is_unknown(new) or old == new:
            return False
        try:
            settings = ConvaiSettings.resolve(self._config, account=new if new else None)
        except ConvaiError:
            return False
        return is_fingerprint_of(settings.api_key, olds.get(KEY_FINGERPRINT)) is True

    def _account_failures(self, news: Mapping[str, Any]) -> list[CheckFailure]:
        """A resource naming an account the stack does not declare is refused at preview."""
        alias = news.get(ACCOUNT_KEY)
        if not isinstance(alias, str):
            return []
        try:
            accounts = declared_accounts(self._config)
        except AccountError as exc:
            return [CheckFailure(ACCOUNT_KEY, str(exc))]
        if alias in accounts:
            return []
        return [CheckFailure(ACCOUNT_KEY, f"{ACCOUNT_KEY}: {unknown_account(alias, accounts)}")]


def merge_args(args: object | None, keywords: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments win over the Args object; unset ones are left for check() to default."""
    merged = dict(vars(args)) if args is not None else {}
    merged.update({k: v for k, v in keywords.items() if v is not None})
    return merged
