"""Where the provider finds Convai: stack config first, then the environment, then defaults."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from convai_provider.api.account import DEFAULT_OPERATION_TIMEOUT
from convai_provider.api.client import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT
from convai_provider.api.errors import ConvaiError
from convai_provider.guards.durations import retries, seconds
from convai_provider.guards.keys import (
    API_KEY_CONFIG,
    API_KEY_ENV,
    key_problem,
    missing_convai_key,
    remember,
)
from convai_provider.guards.urls import DEFAULT_CONVAI_URL, convai_url_problem, refusal
from convai_provider.preflight.checks import DEFAULT_WAIT

BASE_URL_CONFIG = "convai:baseUrl"
REQUEST_TIMEOUT_CONFIG = "convai:requestTimeout"
MAX_RETRIES_CONFIG = "convai:maxRetries"
OPERATION_TIMEOUT_CONFIG = "convai:operationTimeout"
VERIFY_TIMEOUT_CONFIG = "convai:verifyTimeout"
BASE_URL_ENV = "CONVAI_BASE_URL"

CONFIG_KEYS = (
    API_KEY_CONFIG,
    BASE_URL_CONFIG,
    REQUEST_TIMEOUT_CONFIG,
    MAX_RETRIES_CONFIG,
    OPERATION_TIMEOUT_CONFIG,
    VERIFY_TIMEOUT_CONFIG,
)


class MissingApiKeyError(ConvaiError):
    """Neither the stack's convai:apiKey nor $CONVAI_API_KEY holds a key."""


class InvalidSettingError(ConvaiError):
    pass


@dataclass(frozen=True)
class ConvaiSettings:
    """Resolved at call time in the provider process; hashable so clients can be shared."""

    api_key: str = field(repr=False)
    base_url: str = DEFAULT_CONVAI_URL
    request_timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    operation_timeout: float = DEFAULT_OPERATION_TIMEOUT
    verify_timeout: float = DEFAULT_WAIT

    @classmethod
    def resolve(
        cls, config: Mapping[str, Any], environ: Mapping[str, str] | None = None
    ) -> ConvaiSettings:
        env = os.environ if environ is None else environ
        api_key, source = convai_api_key(config, env)
        missing = missing_convai_key(api_key)
        if missing is not None:
            raise MissingApiKeyError(missing)
        api_key = api_key.strip()
        problem = key_problem(api_key)
        if problem is not None:
            raise InvalidSettingError(
                f"{source} {problem}: set it again without it "
                f"(`pulumi config set --secret {API_KEY_CONFIG} <key>`)."
            )
        remember(api_key)
        base_url, source = convai_base_url(config, env)
        problem = convai_url_problem(base_url)
        if problem is not None:
            raise InvalidSettingError(f"{refusal(source, base_url, problem)}.")
        try:
            return cls(
                api_key=api_key,
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


BASE_URL_ORDER = (
    f"the stack's {BASE_URL_CONFIG} (with --stack), else ${BASE_URL_ENV}, "
    f"else {DEFAULT_CONVAI_URL}: the provider's order"
)
"""Where the Convai URL comes from without --base-url, in words for help texts."""


def convai_api_key(
    config: Mapping[str, Any], env: Mapping[str, str], flag: str | None = None
) -> tuple[str, str]:
    """The Convai API key and the setting it came from, in the one order the provider, the
    program and the operator commands share: an explicit `flag` (the commands' --api-key), the
    stack's convai:apiKey (the commands cannot decrypt it), $CONVAI_API_KEY. None set: ''."""
    if flag is not None:
        return flag, "--api-key"
    if config.get(API_KEY_CONFIG):
        return str(config[API_KEY_CONFIG]), API_KEY_CONFIG
    if env.get(API_KEY_ENV):
        return env[API_KEY_ENV], API_KEY_ENV
    return "", API_KEY_CONFIG


def convai_base_url(
    config: Mapping[str, Any], env: Mapping[str, str], flag: str | None = None
) -> tuple[str, str]:
    """The Convai URL and the setting it came from, in the one order the provider and the
    operator commands share: an explicit `flag` (the commands' --base-url), the stack's
    convai:baseUrl, $CONVAI_BASE_URL, the default."""
    if flag:
        return flag, "--base-url"
    if config.get(BASE_URL_CONFIG):
        return str(config[BASE_URL_CONFIG]), BASE_URL_CONFIG
    if env.get(BASE_URL_ENV):
        return env[BASE_URL_ENV], BASE_URL_ENV
    return DEFAULT_CONVAI_URL, BASE_URL_CONFIG


def _given(config: Mapping[str, Any], key: str, default: float) -> object:
    raw = config.get(key)
    return default if raw is None or raw == "" else raw
