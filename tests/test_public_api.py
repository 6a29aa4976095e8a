"""The package's public surface is what we mean to export, and every name in it resolves."""

from __future__ import annotations

import importlib

import convai_provider
from convai_provider.api import wire
from convai_provider.resources import character_model, private_model

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
    assert {name for name in EXPECTED if not hasattr(convai_provider, name)} == set()


def test_type_tokens_never_change() -> None:
    # Renaming a type token makes Pulumi replace every resource declared with it.
    assert convai_provider.TYPE_TOKEN == "pulumi-python:dynamic/convai:PrivateModel"
    assert convai_provider.CHARACTER_TYPE_TOKEN == "pulumi-python:dynamic/convai:CharacterModel"


WIRE_0_1_0 = {
    "DEFAULT_BASE_URL",
    "PRIVATE_CATEGORY",
    "REGISTER_PATH",
    "UPDATE_PATH",
    "DEREGISTER_PATH",
    "LIST_PATH",
    "API_KEY_HEADER",
    "Identifier",
    "RegisterRequest",
    "UPDATABLE_FIELDS",
    "UpdateRequest",
    "DeregisterRequest",
    "RegisterResponse",
    "UpdateResponse",
    "DeregisterResponse",
    "PrivateModel",
    "ListResponse",
    "field_problems",
    "describe_validation_error",
    "CHARACTER_CREATE_PATH",
    "CHARACTER_GET_PATH",
    "CHARACTER_UPDATE_PATH",
    "CHARACTER_SUCCESS",
    "CharacterCreateRequest",
    "CharacterCreateResponse",
    "CharacterGetRequest",
    "CharacterUpdateRequest",
    "CharacterUpdateResponse",
    "Character",
}
"""Every public name `convai_provider/wire.py` defined in 0.1.0."""


def test_the_providers_import_from_their_paths_before_the_recut() -> None:
    """State pickles the providers by these paths (see test_old_state)."""
    old_model = importlib.import_module("convai_provider.provider")
    old_binding = importlib.import_module("convai_provider.character_provider")
    assert old_model.PrivateModelProvider is private_model.PrivateModelProvider
    assert old_binding.CharacterModelProvider is character_model.CharacterModelProvider


def test_every_name_of_the_0_1_0_wire_module_still_imports_from_it() -> None:
    old_wire = importlib.import_module("convai_provider.wire")
    assert {name for name in WIRE_0_1_0 if not hasattr(old_wire, name)} == set()
    assert old_wire.RegisterRequest is wire.RegisterRequest
    assert old_wire.DEFAULT_BASE_URL == wire.OPENAI_BASE_URL == "https://api.openai.com/v1"
