"""What both resources' providers share: configuration (every account's settings, resolved
once), the runtime of a resource's account, and keys kept out of what every operation raises.

Providers are pickled into Pulumi state, so they hold nothing but what configure() learns in
the provider process, and even that is dropped when pickled.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from pulumi.dynamic import CheckFailure, ConfigureRequest, ResourceProvider

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
from convai_provider.guards.redaction import remember
from convai_provider.resources.engine_watch import start_engine_watch
from convai_provider.resources.inputs import is_unknown
from convai_provider.resources.key_identity import KEY_FINGERPRINT
from convai_provider.resources.provider_errors import ConvaiOperationError, keeping_keys_out
from convai_provider.resources.provider_process import (
    in_provider_server,
    log_to_stderr,
    show_errors_without_tracebacks,
)
from convai_provider.resources.runtime import ConvaiRuntime, runtime_for
from convai_provider.resources.settings import CONFIG_KEYS, AccountSettings, ConvaiSettings

PROVIDER_METHODS = ("check", "diff", "create", "read", "update", "delete")
"""What the engine calls a provider to do."""


class ConvaiProvider(ResourceProvider):
    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Every method the engine calls keeps keys out of what it raises."""
        super().__init_subclass__(**kwargs)
        for name in PROVIDER_METHODS:
            if name in vars(cls):
                setattr(cls, name, keeping_keys_out(vars(cls)[name]))

    def __init__(self) -> None:
        super().__init__()
        self._config: dict[str, Any] = {}
        self._resolved: AccountSettings | None = None

    def __getstate__(self) -> dict[str, Any]:
        # What configure() learnt (the Convai key among it) must never reach state.
        return {}

    def __setstate__(self, state: Mapping[str, Any]) -> None:
        self._config = {}
        self._resolved = None

    def configure(self, req: ConfigureRequest) -> None:
        self._config = {key: req.config.get(key) for key in CONFIG_KEYS}
        self._remember_account_keys()
        self._resolved = AccountSettings(self._config)
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
            return self._settings().operation_timeout
        except ConvaiError:
            return DEFAULT_OPERATION_TIMEOUT

    def _settings(self, account: str | None = None) -> ConvaiSettings:
        """The settings of `account` (an alias of convai:accounts; None: the default account), as
        configure() resolved them (an unconfigured provider resolves them when first asked)."""
        if self._resolved is None:
            self._resolved = AccountSettings(self._config)
        return self._resolved.of(account)

    def _runtime(self, account: str | None = None) -> ConvaiRuntime:
        """The runtime of `account` (an alias of convai:accounts; None: the default account)."""
        return runtime_for(self._settings(account))

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
            settings = self._settings(new if isinstance(new, str) and new else None)
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
