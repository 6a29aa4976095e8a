"""Convai private LLM models as Pulumi resources, with a typed client and a local emulator.

The public names load on first use: the Convai client, the operator commands and the emulator
need none of Pulumi, whose import costs about 0.2 s, and importing a subpackage runs this file.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from convai_provider.api.client import ConvaiClient
    from convai_provider.api.errors import (
        AuthenticationError,
        BadRequestError,
        ConflictError,
        ConvaiAPIError,
        ConvaiConnectionError,
        ConvaiError,
        ConvaiProtocolError,
        ConvaiTimeoutError,
        InvalidRequestError,
        NotFoundError,
        RateLimitError,
        RedirectError,
        ServerError,
        UnexpectedReplyError,
    )
    from convai_provider.resources.character_model import (
        ConvaiCharacterModel,
        ConvaiCharacterModelArgs,
    )
    from convai_provider.resources.private_model import (
        ConvaiPrivateModel,
        ConvaiPrivateModelArgs,
    )
    from convai_provider.resources.type_tokens import CHARACTER_TYPE_TOKEN, TYPE_TOKEN

_HOMES = {
    "AuthenticationError": "convai_provider.api.errors",
    "BadRequestError": "convai_provider.api.errors",
    "CHARACTER_TYPE_TOKEN": "convai_provider.resources.type_tokens",
    "ConflictError": "convai_provider.api.errors",
    "ConvaiAPIError": "convai_provider.api.errors",
    "ConvaiCharacterModel": "convai_provider.resources.character_model",
    "ConvaiCharacterModelArgs": "convai_provider.resources.character_model",
    "ConvaiClient": "convai_provider.api.client",
    "ConvaiConnectionError": "convai_provider.api.errors",
    "ConvaiError": "convai_provider.api.errors",
    "ConvaiPrivateModel": "convai_provider.resources.private_model",
    "ConvaiPrivateModelArgs": "convai_provider.resources.private_model",
    "ConvaiProtocolError": "convai_provider.api.errors",
    "ConvaiTimeoutError": "convai_provider.api.errors",
    "InvalidRequestError": "convai_provider.api.errors",
    "NotFoundError": "convai_provider.api.errors",
    "RateLimitError": "convai_provider.api.errors",
    "RedirectError": "convai_provider.api.errors",
    "ServerError": "convai_provider.api.errors",
    "TYPE_TOKEN": "convai_provider.resources.type_tokens",
    "UnexpectedReplyError": "convai_provider.api.errors",
}

__all__ = [
    "CHARACTER_TYPE_TOKEN",
    "TYPE_TOKEN",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ConvaiAPIError",
    "ConvaiCharacterModel",
    "ConvaiCharacterModelArgs",
    "ConvaiClient",
    "ConvaiConnectionError",
    "ConvaiError",
    "ConvaiPrivateModel",
    "ConvaiPrivateModelArgs",
    "ConvaiProtocolError",
    "ConvaiTimeoutError",
    "InvalidRequestError",
    "NotFoundError",
    "RateLimitError",
    "RedirectError",
    "ServerError",
    "UnexpectedReplyError",
]


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
