"""How to reach Convai: the settings that say where it is and which key opens it, and the one
checked value they resolve to (`ConvaiAccess`).

The names of the settings and the order in which they are read live here; the resolving itself
is `api.resolver`. What this library says about a setting names it and says what is wrong; how to
set it (a Pulumi command, a command's flag) is the caller's to say, given as `Hints`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from convai_provider.guards.keys import UnfitKeyError, fit_key
from convai_provider.guards.urls import refusal, url_problem

API_KEY_CONFIG = "convai:apiKey"
API_KEY_ENV = "CONVAI_API_KEY"
API_KEY_ARGUMENT = "api_key"
"""Where a key handed to `ConvaiClient` directly comes from: its argument."""
BASE_URL_CONFIG = "convai:baseUrl"
BASE_URL_ENV = "CONVAI_BASE_URL"
BASE_URL_ARGUMENT = "base_url"
"""Where a URL handed to `ConvaiClient` directly comes from: its argument."""
TIMEOUT_ARGUMENT = "timeout"
"""What sets the time one request to Convai may take, for a caller of `ConvaiClient`."""
CONFIG_NAMESPACE = "convai"
"""The Pulumi config namespace of the provider's settings (`convai:apiKey`, ...)."""

DEFAULT_CONVAI_URL = "https://api.convai.com"


def convai_url_problem(url: str) -> str | None:
    """What keeps `url` from being Convai's base URL, or None. The API key travels to it, so
    plain http is for loopback addresses only (the emulator)."""
    return url_problem(url, example=DEFAULT_CONVAI_URL, plain_http_to_loopback_only=True)


@dataclass(frozen=True)
class ConvaiAccess:
    """One Convai account's key and URL, each with the setting it came from, checked: the key
    fits a header (and is kept out of every message), the URL is one the key may travel to.
    Made only by `checked_access` (and `api.resolver.resolve_access`), so whoever holds one
    sends it as it is. Hashable, so clients can be shared."""

    api_key: str = field(repr=False)
    key_source: str
    base_url: str
    url_source: str
    hints: Hints = field(repr=False, compare=False, hash=False)


class ConvaiKeyError(ValueError):
    """A Convai API key that cannot be used, in words naming where it came from (and, when the
    caller gave `Hints`, how to set it), never repeating it. `missing`: there is none at all."""

    def __init__(self, message: str, *, missing: bool) -> None:
        super().__init__(message)
        self.missing = missing


class ConvaiURLError(ValueError):
    """A Convai URL the key may not travel to, naming the setting it came from."""


def _is_config(source: str) -> bool:
    """Whether a key came from the stack's config (convai:apiKey, an account's apiKey)."""
    return source.startswith(f"{CONFIG_NAMESPACE}:")


def _is_environment(source: str) -> bool:
    """Whether a key came from the environment ($CONVAI_API_KEY, $CONVAI_API_KEY_<ALIAS>)."""
    return source.startswith(API_KEY_ENV)


@dataclass(frozen=True)
class Hints:
    """How a user sets the Convai key, in the caller's words. The library's own (`Hints()`) name
    the setting and nothing more; an application gives the flag that takes the key in its place
    (`key_flag`) or the command that sets a config key (`set_config`: the setting to the words,
    such as a Pulumi command in backquotes). `request_timeout`: what raises the time one request
    may take (None: the caller has nothing that does)."""

    key_flag: str | None = None
    set_config: Callable[[str], str] | None = None
    request_timeout: str | None = TIMEOUT_ARGUMENT

    def give_key(self, config_setting: str, env: str) -> str:
        """How to give a key that is missing: it may be set at `config_setting` or `env`."""
        if self.key_flag is not None:
            given = f"pass {self.key_flag}"
        elif self.set_config is not None:
            given = f"run {self.set_config(config_setting)}"
        else:
            given = f"set {config_setting}"
        return f"{given} or export {env}"

    def give_again(self, source: str) -> str:
        """How to give the key from `source` again, without what made it unfit."""
        if _is_config(source) and self.set_config is not None:
            return f"set it again without it ({self.set_config(source)})"
        if _is_environment(source):
            return f"export {source} again without it"
        return "give the key without it"

    def refused(self, source: str) -> str:
        """What to do when Convai refuses the key (401, 403), naming the setting it came from:
        a config key, an environment variable, the client's argument or the caller's own flag."""
        if _is_config(source):
            fix = f" with {self.set_config(source)}" if self.set_config is not None else ""
            return (
                f"The CONVAI-API-KEY from the stack's {source} was refused; set a valid one{fix}."
            )
        if _is_environment(source):
            return f"The CONVAI-API-KEY from ${source} was refused; export a valid one."
        if source == API_KEY_ARGUMENT:
            return (
                f"The CONVAI-API-KEY passed as {source} to ConvaiClient was refused; "
                "pass a valid one."
            )
        return f"The CONVAI-API-KEY given with {source} was refused; pass a valid one."


LIBRARY_HINTS = Hints()


def checked_key(key: str, source: str, hints: Hints = LIBRARY_HINTS) -> str:
    """`key`, from `source`, once it is known fit to be sent; else a ConvaiKeyError. The key goes
    in a header, as is: a key with surrounding whitespace or a character a header cannot carry
    is refused, not trimmed (the HTTP library would refuse it with the key in its message). A
    key that passes is kept out of every message from now on."""
    try:
        return fit_key(key, source, f"{hints.give_again(source)}.")
    except UnfitKeyError as exc:
        raise ConvaiKeyError(str(exc), missing=False) from None


def checked_access(
    api_key: str,
    key_source: str,
    base_url: str,
    url_source: str,
    hints: Hints = LIBRARY_HINTS,
    *,
    missing: str,
) -> ConvaiAccess:
    """The account's access once its key (present, fit for a header) and URL are checked; else a
    ConvaiKeyError or ConvaiURLError naming the setting at fault. `missing`: the sentence for a
    key that is not there (only blanks included), which says where the caller reads one."""
    if not api_key.strip():
        raise ConvaiKeyError(missing, missing=True)
    checked_key(api_key, key_source, hints)
    problem = convai_url_problem(base_url)
    if problem is not None:
        raise ConvaiURLError(f"{refusal(url_source, base_url, problem)}.")
    return ConvaiAccess(api_key, key_source, base_url.rstrip("/"), url_source, hints)


def configured(config: Mapping[str, Any], setting: str) -> str | None:
    """A setting's value as the caller can read it: a string, set and not blank. Anything else
    (unset, a secret the caller cannot decrypt) is not given."""
    value = config.get(setting)
    return value if isinstance(value, str) and value else None
