"""The provider's settings, resolved in its process: the Convai key and URL (in the order of
`api.access`), timeouts and retries, each checked, with a message naming the setting."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from convai_provider.api.access import (
    API_KEY_CONFIG,
    BASE_URL_CONFIG,
    DEFAULT_CONVAI_URL,
    MAX_RETRIES_CONFIG,
    OPERATION_TIMEOUT_CONFIG,
    REQUEST_TIMEOUT_CONFIG,
    VERIFY_TIMEOUT_CONFIG,
    ConvaiKeyError,
    convai_base_url,
    convai_key,
    convai_url_problem,
)
from convai_provider.api.account import DEFAULT_OPERATION_TIMEOUT
from convai_provider.api.accounts import (
    ACCOUNTS_CONFIG,
    API_KEY_FIELD,
    AccountError,
    account_key,
    account_settings,
    account_url_source,
    accounts_given,
    one_key_for_two,
    with_account_url,
)
from convai_provider.api.client import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from convai_provider.api.errors import ConvaiError
from convai_provider.guards.durations import retries, seconds
from convai_provider.guards.urls import refusal
from convai_provider.preflight.checks import DEFAULT_WAIT

CONFIG_KEYS = (
    API_KEY_CONFIG,
    BASE_URL_CONFIG,
    REQUEST_TIMEOUT_CONFIG,
    MAX_RETRIES_CONFIG,
    OPERATION_TIMEOUT_CONFIG,
    VERIFY_TIMEOUT_CONFIG,
    ACCOUNTS_CONFIG,
)


class MissingApiKeyError(ConvaiError):
    """Neither the stack's convai:apiKey nor $CONVAI_API_KEY holds a key."""


class InvalidSettingError(ConvaiError):
    pass


class UnknownAccountError(InvalidSettingError):
    """An account the stack does not declare (or a convai:accounts that cannot be read)."""


@dataclass(frozen=True)
class ConvaiSettings:
    """Resolved at call time in the provider process; hashable so clients can be shared."""

    api_key: str = field(repr=False)
    api_key_source: str = API_KEY_CONFIG
    """The setting the key came from: what a refused key's message names."""
    base_url: str = DEFAULT_CONVAI_URL
    request_timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    operation_timeout: float = DEFAULT_OPERATION_TIMEOUT
    verify_timeout: float = DEFAULT_WAIT

    @classmethod
    def resolve(
        cls,
        config: Mapping[str, Any],
        environ: Mapping[str, str] | None = None,
        account: str | None = None,
    ) -> ConvaiSettings:
        """The settings of `account` (an alias of convai:accounts; None: the default account)."""
        env = os.environ if environ is None else environ
        try:
            if account is None:
                api_key, api_key_source = convai_key(config, env)
            else:
                declared = account_settings(config, account)
                api_key, api_key_source = account_key(declared.get(API_KEY_FIELD), env, account)
        except AccountError as exc:
            raise UnknownAccountError(str(exc)) from None
        except ConvaiKeyError as exc:
            refused = MissingApiKeyError if exc.missing else InvalidSettingError
            raise refused(str(exc)) from None
        sharing = accounts_given(config, env, api_key)
        if len(sharing) > 1:
            raise InvalidSettingError(f"{one_key_for_two(sharing)}.")
        if account is not None:
            config = with_account_url(config, declared)
        base_url, source = convai_base_url(config, env)
        if account is not None:
            source = account_url_source(config, account, source)
        problem = convai_url_problem(base_url)
        if problem is not None:
            raise InvalidSettingError(f"{refusal(source, base_url, problem)}.")
        try:
            return cls(
                api_key=api_key,
                api_key_source=api_key_source,
                base_url=base_url.rstrip("/"),
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


def _given(config: Mapping[str, Any], key: str, default: float) -> object:
    raw = config.get(key)
    return default if raw is None or raw == "" else raw
