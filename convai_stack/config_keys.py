"""The names a stack's configuration uses: the project, the keys messages name, its exports, the
dev stack. The stack's settings are the fields of `stack_config.StackConfig` (`STACK_KEYS`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import StrictStr

from convai_provider.api.access import CONFIG_NAMESPACE
from convai_stack.schema_base import matching

PROJECT = "convai-models"
ENDPOINTS_KEY = "endpoints"
MODELS_KEY = "models"
PROTECT_KEY = "protectModels"
FALLBACK_KEY = "fallbackModel"
EXTRA_BUILTINS_KEY = "extraBuiltinModels"
REQUIRE_DIGEST_KEY = "requireImageDigest"
PROVIDER_NAMESPACE = CONFIG_NAMESPACE
MODELS_EXPORT = "models"
"""The stack output of every model's group, model name, display name and base_url."""
ENDPOINT_KEYS_EXPORT = "endpointKeys"
"""The stack output (secret) of every model's endpoint key, which the health command reads."""
DEV_STACK = "dev"
"""The laptop stack, which scripts/dev-up runs in a project of its own: its secrets are set
through dev-up (`scripts/dev-up config set --secret ...`), not in this checkout."""


def set_secret_command(stack: str, key: str) -> str:
    """What sets a secret of `stack`: dev-up holds the dev stack's, the CLI the others'. Without
    the value, so it prompts for it, which stays out of the shell's history."""
    if stack == DEV_STACK:
        return f"scripts/dev-up config set --secret {key}"
    return f"pulumi config set --stack {stack} --secret {key}"


SECRET_KEY_FIELDS = ("api_key_config", "hf_token_config")
"""Endpoint fields naming a secret config key, which is then a key of the stack."""

ConfigKey = Annotated[
    StrictStr,
    matching(
        r"(?:[A-Za-z0-9_-]+:)?[A-Za-z][A-Za-z0-9_.-]*", "a config key such as localVllmApiKey"
    ),
]
"""A stack config key an endpoint names for a secret: `name` or `namespace:name`."""
