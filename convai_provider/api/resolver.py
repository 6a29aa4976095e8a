"""The one path from settings to a Convai account's checked key and URL (`ConvaiAccess`), which
the provider (once, when it is configured), the program and the operator commands all take.

Each value comes from the first of: what the caller was given directly (a command's flag), the
stack's config, the environment, the default. The default account reads convai:apiKey, else
$CONVAI_API_KEY, and convai:baseUrl, else $CONVAI_BASE_URL, else Convai's URL. An account the
stack declares by alias reads convai:accounts.<alias>.apiKey, else $CONVAI_API_KEY_<ALIAS>, and
its baseUrl, else the default account's URL. A value the caller cannot read (a secret it cannot
decrypt) counts as not set. A refusal names the setting the value came from; how to set it is
the caller's `Hints`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from convai_provider.api.access import (
    API_KEY_CONFIG,
    API_KEY_ENV,
    BASE_URL_CONFIG,
    BASE_URL_ENV,
    DEFAULT_CONVAI_URL,
    LIBRARY_HINTS,
    ConvaiAccess,
    Hints,
    checked_access,
    configured,
)
from convai_provider.api.accounts import (
    ACCOUNTS_CONFIG,
    API_KEY_FIELD,
    BASE_URL_FIELD,
    AccountError,
    account_settings,
    declared_accounts,
    key_config,
    key_env,
)


@dataclass(frozen=True)
class Given:
    """A value the caller has from a place of its own (a command's flag), which outranks the
    stack and the environment, with the name the user gave it by."""

    value: str
    source: str


def resolve_access(
    config: Mapping[str, Any] | None,
    env: Mapping[str, str],
    account: str | None = None,
    *,
    key: Given | None = None,
    base_url: Given | None = None,
    hints: Hints = LIBRARY_HINTS,
) -> ConvaiAccess:
    """The checked access of `account` (an alias of convai:accounts; None: the default account).
    `config`: the stack's settings (None: no stack is known, and an alias needs no declaring).
    Raises AccountError (an alias the stack does not declare), ConvaiKeyError, ConvaiURLError."""
    stack = config or {}
    declared = {} if account is None or config is None else account_settings(stack, account)
    api_key = key or _key(stack, env, account, declared)
    url = base_url or _url(stack, env, account, declared)
    return checked_access(
        api_key.value,
        api_key.source,
        url.value,
        url.source,
        hints,
        missing=_missing(account, hints),
    )


def _key(
    config: Mapping[str, Any],
    env: Mapping[str, str],
    account: str | None,
    declared: Mapping[str, Any],
) -> Given:
    if account is None:
        setting, variable, value = API_KEY_CONFIG, API_KEY_ENV, configured(config, API_KEY_CONFIG)
    else:
        setting, variable = key_config(account), key_env(account)
        value = configured(declared, API_KEY_FIELD)
    if value is not None:
        return Given(value, setting)
    return Given(env.get(variable, ""), variable if env.get(variable) else setting)


def _url(
    config: Mapping[str, Any],
    env: Mapping[str, str],
    account: str | None,
    declared: Mapping[str, Any],
) -> Given:
    own = configured(declared, BASE_URL_FIELD)
    if account is not None and own is not None:
        return Given(own, f"{ACCOUNTS_CONFIG}.{account}.{BASE_URL_FIELD}")
    stack_url = configured(config, BASE_URL_CONFIG)
    if stack_url is not None:
        return Given(stack_url, BASE_URL_CONFIG)
    if env.get(BASE_URL_ENV):
        return Given(env[BASE_URL_ENV], BASE_URL_ENV)
    return Given(DEFAULT_CONVAI_URL, BASE_URL_CONFIG)


def _missing(account: str | None, hints: Hints) -> str:
    if account is None:
        return f"No Convai API key: {hints.give_key(API_KEY_CONFIG, API_KEY_ENV)}."
    return (
        f"No Convai API key for account '{account}': "
        f"{hints.give_key(key_config(account), key_env(account))}."
    )


def given_keys(config: Mapping[str, Any], env: Mapping[str, str]) -> dict[str | None, str]:
    """The key each account the stack declares is given (None: the default account), as given,
    unchecked. A convai:accounts that cannot be read declares none here (the account that needs
    it reports that)."""
    try:
        accounts = declared_accounts(config)
    except AccountError:
        accounts = {}
    given: dict[str | None, str] = {None: _key(config, env, None, {}).value}
    given.update({alias: _key(config, env, alias, s).value for alias, s in accounts.items()})
    return given


def sharing_one_key(keys: Mapping[str | None, str]) -> list[list[str | None]]:
    """The accounts (None: the default one) given one key, in groups of two or more: one key
    opens one Convai account, so their models would land in that one account. A blank key is no
    key (refused as missing, not as shared)."""
    by_key: dict[str, list[str | None]] = {}
    for account, key in keys.items():
        if key.strip():
            by_key.setdefault(key, []).append(account)
    return [accounts for accounts in by_key.values() if len(accounts) > 1]
