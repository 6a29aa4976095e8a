"""How to reach Convai: the settings that say where it is and which key opens it.

Their names, the one order in which the provider, the program and the operator commands read
them, and the sentences that tell a user where to set them, all defined here once.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from convai_provider.guards.keys import key_problem, remember
from convai_provider.guards.urls import url_problem

API_KEY_CONFIG = "convai:apiKey"
API_KEY_ENV = "CONVAI_API_KEY"
API_KEY_FLAG = "--api-key"
API_KEY_ARGUMENT = "api_key"
"""Where a key handed to `ConvaiClient` directly comes from: its argument."""
BASE_URL_CONFIG = "convai:baseUrl"
BASE_URL_ENV = "CONVAI_BASE_URL"
BASE_URL_FLAG = "--base-url"
REQUEST_TIMEOUT_CONFIG = "convai:requestTimeout"
MAX_RETRIES_CONFIG = "convai:maxRetries"
OPERATION_TIMEOUT_CONFIG = "convai:operationTimeout"
VERIFY_TIMEOUT_CONFIG = "convai:verifyTimeout"

DEFAULT_CONVAI_URL = "https://api.convai.com"

BASE_URL_SETTINGS = f"{BASE_URL_CONFIG}, {BASE_URL_FLAG} or {BASE_URL_ENV}"
"""Every place a Convai URL may come from, for messages about a URL that did not work."""

BASE_URL_ORDER = (
    f"the stack's {BASE_URL_CONFIG} (with --stack), else ${BASE_URL_ENV}, "
    f"else {DEFAULT_CONVAI_URL}: the provider's order"
)
"""Where the Convai URL comes from without --base-url, in words for help texts."""


def convai_api_key(
    config: Mapping[str, Any], env: Mapping[str, str], flag: str | None = None
) -> tuple[str, str]:
    """The Convai API key and the setting it came from: an explicit `flag` (the commands'
    --api-key), the stack's convai:apiKey (the commands cannot decrypt it), $CONVAI_API_KEY.
    None set: ''."""
    if flag is not None:
        return flag, API_KEY_FLAG
    if config.get(API_KEY_CONFIG):
        return str(config[API_KEY_CONFIG]), API_KEY_CONFIG
    if env.get(API_KEY_ENV):
        return env[API_KEY_ENV], API_KEY_ENV
    return "", API_KEY_CONFIG


def convai_base_url(
    config: Mapping[str, Any], env: Mapping[str, str], flag: str | None = None
) -> tuple[str, str]:
    """The Convai URL and the setting it came from: an explicit `flag` (the commands'
    --base-url), the stack's convai:baseUrl, $CONVAI_BASE_URL, the default."""
    if flag is not None:
        return flag, BASE_URL_FLAG
    if config.get(BASE_URL_CONFIG):
        return str(config[BASE_URL_CONFIG]), BASE_URL_CONFIG
    if env.get(BASE_URL_ENV):
        return env[BASE_URL_ENV], BASE_URL_ENV
    return DEFAULT_CONVAI_URL, BASE_URL_CONFIG


def convai_url_problem(url: str) -> str | None:
    """What keeps `url` from being Convai's base URL, or None. The API key travels to it, so
    plain http is for loopback addresses only (the emulator)."""
    return url_problem(url, example=DEFAULT_CONVAI_URL, plain_http_to_loopback_only=True)


def where_to_set_convai_key(flag: str | None = None, *, environment: bool = True) -> str:
    """How to give the Convai API key: the stack's secret config, or `flag` where a command or
    the client takes the key instead (a stack file holds it as ciphertext); the environment too
    where it is read (the client alone does not read it)."""
    given = f"pass {flag}" if flag else f"run `pulumi config set --secret {API_KEY_CONFIG} <key>`"
    return f"{given} or export {API_KEY_ENV}" if environment else given


class ConvaiKeyError(ValueError):
    """A Convai API key that cannot be used, in words naming where it came from and how to
    set it, never repeating it. `missing`: there is none at all."""

    def __init__(self, message: str, *, missing: bool) -> None:
        super().__init__(message)
        self.missing = missing


def convai_key(
    config: Mapping[str, Any],
    env: Mapping[str, str],
    flag: str | None = None,
    *,
    instead: str | None = None,
) -> tuple[str, str]:
    """The Convai API key in the one order (`convai_api_key`), checked by the one rule
    (`checked_convai_key`), and the setting it came from. `instead`: what takes the key in place
    of the stack's config where that cannot be read (the commands' --api-key)."""
    key, source = convai_api_key(config, env, flag)
    return checked_convai_key(key, source, instead=instead), source


def checked_convai_key(
    key: str, source: str, *, instead: str | None = None, environment: bool = True
) -> str:
    """`key`, once it is known fit to be the Convai API key; else a ConvaiKeyError naming
    `source`. The key goes in a header, as is: a key with surrounding whitespace or a character
    a header cannot carry is refused, not trimmed (the HTTP library would refuse it with the key
    in its message). A key that passes is kept out of every message from now on."""
    missing = missing_convai_key(key, instead, environment=environment)
    if missing is not None:
        raise ConvaiKeyError(missing, missing=True)
    problem = key_problem(key)
    if problem is not None:
        raise ConvaiKeyError(f"{source} {problem}: {_set_again(source)}.", missing=False)
    remember(key)
    return key


def _set_again(source: str) -> str:
    """How to give the key from `source` again, fixed."""
    if source == API_KEY_CONFIG:
        return f"set it again without it (`pulumi config set --secret {API_KEY_CONFIG} <key>`)"
    if source == API_KEY_ENV:
        return f"export {API_KEY_ENV} again without it"
    return "give the key without it"


def refused_convai_key(source: str) -> str:
    """What to do when Convai refuses the key (401, 403), naming the setting it came from:
    the stack's config, the environment (read only when the config holds none), a flag, or the
    client's argument."""
    if source == API_KEY_CONFIG:
        return (
            f"The CONVAI-API-KEY from the stack's {API_KEY_CONFIG} was refused; set a valid one "
            f"with `pulumi config set --secret {API_KEY_CONFIG} <key>`."
        )
    if source == API_KEY_ENV:
        return f"The CONVAI-API-KEY from ${API_KEY_ENV} was refused; export a valid one."
    if source == API_KEY_FLAG:
        return f"The CONVAI-API-KEY given with {API_KEY_FLAG} was refused; pass a valid one."
    if source.startswith(f"{API_KEY_ENV}_"):  # an account's key ($CONVAI_API_KEY_<ALIAS>)
        return f"The CONVAI-API-KEY from ${source} was refused; export a valid one."
    if source.startswith("convai:accounts."):  # an account's key in the stack's config
        return (
            f"The CONVAI-API-KEY from the stack's {source} was refused; set a valid one with "
            f"`pulumi config set --secret --path {source} <key>`."
        )
    return f"The CONVAI-API-KEY passed as {source} to ConvaiClient was refused; pass a valid one."


def missing_convai_key(
    key: str | None, flag: str | None = None, *, environment: bool = True
) -> str | None:
    """Why `key` is no Convai API key (none, or only blanks), saying where to set one; None when
    it is given. `flag`: what takes it instead of the stack's config, if anything."""
    if key is not None and key.strip():
        return None
    return f"No Convai API key: {where_to_set_convai_key(flag, environment=environment)}."
