"""Convai private LLM models as Pulumi resources, with a typed client and a local emulator."""

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
    CHARACTER_TYPE_TOKEN,
    ConvaiCharacterModel,
    ConvaiCharacterModelArgs,
)
from convai_provider.resources.private_model import (
    TYPE_TOKEN,
    ConvaiPrivateModel,
    ConvaiPrivateModelArgs,
)

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
