"""The package's public surface is what we mean to export, and every name in it resolves."""

from __future__ import annotations

import importlib

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


def test_module_paths_from_before_the_recut_still_import() -> None:
    """State pickles the providers by these paths; code written against the README of 0.1.0
    imports the wire models from `convai_provider.wire`."""
    from convai_provider.api import wire
    from convai_provider.resources import character_model, private_model

    old_model = importlib.import_module("convai_provider.provider")
    old_binding = importlib.import_module("convai_provider.character_provider")
    assert old_model.PrivateModelProvider is private_model.PrivateModelProvider
    assert old_binding.CharacterModelProvider is character_model.CharacterModelProvider
    old_wire = importlib.import_module("convai_provider.wire")
    defined_in_wire = {
        name
        for name, value in vars(wire).items()
        if not name.startswith("_")
        and (isinstance(value, str | tuple | dict) or value.__module__ == wire.__name__)
    }
    assert defined_in_wire <= set(old_wire.__all__)
    assert all(getattr(old_wire, name) is getattr(wire, name) for name in old_wire.__all__)
