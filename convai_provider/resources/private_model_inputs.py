"""The schema of `ConvaiPrivateModel`: its inputs, each field's doc and what a change does.

The one source of the private model's fields: the resource's Args, keyword signature and outputs
(`private_model`), the stack file's model declaration (`convai_stack.stack_config`) and
docs/reference.md follow it, derived or tied by tests (tests/test_schema_source.py). It imports no
Pulumi, so the stack schema, which the operator commands load, can take fields from it.
"""

from __future__ import annotations

from typing import Any

from pydantic import ConfigDict, Field, StrictBool

from convai_provider.api.accounts import ACCOUNT_KEY
from convai_provider.api.wire import (
    OPENAI_BASE_URL,
    PrivateModel,
    RegisterRequest,
    RegisterResponse,
)
from convai_provider.resources.field_docs import on_change, replacing_fields
from convai_provider.resources.fields import AccountAlias, BaseUrl, EndpointKey, Name
from convai_provider.resources.key_identity import KEY_FINGERPRINT

_NAME_IS_UNIQUE = on_change(
    "replaces: deletes the model, then registers it anew (the name is unique in the account; "
    "characters using the model stop answering in between)",
    replaces=True,
)


class PrivateModelInputs(RegisterRequest):
    """What a ConvaiPrivateModel declares: the register request, validated for plan time."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)

    model_group_name: Name = Field(json_schema_extra=_NAME_IS_UNIQUE)
    """The model's name in Convai, unique in the account: characters refer to it."""
    model_name: Name = Field(json_schema_extra=_NAME_IS_UNIQUE)
    """The name the endpoint serves the model as (vLLM's served model name)."""
    api_key: EndpointKey
    """The endpoint's key, always stored as a secret; use a placeholder such as EMPTY for an
    endpoint that needs none."""
    is_uncensored: StrictBool = False
    """Convai's uncensored flag for the model."""
    display_name: Name | None = None
    """The label Convai shows, unique in the account; left out, Convai's own label is kept and
    never diffed."""
    base_url: BaseUrl = OPENAI_BASE_URL
    """The endpoint's API root, ending in /v1 (an http(s) URL without credentials, query or
    fragment); left out, Convai's default."""
    adopt_existing: StrictBool = Field(
        default=False,
        json_schema_extra=on_change("read by create only: a change alone plans nothing"),
    )
    """On create, take over a model of this group name already in Convai (updating it to the
    declaration) instead of failing with a conflict."""
    verify_endpoint: StrictBool = Field(
        default=True,
        json_schema_extra=on_change(
            "read by create and by updates that change the endpoint: a change alone plans nothing"
        ),
    )
    """Run the endpoint preflight before create, and before an update that changes base_url,
    model_name or api_key: a failing endpoint is never registered."""
    account: AccountAlias | None = Field(
        default=None,
        json_schema_extra=on_change(
            "replaces: registers the model in the new account, then deregisters it from the old "
            "(a rename of the alias to the same key changes nothing)",
            replaces=True,
        ),
    )
    """An alias of the stack's convai:accounts (docs/accounts.md); left out, the account of
    convai:apiKey."""

    def register_request(self) -> RegisterRequest:
        return RegisterRequest.model_validate(
            self.model_dump(include=set(RegisterRequest.model_fields))
        )

    def outputs(self, live: PrivateModel) -> dict[str, Any]:
        """Every input, with what Convai lists overriding what was declared."""
        outputs = self.model_dump() | dict.fromkeys(COMPUTED_FIELDS)
        outputs.update(live.documented())
        return outputs

    def registered_outputs(self, registered: RegisterResponse) -> dict[str, Any]:
        """Every input, and the label Convai gave when none was declared. What Convai computes
        (category, created_at) stays unset until the next read (refresh, `up --refresh`): reading
        it now would cost a whole-account list per create (docs/big-stacks.md)."""
        outputs = self.model_dump() | dict.fromkeys(COMPUTED_FIELDS)
        if self.display_name is None:
            outputs["display_name"] = registered.display_name
        return outputs


INPUT_FIELDS = tuple(PrivateModelInputs.model_fields)

REPLACE_FIELDS = tuple(f for f in replacing_fields(PrivateModelInputs) if f != ACCOUNT_KEY)
"""The update API cannot change these: a change deletes the model, then registers it anew. (A
change of account replaces too, in the other order: the provider's diff tells a move from a
rename.)"""

ENDPOINT_FIELDS = ("base_url", "model_name", "api_key")
"""A change to any of these points Convai at a different endpoint: the preflight runs again. In
a stack file they come from the model's endpoint."""

COMPUTED_FIELDS = ("category", "created_at", KEY_FINGERPRINT)
"""Outputs only: set by Convai, or (the key fingerprint) by the provider."""

COMPUTED_DOCS = {
    "category": "Set by Convai (`Private`); read by the first refresh after the create "
    "(docs/big-stacks.md says why).",
    "created_at": "Set by Convai (ISO-8601 UTC); read by the first refresh after the create.",
    KEY_FINGERPRINT: "A fingerprint of the Convai key that created the model or last saw it "
    "(never the key): how another account's key is told from this model's "
    "(docs/state-integrity.md).",
}
"""The doc of each output that is no input."""
