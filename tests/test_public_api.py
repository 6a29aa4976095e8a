"""The package's public surface is what we mean to export, and every name in it resolves."""

from __future__ import annotations

import base64
import importlib
from typing import Any

import pulumi
import pytest
from pulumi import _types
from pulumi.dynamic.dynamic import serialize_provider

import convai_provider
from convai_provider.api import wire
from convai_provider.resources import character_model, private_model_inputs
from convai_provider.resources.character_model import CharacterModelProvider
from convai_provider.resources.private_model import PrivateModelProvider
from convai_provider.resources.pulumi_pickling import provider_serialization
from testkit.engine import run_program_fully

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


def test_every_output_is_an_attribute_the_sdk_types_without_evaluating_annotations() -> None:
    """The outputs are declared for type checkers only: Pulumi's SDK evaluates a resource class's
    annotations again for every resource it resolves (0.3 ms a model, docs/big-stacks.md)."""
    outputs = {
        "model": (*private_model_inputs.INPUT_FIELDS, *private_model_inputs.COMPUTED_FIELDS),
        "binding": (*character_model.INPUT_FIELDS, *character_model.COMPUTED_FIELDS),
    }

    def declare() -> None:
        model = convai_provider.ConvaiPrivateModel(
            "m", model_group_name="g", model_name="n", api_key="sk-endpoint-key"
        )
        binding = convai_provider.ConvaiCharacterModel("b", char_id="c", model=model)
        for name, resource in (("model", model), ("binding", binding)):
            for output in outputs[name]:
                pulumi.export(f"{name}.{output}", getattr(resource, output))

    exports: dict[str, Any] = run_program_fully(declare).exports
    assert exports["model.model_group_name"] == "g"
    assert exports["binding.model_group_name"] == "g"
    assert set(exports) == {f"{name}.{o}" for name, names in outputs.items() for o in names}
    assert _types.resource_types(convai_provider.ConvaiPrivateModel) == {}
    assert _types.resource_types(convai_provider.ConvaiCharacterModel) == {}


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


def test_every_name_of_the_0_1_0_wire_module_still_imports_from_it() -> None:
    old_wire = importlib.import_module("convai_provider.wire")
    assert {name for name in WIRE_0_1_0 if not hasattr(old_wire, name)} == set()
    assert old_wire.RegisterRequest is wire.RegisterRequest
    assert old_wire.DEFAULT_BASE_URL == wire.OPENAI_BASE_URL == "https://api.openai.com/v1"


STATE_PATHS = {
    "convai_provider.provider": "PrivateModelProvider",  # written by 0.1.0
    "convai_provider.character_provider": "CharacterModelProvider",  # written by 0.1.0
    "convai_provider.resources.private_model": "PrivateModelProvider",  # written since 0.2.0
    "convai_provider.resources.character_model": "CharacterModelProvider",  # since 0.2.0
}
"""Every path state written by a released version pickles a provider by. Moving a provider class
again means adding its new path here and keeping an alias at the old one."""


@pytest.mark.parametrize("provider", [PrivateModelProvider, CharacterModelProvider])
def test_state_written_now_names_a_path_every_later_version_keeps(provider: type) -> None:
    with provider_serialization():
        pickled = base64.b64decode(serialize_provider(provider()))
    written = f"{provider.__module__}".encode()
    assert written in pickled and provider.__name__.encode() in pickled
    assert STATE_PATHS.get(provider.__module__) == provider.__name__


@pytest.mark.parametrize(("path", "name"), sorted(STATE_PATHS.items()))
def test_every_path_state_names_still_gives_its_provider(path: str, name: str) -> None:
    current: dict[str, type] = {
        "PrivateModelProvider": PrivateModelProvider,
        "CharacterModelProvider": CharacterModelProvider,
    }
    assert getattr(importlib.import_module(path), name) is current[name]
