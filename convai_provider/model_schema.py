"""The ConvaiPrivateModel schema: its inputs, how they are validated, which changes replace it."""

from __future__ import annotations

import unicodedata
from typing import Annotated, Any

from pydantic import AfterValidator, ConfigDict, Field, StrictBool, StrictStr

from .keys import key_problem
from .urls import endpoint_url_problem, shown_url
from .wire import OPENAI_BASE_URL, UPDATABLE_FIELDS, PrivateModel, RegisterRequest

_CONTROL = frozenset({"Cc", "Cs", "Zl", "Zp"})
"""Control characters, lone surrogates and line or paragraph separators: no name holds one."""

_INVISIBLE = frozenset({"Cf", "Zs", "Mn", "Me"})
"""Format characters (zero-width space, joiners, BOM), spaces and combining marks: a name of
these only looks empty. Within visible text they are fine (emoji sequences, RTL marks)."""


def _no_blank_or_padding(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be empty")
    if value != value.strip():
        raise ValueError("must not start or end with whitespace")
    control = next((ch for ch in value if unicodedata.category(ch) in _CONTROL), None)
    if control is not None:
        raise ValueError(f"must not contain control characters (found U+{ord(control):04X})")
    if all(unicodedata.category(ch) in _INVISIBLE for ch in value):
        raise ValueError("must contain a visible character (it holds only invisible ones)")
    return value


def _endpoint_url(value: str) -> str:
    problem = endpoint_url_problem(value)
    if problem is not None:
        raise ValueError(f"{problem} (got {shown_url(value)!r})")
    return value


Name = Annotated[StrictStr, AfterValidator(_no_blank_or_padding)]
BaseUrl = Annotated[StrictStr, AfterValidator(_endpoint_url)]


def _header_safe(value: str) -> str:
    problem = key_problem(value)
    if problem is not None:
        raise ValueError(f"{problem}; give the key without it")
    return value


EndpointKey = Annotated[
    StrictStr,
    Field(min_length=1),
    AfterValidator(_no_blank_or_padding),
    AfterValidator(_header_safe),
]

REPLACE_FIELDS = ("model_group_name", "model_name")
"""The update API cannot change these: a change deletes the model, then registers it anew."""

UPDATE_FIELDS = UPDATABLE_FIELDS
"""Changed in place with `/llm-models/update`: the fields its request carries."""

ENDPOINT_FIELDS = ("base_url", "model_name", "api_key")
"""A change to any of these points Convai at a different endpoint: the preflight runs again."""

COMPUTED_FIELDS = ("category", "created_at")
"""Set by Convai; outputs only."""


class PrivateModelInputs(RegisterRequest):
    """What a ConvaiPrivateModel declares: the register request, validated for plan time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_group_name: Name
    """Required, replaces on change. Unique in the account; characters refer to it."""
    model_name: Name
    """Required, replaces on change. The name the endpoint serves."""
    api_key: EndpointKey
    """Required, secret, updates in place. Use a placeholder such as EMPTY for keyless endpoints."""
    is_uncensored: StrictBool = False
    """Optional (false), updates in place."""
    display_name: Name | None = None
    """Optional, updates in place; left out, Convai's own label is kept and never diffed."""
    base_url: BaseUrl = OPENAI_BASE_URL
    """Optional (Convai's default `https://api.openai.com/v1`), updates in place."""
    adopt_existing: StrictBool = False
    """Optional (false): on create, take over a model of this group name instead of failing."""
    verify_endpoint: StrictBool = True
    """Optional (true): run the endpoint preflight before create, and before an update that
    changes base_url or api_key; a failing endpoint is never registered."""

    def register_request(self) -> RegisterRequest:
        return RegisterRequest.model_validate(
            self.model_dump(include=set(RegisterRequest.model_fields))
        )

    def outputs(self, live: PrivateModel | None) -> dict[str, Any]:
        """Every input, with what Convai reports overriding what was declared; without a listing
        of the model, what Convai computes stays unknown until a refresh."""
        outputs = self.model_dump() | dict.fromkeys(COMPUTED_FIELDS)
        if live is not None:
            outputs.update(live.model_dump(include=set(PrivateModel.model_fields)))
        return outputs


INPUT_FIELDS = tuple(PrivateModelInputs.model_fields)
