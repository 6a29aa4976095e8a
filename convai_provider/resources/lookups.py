"""Lookups from a Pulumi program: what an account holds, read without owning it.

Dynamic providers have no invoke, and `Resource.get` / `pulumi import` do not work for them
(pulumi/pulumi#16175), so these are plain functions of the program. Each returns an Output that
resolves in `preview` as in `up` (the program reads Convai while it runs), through the provider's
own client: its strict reply reading, retry policy and one deadline per lookup.

The Convai key comes from the stack's `convai:apiKey` (then $CONVAI_API_KEY), as the provider's
does, and is read as a secret; `account=` reads an account of the stack's `convai:accounts`
instead, with that account's key and URL, exactly as a resource of that account would (so one
account's key never goes to another's URL). No result carries a key (Convai never returns it,
and the results are made only of what it returns), so results are plain, not secret. A lookup
that cannot be answered stops the program with one line: a model that is not there, a refused
key, a reply that is not understood, an account the stack does not declare.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pulumi

from convai_provider.api.access import API_KEY_CONFIG, CONFIG_NAMESPACE
from convai_provider.api.account import Operation
from convai_provider.api.accounts import ACCOUNTS_CONFIG, account_name, alias_problem
from convai_provider.api.errors import ConvaiError
from convai_provider.api.resolver import Given
from convai_provider.api.wire import PrivateModel
from convai_provider.guards.text import server_text
from convai_provider.resources.runtime import runtime_for
from convai_provider.resources.settings import CONFIG_KEYS, ConvaiSettings

T = TypeVar("T")

API_KEY_ARGUMENT_NAME = "the lookup's api_key"
BASE_URL_ARGUMENT_NAME = "the lookup's base_url"
"""How messages name a lookup's own arguments, which outrank the stack's settings."""
SHOWN_NAMES = 10
"""Model names a "no such model" message lists at most."""


class ModelNotFoundError(ConvaiError):
    """The account holds no private model of the name looked up."""


def private_model(
    model_group_name: str,
    *,
    account: str | None = None,
    api_key: pulumi.Input[str] | None = None,
    base_url: str | None = None,
) -> pulumi.Output[dict[str, Any]]:
    """The private model `model_group_name` as Convai lists it: model_group_name, model_name,
    display_name, base_url, is_uncensored, category, created_at. The program stops with one line
    when the account holds no such model.

    `account`: an alias of the stack's convai:accounts (default: the account of convai:apiKey).
    `api_key` and `base_url` read an account the stack does not declare instead; they default to
    the default account's (convai:apiKey, else $CONVAI_API_KEY; convai:baseUrl, else
    $CONVAI_BASE_URL, else Convai's URL)."""

    def find(operation: Operation, url: str) -> dict[str, Any]:
        listing = operation.models_from_now()
        found = next((m for m in listing if m.model_group_name == model_group_name), None)
        if found is None:
            raise ModelNotFoundError(_not_found(model_group_name, url, listing))
        return found.documented()

    return _lookup(find, Account(account, api_key, base_url))


def private_models(
    *,
    account: str | None = None,
    api_key: pulumi.Input[str] | None = None,
    base_url: str | None = None,
) -> pulumi.Output[list[dict[str, Any]]]:
    """Every private model of the account, in Convai's order, each as `private_model` gives it."""
    return _lookup(
        lambda operation, _url: [m.documented() for m in operation.models_from_now()],
        Account(account, api_key, base_url),
    )


def character_model(
    char_id: str,
    *,
    account: str | None = None,
    api_key: pulumi.Input[str] | None = None,
    base_url: str | None = None,
) -> pulumi.Output[str | None]:
    """The model character `char_id` uses now: a private model's group name or a built-in code.

    Convai does not document that `/character/get` names the model: when its reply does not, the
    answer is None (unknown) and a warning says so; it is never guessed."""

    def read(operation: Operation, url: str) -> str | None:
        character = operation.character(char_id)
        if character.model_group_name is None:
            pulumi.log.warn(
                f"convai: the model of character {char_id} is unknown: Convai's /character/get "
                f"reply at {url} does not name it (the API does not document that it does)."
            )
        return character.model_group_name

    return _lookup(read, Account(account, api_key, base_url))


# how every lookup runs -----------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """Which account a lookup reads: an alias of convai:accounts, or a key and URL of one the
    stack does not declare (each left out: the default account's)."""

    alias: str | None
    api_key: pulumi.Input[str] | None
    base_url: str | None

    def __post_init__(self) -> None:
        if self.alias is None:
            return
        problem = alias_problem(self.alias)
        if problem is not None:
            raise pulumi.RunError(f"convai: a lookup's account {problem}")
        if self.api_key is not None or self.base_url is not None:
            raise pulumi.RunError(
                f"convai: a lookup of account '{self.alias}' takes that account's key and URL "
                f"from {ACCOUNTS_CONFIG}.{self.alias}: give account alone, or api_key and "
                "base_url alone for an account the stack does not declare"
            )


def _lookup(ask: Callable[[Operation, str], T], account: Account) -> pulumi.Output[T]:
    """Run `ask` on the account once the key is known, with its errors as one line each; the
    answer is unsecret, since it carries no key (the key only made it secret by taint)."""
    key = account.api_key
    given = key is not None
    if key is None:
        key = pulumi.Config(CONFIG_NAMESPACE).get_secret("apiKey")
    config = _stack_settings()
    url = None if account.base_url is None else Given(account.base_url, BASE_URL_ARGUMENT_NAME)

    def answer(resolved_key: str | None) -> T:
        if given and resolved_key is not None:
            settings = _settings(
                config, account.alias, key=Given(resolved_key, API_KEY_ARGUMENT_NAME), base_url=url
            )
        else:
            stack = {**config, API_KEY_CONFIG: resolved_key} if resolved_key else config
            settings = _settings(stack, account.alias, key=None, base_url=url)
        try:
            return ask(
                runtime_for(settings).account.operation(), _where(settings.base_url, account.alias)
            )
        except ConvaiError as exc:
            raise pulumi.RunError(_one_line(str(exc))) from None

    secret_key: pulumi.Output[str | None] = pulumi.Output.secret(key)
    return pulumi.Output.unsecret(secret_key.apply(answer))


def _where(url: str, alias: str | None) -> str:
    """The account as messages name it: its URL, and its alias when it has one."""
    return url if alias is None else f"{url} ({account_name(alias)})"


def _stack_settings() -> dict[str, Any]:
    """The stack's convai:* settings other than the key, as the provider reads them."""
    config = pulumi.Config(CONFIG_NAMESPACE)
    values: dict[str, Any] = {}
    for name in CONFIG_KEYS:
        if name == API_KEY_CONFIG:
            continue
        value = config.get(name.removeprefix(f"{CONFIG_NAMESPACE}:"))
        if value is not None:
            values[name] = value
    return values


def _settings(
    config: dict[str, Any], account: str | None, *, key: Given | None, base_url: Given | None
) -> ConvaiSettings:
    """The settings in the provider's order, the lookup's own arguments first, or the program
    stopped with one line naming the setting (or the argument) to fix."""
    try:
        return ConvaiSettings.resolve(
            config, os.environ, account=account, key=key, base_url=base_url
        )
    except ConvaiError as exc:
        raise pulumi.RunError(_one_line(str(exc))) from None


def _not_found(model_group_name: str, url: str, listing: list[PrivateModel]) -> str:
    names = ", ".join(m.model_group_name for m in listing[:SHOWN_NAMES]) or "none"
    more = f" and {len(listing) - SHOWN_NAMES} more" if len(listing) > SHOWN_NAMES else ""
    return (
        f"convai: no private model {server_text(model_group_name)!r} in the account at {url} "
        f"(it holds {len(listing)}: {server_text(names)}{more}); register it, or look up the "
        "name it was registered under."
    )


def _one_line(message: str) -> str:
    return " ".join(message.split())
