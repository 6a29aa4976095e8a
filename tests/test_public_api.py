"""The package's public surface is what we mean to export, and every name in it resolves."""

from __future__ import annotations

import convai_provider

EXPECTED = {
    "ConvaiPrivateModel",
    "ConvaiPrivateModelArgs",
    "TYPE_TOKEN",
    "ConvaiCharacterModel",
    "ConvaiCharacterModelArgs",
    "CHARACTER_TYPE_TOKEN",
    "ConvaiClient",
    "ConvaiError",
    "ConvaiAPIError",
    "BadRequestError",
    "AuthenticationError",
    "NotFoundError",
    "ConflictError",
    "RateLimitError",
    "ServerError",
    "ConvaiConnectionError",
    "ConvaiTimeoutError",
    "ConvaiProtocolError",
    "UnexpectedReplyError",
    "RedirectError",
    "InvalidRequestError",
}


def test_exports_are_exactly_the_public_surface() -> None:
    assert set(convai_provider.__all__) == EXPECTED
    for name in EXPECTED:
        assert getattr(convai_provider, name) is not None


def test_type_tokens_never_change() -> None:
    # Renaming a type token makes Pulumi replace every resource declared with it.
    assert convai_provider.TYPE_TOKEN == "pulumi-python:dynamic/convai:PrivateModel"
    assert convai_provider.CHARACTER_TYPE_TOKEN == "pulumi-python:dynamic/convai:CharacterModel"
