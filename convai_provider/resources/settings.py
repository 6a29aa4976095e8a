"""The provider's settings: each account's Convai key and URL (resolved by `api.resolver`, in
its one order, with a Pulumi user's words for setting them), timeouts and retries, each checked,
with a message naming the setting. The provider resolves them once, when it is configured."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, TypeVar

from convai_provider.api.access import (
    API_KEY_CONFIG,
    BASE_URL_CONFIG,
    CONFIG_NAMESPACE,
    ConvaiAccess,
    ConvaiKeyError,
    ConvaiURLError,
    Hints,
)
from convai_provider.api.account import DEFAULT_OPERATION_TIMEOUT
from convai_provider.api.accounts import (
    ACCOUNTS_CONFIG,
    AccountError,
    declared_accounts,
    one_key_for_two,
)
from convai_provider.api.client import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from convai_provider.api.errors import ConvaiError
from convai_provider.api.resolver import Given, given_keys, resolve_access, sharing_one_key
from convai_provider.guards.durations import retries, seconds
from convai_provider.preflight.checks import DEFAULT_WAIT

REQUEST_TIMEOUT_CONFIG = f"{CONFIG_NAMESPACE}:requestTimeout"
MAX_RETRIES_CONFIG = f"{CONFIG_NAMESPACE}:maxRetries"
OPERATION_TIMEOUT_CONFIG = f"{CONFIG_NAMESPACE}:operationTimeout"
VERIFY_TIMEOUT_CONFIG = f"{CONFIG_NAMESPACE}:verifyTimeout"
"""The settings only the provider reads (the client and the commands have their own)."""

CONFIG_KEYS = (
    API_KEY_CONFIG,
    BASE_URL_CONFIG,
    REQUEST_TIMEOUT_CONFIG,
    MAX_RETRIES_CONFIG,
    OPERATION_TIMEOUT_CONFIG,
    VERIFY_TIMEOUT_CONFIG,
    ACCOUNTS_CONFIG,
)


_T = TypeVar("_T")


class MissingApiKeyError(ConvaiError):
    """Neither the stack's convai:apiKey nor $CONVAI_API_KEY holds a key."""


class InvalidSettingError(ConvaiError):
    pass


class UnknownAccountError(InvalidSettingError):
    """An account the stack does not declare (or a convai:accounts that cannot be read)."""


def pulumi_config_set(setting: str) -> str:
    """The command that sets a Convai key in the stack's config, as a secret; without the value,
    so it prompts for the key, which stays out of the shell's history."""
    path = " --path" if "." in setting else ""
    return f"`pulumi config set --secret{path} {setting}`"


PULUMI_HINTS = Hints(set_config=pulumi_config_set, request_timeout=REQUEST_TIMEOUT_CONFIG)
"""How the provider and the program tell a user to set a key: the Pulumi command."""


@dataclass(frozen=True)
class ConvaiSettings:
    """One account's settings; hashable so clients can be shared."""

    access: ConvaiAccess
    request_timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    operation_timeout: float = DEFAULT_OPERATION_TIMEOUT
    verify_timeout: float = DEFAULT_WAIT

    @property
    def api_key(self) -> str:
        return self.access.api_key

    @property
    def base_url(self) -> str:
        return self.access.base_url

    @classmethod
    def resolve(
        cls,
        config: Mapping[str, Any],
        environ: Mapping[str, str] | None = None,
        account: str | None = None,
        *,
        key: Given | None = None,
        base_url: Given | None = None,
    ) -> ConvaiSettings:
        """The settings of `account` (an alias of convai:accounts; None: the default account);
        `key` and `base_url`, given by the caller, outrank the stack and the environment."""
        env = os.environ if environ is None else environ
        access = _account_access(config, env, account, key=key, base_url=base_url)
        return cls(access, **asdict(_timings(config)))


@dataclass(frozen=True)
class Timings:
    """The settings every account shares: how long calls may take and how often they retry."""

    request_timeout: float
    max_retries: int
    operation_timeout: float
    verify_timeout: float


def _timings(config: Mapping[str, Any]) -> Timings:
    try:
        return Timings(
            request_timeout=seconds(
                _given(config, REQUEST_TIMEOUT_CONFIG, DEFAULT_TIMEOUT),
                REQUEST_TIMEOUT_CONFIG,
                zero_ok=False,
            ),
            max_retries=retries(
                _given(config, MAX_RETRIES_CONFIG, DEFAULT_MAX_RETRIES), MAX_RETRIES_CONFIG
            ),
            operation_timeout=seconds(
                _given(config, OPERATION_TIMEOUT_CONFIG, DEFAULT_OPERATION_TIMEOUT),
                OPERATION_TIMEOUT_CONFIG,
                zero_ok=False,
            ),
            verify_timeout=seconds(
                _given(config, VERIFY_TIMEOUT_CONFIG, DEFAULT_WAIT), VERIFY_TIMEOUT_CONFIG
            ),
        )
    except ValueError as exc:
        raise InvalidSettingError(f"{exc}.") from None


def _account_access(
    config: Mapping[str, Any],
    env: Mapping[str, str],
    account: str | None,
    *,
    key: Given | None = None,
    base_url: Given | None = None,
) -> ConvaiAccess:
    """The checked key and URL of `account`, in the provider's errors, refused when another
    declared account is given the same key."""
    try:
        access = resolve_access(
            config, env, account, key=key, base_url=base_url, hints=PULUMI_HINTS
        )
    except AccountError as exc:
        raise UnknownAccountError(str(exc)) from None
    except ConvaiKeyError as exc:
        refused = MissingApiKeyError if exc.missing else InvalidSettingError
        raise refused(str(exc)) from None
    except ConvaiURLError as exc:
        raise InvalidSettingError(str(exc)) from None
    for accounts in sharing_one_key(given_keys(config, env)):
        if account in accounts:
            raise InvalidSettingError(f"{one_key_for_two(accounts)}.")
    return access


class AccountSettings:
    """Every account's settings, resolved once: by the provider when it is configured, and by
    the program before it declares any resource (so a preview refuses what the first operation
    of `up` would). The default account's and those of each account convai:accounts declares.
    Settings that do not resolve are kept as their error, raised to the operation that needs
    them (a preview's Check needs none); an alias the stack does not declare is refused when
    asked for."""

    def __init__(self, config: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> None:
        self._config = dict(config)
        self._env = dict(os.environ if environ is None else environ)
        self._unreadable: ConvaiError | None = None
        try:
            aliases: list[str | None] = [None, *declared_accounts(config)]
        except AccountError as exc:
            aliases, self._unreadable = [None], UnknownAccountError(str(exc))
        self._timings = _attempt(lambda: _timings(self._config))
        self._access = {alias: self._resolve(alias) for alias in aliases}

    def _resolve(self, account: str | None) -> ConvaiAccess | ConvaiError:
        return _attempt(lambda: _account_access(self._config, self._env, account))

    def of(self, account: str | None) -> ConvaiSettings:
        """The settings of `account` (None: the default account), or the ConvaiError saying why
        there are none."""
        access = self._access[account] if account in self._access else self._resolve(account)
        if isinstance(access, ConvaiError):
            raise type(access)(str(access))
        if isinstance(self._timings, ConvaiError):
            raise type(self._timings)(str(self._timings))
        return ConvaiSettings(access, **asdict(self._timings))

    def accesses(self) -> dict[str | None, ConvaiAccess]:
        """The key and URL of every declared account that has usable ones."""
        return {a: r for a, r in self._access.items() if isinstance(r, ConvaiAccess)}

    def problems(self) -> list[str]:
        """Why settings do not resolve, every problem once: convai:accounts that cannot be read,
        each account's key or URL, the timings."""
        errors = [self._unreadable, *self._access.values(), self._timings]
        found = [str(e) for e in errors if isinstance(e, ConvaiError)]
        return list(dict.fromkeys(found))


def _attempt(resolve: Callable[[], _T]) -> _T | ConvaiError:
    try:
        return resolve()
    except ConvaiError as exc:
        return exc


def _given(config: Mapping[str, Any], key: str, default: float) -> object:
    raw = config.get(key)
    return default if raw is None or raw == "" else raw
