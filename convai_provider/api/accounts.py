"""Several Convai accounts in one stack: `convai:accounts`, aliases, and where each alias's key
and URL come from.

The account every stack had before stays the default (convai:apiKey, convai:baseUrl); the others
are declared by alias:

    convai:accounts:
      partner:
        apiKey: {secure: ...}   # pulumi config set --secret --path convai:accounts.partner.apiKey
        baseUrl: https://...    # optional: else the default account's URL

An alias's key comes from its `apiKey`, else from $CONVAI_API_KEY_<ALIAS> (what the operator
commands read, since they cannot decrypt stack secrets). An account is resolved into the same
settings shape as the default one, so one path (`api.resolver`) resolves and checks every
key and URL.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from convai_provider.api.access import API_KEY_CONFIG, API_KEY_ENV

ACCOUNTS_CONFIG = "convai:accounts"
DEFAULT_ACCOUNT = "the default account"
"""How messages name the account of convai:apiKey, which has no alias."""
ACCOUNT_KEY = "account"
"""The input of a private model and a character binding (and a stack file model's field)."""
RESERVED_ALIAS = "default"
ALIAS_PATTERN = re.compile(r"[a-z][a-z0-9_]{0,31}")
ALIAS_FORM = "a lowercase letter, then up to 31 lowercase letters, digits or '_' (such as partner)"
API_KEY_FIELD = "apiKey"
BASE_URL_FIELD = "baseUrl"
ACCOUNT_FIELDS = (API_KEY_FIELD, BASE_URL_FIELD)


class AccountError(ValueError):
    """An account that cannot be used: an alias of the wrong form, one the stack does not declare,
    or a `convai:accounts` that is not a map of aliases. The message names the alias, the
    accounts that exist and the fix; it never holds a key."""


def alias_problem(alias: object) -> str | None:
    """Why `alias` is no account alias, or None."""
    if not isinstance(alias, str) or not ALIAS_PATTERN.fullmatch(alias):
        return f"must be {ALIAS_FORM} (got {alias!r})"
    if alias == RESERVED_ALIAS:
        return f"may not be '{RESERVED_ALIAS}': leave account out for {DEFAULT_ACCOUNT}"
    return None


def account_name(alias: object) -> str:
    """How messages name an account: `account 'partner'`, or the default account (None)."""
    return f"account '{alias}'" if isinstance(alias, str) else DEFAULT_ACCOUNT


def key_env(alias: str) -> str:
    """The environment variable holding `alias`'s key where the stack's cannot be read."""
    return f"{API_KEY_ENV}_{alias.upper()}"


def key_config(alias: str) -> str:
    return f"{ACCOUNTS_CONFIG}.{alias}.{API_KEY_FIELD}"


def key_settings(alias: str) -> str:
    """Where `alias`'s key may be set, in words for a fix."""
    return f"{key_config(alias)} (or ${key_env(alias)})"


DEFAULT_KEY_SETTINGS = f"{API_KEY_CONFIG} (or ${API_KEY_ENV})"


def account_key_settings(account: object) -> str:
    """Where the key of `account` (an alias; None: the default account) is set, for a fix."""
    return key_settings(account) if isinstance(account, str) else DEFAULT_KEY_SETTINGS


def one_key_for_two(accounts: list[str | None]) -> str:
    """The refusal of one key given to several accounts, naming where each is set, never the
    key."""
    named = " and ".join(f"{account_name(a)} ({account_key_settings(a)})" for a in accounts)
    return (
        f"{named} are given the same Convai key: one key opens one Convai account, so the models "
        "of both would land in that one account. Give each account its own key (a rotated key "
        "goes to the alias it was regenerated for)"
    )


def declared_accounts(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """`convai:accounts` by alias: a map (as the program reads it) or its JSON text (as the engine
    hands it to the provider). Refused with an AccountError saying what is wrong, never quoting
    a value (it holds keys)."""
    raw = _unwrapped(config.get(ACCOUNTS_CONFIG))
    if raw is None or raw == "":
        return {}
    if isinstance(raw, str):
        try:
            raw = _unwrapped(json.loads(raw))
        except ValueError:
            raise AccountError(f"{ACCOUNTS_CONFIG} {_SHAPE}") from None
    if not isinstance(raw, Mapping):
        raise AccountError(f"{ACCOUNTS_CONFIG} {_SHAPE}")
    accounts = {}
    for alias, given in raw.items():
        problem = alias_problem(alias)
        if problem is not None:
            raise AccountError(f"{ACCOUNTS_CONFIG}: an alias {problem}; rename it")
        settings = _unwrapped(given) or {}
        if not isinstance(settings, Mapping):
            raise AccountError(f"{ACCOUNTS_CONFIG}.{alias} {_SHAPE}")
        unknown = sorted(set(settings) - set(ACCOUNT_FIELDS))
        if unknown:
            raise AccountError(
                f"{ACCOUNTS_CONFIG}.{alias}: {', '.join(map(str, unknown))} is no setting of an "
                f"account; an account has {API_KEY_FIELD} (a secret) and {BASE_URL_FIELD}"
            )
        accounts[alias] = {k: _unwrapped(v) for k, v in settings.items()}
    return accounts


_SHAPE = (
    f"must map each alias to its settings, such as {{partner: {{{API_KEY_FIELD}: <secret>, "
    f"{BASE_URL_FIELD}: https://api.convai.com}}}}; set the key with `pulumi config set --secret "
    f"--path {ACCOUNTS_CONFIG}.partner.{API_KEY_FIELD}`"
)


SECRET_SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
"""How the engine marks a secret value: `{SECRET_SIG_KEY: SECRET_SIG, "value": ...}` (Pulumi's
rpc constants, spelt here to keep the SDK out of this layer)."""


def _unwrapped(value: Any) -> Any:
    """A value the engine may still wrap as a secret. Only the engine's own marker unwraps: an
    alias or a setting named `value` is an alias or a setting."""
    if isinstance(value, Mapping) and value.get(SECRET_SIG_KEY) == SECRET_SIG and "value" in value:
        return value["value"]
    return value


def unknown_account(alias: str, accounts: Mapping[str, Any]) -> str:
    """The refusal of an alias the stack does not declare, naming the ones it does."""
    known = ", ".join(sorted(accounts)) or "none"
    return (
        f"account '{alias}' is not declared in this stack's {ACCOUNTS_CONFIG} (declared: {known}; "
        f"leave account out for {DEFAULT_ACCOUNT}, convai:apiKey); declare it with `pulumi "
        f"config set --secret --path {key_config(alias)}`, or name a declared account"
    )


def account_settings(config: Mapping[str, Any], alias: str) -> dict[str, Any]:
    """`alias`'s settings in `convai:accounts`; an AccountError naming the declared aliases
    when the stack does not declare it."""
    accounts = declared_accounts(config)
    if alias not in accounts:
        raise AccountError(unknown_account(alias, accounts))
    return accounts[alias]
