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

__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "ConvaiAPIError",
    "ConvaiClient",
    "ConvaiConnectionError",
    "ConvaiError",
    "ConvaiTimeoutError",
    "InvalidRequestError",
    "NotFoundError",
    "RateLimitError",
    "ServerError",
]
