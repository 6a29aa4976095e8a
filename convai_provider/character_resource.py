"""`ConvaiCharacterModel`: a character bound to the model it uses, with a safe fallback."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import Resource

from .character_provider import CharacterModelProvider
from .pulumi_pickling import provider_serialization
from .resource import merge_args

CHARACTER_TYPE_TOKEN = "pulumi-python:dynamic/convai:CharacterModel"
"""Stable: renaming the type would make Pulumi replace every binding."""


@dataclass(kw_only=True)
class ConvaiCharacterModelArgs:
    char_id: pulumi.Input[str]
    model_group_name: pulumi.Input[str]
    fallback_model_group_name: pulumi.Input[str] | None = None
    """Default gpt-4o-mini, a built-in Convai model."""


class ConvaiCharacterModel(Resource, module="convai", name="CharacterModel"):
    """While this exists, character `char_id` uses `model_group_name`; deleted, it falls back.

    Pass the model's output (`model.model_group_name`) so Pulumi knows the binding depends on the
    model: then a model replacement or removal first moves the character to the fallback.
    """

    char_id: pulumi.Output[str]
    model_group_name: pulumi.Output[str]
    fallback_model_group_name: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        args: ConvaiCharacterModelArgs | None = None,
        opts: pulumi.ResourceOptions | None = None,
        *,
        char_id: pulumi.Input[str] | None = None,
        model_group_name: pulumi.Input[str] | None = None,
        fallback_model_group_name: pulumi.Input[str] | None = None,
    ) -> None:
        keywords: dict[str, Any] = {
            "char_id": char_id,
            "model_group_name": model_group_name,
            "fallback_model_group_name": fallback_model_group_name,
        }
        props = merge_args(args, keywords)
        for output in keywords:
            props.setdefault(output, None)
        with provider_serialization():
            super().__init__(CharacterModelProvider(), resource_name, props, opts)
