"""An endpoint that runs elsewhere, and what a change of either kind of endpoint does."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from convai_provider.resources.field_docs import on_change
from convai_provider.resources.fields import BaseUrl, Name
from convai_stack.config_keys import ConfigKey
from convai_stack.kubernetes_options import DnsLabel
from convai_stack.schema_base import StrictModel

SERVED_NAME_CHANGE = on_change(
    'replaces its Convai models (their model_name); docs/vllm.md, "Changing the model or the '
    'served name", says how to change it without a 404 window',
    replaces=True,
)
OTHER_KIND_CHANGE = on_change(
    "replaces the endpoint: a vllm endpoint's resources are created or deleted", replaces=True
)


class ExternalEndpoint(StrictModel):
    """An OpenAI-compatible endpoint that already runs somewhere (a hosted provider, a laptop)."""

    kind: Literal["external"] = Field(json_schema_extra=OTHER_KIND_CHANGE)
    """`external`: an endpoint that runs elsewhere."""
    name: DnsLabel
    """The endpoint's name, which models refer to (`endpoint`)."""
    base_url: BaseUrl
    """The API root, ending in /v1 (http(s), without credentials, query or fragment); without
    /v1 and with the preflight off (`verify_endpoint: false`), preview warns."""
    model_name: Name = Field(json_schema_extra=SERVED_NAME_CHANGE)
    """The name the endpoint serves the model as: the Convai model's `model_name`."""
    api_key_config: ConfigKey
    """The name of a secret config key holding the endpoint's key, set with
    `pulumi config set --secret <name>`."""

    @property
    def served_as(self) -> tuple[str, str]:
        """(base_url, model_name) Convai is given for this endpoint."""
        return self.base_url, self.model_name
