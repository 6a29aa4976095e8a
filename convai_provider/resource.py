"""`ConvaiPrivateModel`: a Convai private LLM model as a Pulumi resource."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import Resource

from .provider import PrivateModelProvider
from .pulumi_pickling import provider_serialization

TYPE_TOKEN = "pulumi-python:dynamic/convai:PrivateModel"
"""Stable: renaming the type would make Pulumi replace every model declared with it."""


@dataclass(kw_only=True)
class ConvaiPrivateModelArgs:
    """Inputs of a ConvaiPrivateModel (see PrivateModelInputs for each field's meaning)."""

    model_group_name: pulumi.Input[str]
    model_name: pulumi.Input[str]
    api_key: pulumi.Input[str]
    is_uncensored: pulumi.Input[bool] | None = None
    """Default false."""
    display_name: pulumi.Input[str] | None = None
    base_url: pulumi.Input[str] | None = None
    """Default https://api.openai.com/v1, as Convai's."""
    adopt_existing: pulumi.Input[bool] | None = None
    """Default false."""
    verify_endpoint: pulumi.Input[bool] | None = None
    """Default true: the endpoint preflight runs before create and endpoint-changing updates."""


class ConvaiPrivateModel(Resource, module="convai", name="PrivateModel"):
    """A private, OpenAI-compatible LLM endpoint registered with Convai.

    `model_group_name` and `model_name` replace the model when changed (Convai deletes it first:
    characters using it stop working meanwhile); the other inputs update in place. `api_key` is
    always a secret. Deregistering a model breaks the characters that use it: protect production
    models with `opts=pulumi.ResourceOptions(protect=True)`.
    """

    model_group_name: pulumi.Output[str]
    model_name: pulumi.Output[str]
    api_key: pulumi.Output[str]
    is_uncensored: pulumi.Output[bool]
    display_name: pulumi.Output[str | None]
    base_url: pulumi.Output[str]
    adopt_existing: pulumi.Output[bool]
    verify_endpoint: pulumi.Output[bool]
    category: pulumi.Output[str]
    created_at: pulumi.Output[str]

    def __init__(
        self,
        resource_name: str,
        args: ConvaiPrivateModelArgs | None = None,
        opts: pulumi.ResourceOptions | None = None,
        *,
        model_group_name: pulumi.Input[str] | None = None,
        model_name: pulumi.Input[str] | None = None,
        api_key: pulumi.Input[str] | None = None,
        is_uncensored: pulumi.Input[bool] | None = None,
        display_name: pulumi.Input[str] | None = None,
        base_url: pulumi.Input[str] | None = None,
        adopt_existing: pulumi.Input[bool] | None = None,
        verify_endpoint: pulumi.Input[bool] | None = None,
    ) -> None:
        keywords: dict[str, Any] = {
            "model_group_name": model_group_name,
            "model_name": model_name,
            "api_key": api_key,
            "is_uncensored": is_uncensored,
            "display_name": display_name,
            "base_url": base_url,
            "adopt_existing": adopt_existing,
            "verify_endpoint": verify_endpoint,
        }
        props = merge_args(args, keywords)
        if props.get("api_key") is not None:
            props["api_key"] = pulumi.Output.secret(props["api_key"])
        for output in (*keywords, "category", "created_at"):
            props.setdefault(output, None)  # None declares an output Pulumi fills after create
        secret_outputs = pulumi.ResourceOptions(additional_secret_outputs=["api_key"])
        with provider_serialization():
            super().__init__(
                PrivateModelProvider(),
                resource_name,
                props,
                pulumi.ResourceOptions.merge(opts, secret_outputs),
            )


def merge_args(args: object | None, keywords: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments win over the Args object; unset ones are left for check() to default."""
    merged = dict(vars(args)) if args is not None else {}
    merged.update({k: v for k, v in keywords.items() if v is not None})
    return merged
