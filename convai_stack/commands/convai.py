"""How the operator commands reach Convai: an account's key and URL by the library's one path
(`api.resolver`), with their flags first and their words for setting a key.

The commands cannot decrypt a stack's secrets: a key in the stack's config counts only in plain
text (the dev stack's `dev-account`, the emulator's), otherwise it comes from --api-key or the
environment ($CONVAI_API_KEY, $CONVAI_API_KEY_<ALIAS>).
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from convai_provider.api.access import (
    API_KEY_CONFIG,
    API_KEY_ENV,
    BASE_URL_CONFIG,
    BASE_URL_ENV,
    DEFAULT_CONVAI_URL,
    ConvaiAccess,
    ConvaiKeyError,
    ConvaiURLError,
    Hints,
)
from convai_provider.api.accounts import AccountError, alias_problem, key_env
from convai_provider.api.client import DEFAULT_TIMEOUT, ConvaiClient
from convai_provider.api.errors import ConvaiError
from convai_provider.api.resolver import Given, resolve_access
from convai_provider.api.wire import PrivateModel
from convai_stack.commands.parser import OperatorError

API_KEY_FLAG = "--api-key"
BASE_URL_FLAG = "--base-url"
ACCOUNT_FLAG = "--account"
CLI_HINTS = Hints(key_flag=API_KEY_FLAG, request_timeout=None)
"""How the commands tell a user to give a key: their flag (they cannot set a stack's secret);
their requests' time is fixed (`REQUEST_TIMEOUT`)."""

BASE_URL_ORDER = (
    f"the stack's {BASE_URL_CONFIG} (with --stack), else ${BASE_URL_ENV}, "
    f"else {DEFAULT_CONVAI_URL}: the provider's order"
)
"""Where the Convai URL comes from without --base-url, in words for help texts."""
KEY_ORDER = (
    f"default: ${API_KEY_ENV}; the stack's {API_KEY_CONFIG} is ciphertext these commands "
    "cannot read"
)
"""Where the Convai key comes from without --api-key, in words for help texts."""

REQUEST_TIMEOUT = DEFAULT_TIMEOUT
"""The client's default, fixed for the commands (they have no setting for it)."""
MAX_RETRIES = 3


def alias_argument(text: str) -> str:
    """argparse's `type` for --account: an alias of the one form (argparse names the flag)."""
    problem = alias_problem(text)
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return text


def command_access(
    args: argparse.Namespace, stack: dict[str, Any] | None, account: str | None
) -> ConvaiAccess:
    """`account`'s checked key and URL (None: the default account): --api-key and --base-url,
    else the stack file's settings (`stack`; None: no stack), else the environment."""
    if args.api_key is not None and not args.api_key.strip():
        env = API_KEY_ENV if account is None else key_env(account)
        raise OperatorError(f"{API_KEY_FLAG} is empty: give the key, or leave it out to use ${env}")
    try:
        return resolve_access(
            stack,
            os.environ,
            account,
            key=None if args.api_key is None else Given(args.api_key, API_KEY_FLAG),
            base_url=None if args.base_url is None else Given(args.base_url, BASE_URL_FLAG),
            hints=CLI_HINTS,
        )
    except (AccountError, ConvaiKeyError, ConvaiURLError) as exc:
        raise OperatorError(str(exc)) from None


def command_client(
    args: argparse.Namespace, stack: dict[str, Any] | None, account: str | None = None
) -> ConvaiClient:
    """A client of `account` (default: --account; None: the default account)."""
    access = command_access(args, stack, account or args.account)
    return ConvaiClient(access=access, timeout=REQUEST_TIMEOUT, max_retries=MAX_RETRIES)


def live_models(client: ConvaiClient) -> list[PrivateModel]:
    """Every model of the client's account, or the command stopped with Convai's error."""
    try:
        return client.list_models().models
    except ConvaiError as exc:
        raise OperatorError(str(exc)) from None
    finally:
        client.close()
