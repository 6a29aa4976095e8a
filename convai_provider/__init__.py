"""Convai private LLM models as Pulumi resources, with a typed client and a local emulator."""

from .client import ConvaiClient
from .errors import (
    AuthenticationError,
    BadRequestError,
    ConflictError,
    ConvaiAPIError,
    ConvaiConnectionError,
    ConvaiError,
    ConvaiTimeoutError,
    InvalidRequestError,
    NotFoundError,
    RateLimitError,
    ServerError,
)
from .resource import TYPE_TOKEN, ConvaiPrivateModel, ConvaiPrivateModelArgs

__all__ = [
    "TYPE_TOKEN",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ConvaiAPIError",
    "ConvaiClient",
    "ConvaiConnectionError",
    "ConvaiError",
    "ConvaiPrivateModel",
    "ConvaiPrivateModelArgs",
    "ConvaiTimeoutError",
    "InvalidRequestError",
    "NotFoundError",
    "RateLimitError",
    "ServerError",
]
