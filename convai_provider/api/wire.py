"""Convai `/llm-models/*` wire format: every field name of the API, defined once.

The client sends these requests and parses these replies; the emulator parses the same requests
and sends the same replies; the provider builds its state from `PrivateModel`.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictStr,
    model_validator,
)

OPENAI_BASE_URL = "https://api.openai.com/v1"
"""OpenAI's API root: what Convai stores as a model's `base_url` when register is sent without
one. Not Convai's own address (that is `access.DEFAULT_CONVAI_URL`)."""

PRIVATE_CATEGORY = "Private"

REGISTER_PATH = "/llm-models/register"
UPDATE_PATH = "/llm-models/update"
DEREGISTER_PATH = "/llm-models/deregister"
LIST_PATH = "/llm-models/list"
API_KEY_HEADER = "CONVAI-API-KEY"

Identifier = Annotated[StrictStr, Field(min_length=1)]
"""A name Convai keys on; an empty one is refused before anything is sent."""


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    def to_body(self) -> dict[str, Any]:
        """The JSON body: optional fields the caller left out are not sent at all."""
        return self.model_dump(exclude_none=True)


class RegisterRequest(_Request):
    model_group_name: Identifier
    """Unique per account and immutable: the handle characters refer to."""
    model_name: Identifier
    """The model name the endpoint serves (`--served-model-name` in vLLM)."""
    api_key: StrictStr
    """The endpoint's key; Convai stores it and never returns it."""
    is_uncensored: StrictBool
    display_name: Identifier | None = None
    """Label in Core AI Settings; unique per account."""
    base_url: Identifier | None = None
    """OpenAI-style base URL (`https://host/v1`); Convai defaults it to `OPENAI_BASE_URL`."""


UPDATABLE_FIELDS = ("display_name", "base_url", "api_key", "is_uncensored")
"""What `/llm-models/update` can change: a private model updates these in place, and a change
to any other field replaces it."""


class UpdateRequest(_Request):
    model_group_name: Identifier
    display_name: Identifier | None = None
    base_url: Identifier | None = None
    api_key: StrictStr | None = None
    is_uncensored: StrictBool | None = None

    def fields_to_update(self) -> list[str]:
        return [name for name in UPDATABLE_FIELDS if getattr(self, name) is not None]


class DeregisterRequest(_Request):
    model_group_name: Identifier


STRICT_REPLY = ConfigDict(extra="allow", strict=True)
"""Replies accept fields the server may add later, but each documented field only in its
documented JSON type: `is_uncensored: "yes"` or `count: "1"` is not understood, not coerced."""


class _Reply(BaseModel):
    """A reply without `status: success` is not a success, whatever its HTTP status."""

    model_config = STRICT_REPLY

    status: Literal["success"]
    transactionID: str = ""  # noqa: N815 - the wire name


class RegisterResponse(_Reply):
    model_group_name: str
    model_name: str
    display_name: str | None = None
    message: str = ""


class UpdateResponse(_Reply):
    message: str = ""
    updated_fields: list[str] = Field(default_factory=list)


class DeregisterResponse(_Reply):
    message: str = ""


class PrivateModel(BaseModel):
    """One model as `/llm-models/list` reports it (the api_key is never returned)."""

    model_config = STRICT_REPLY

    model_group_name: str
    model_name: str
    display_name: str | None = None
    base_url: str = OPENAI_BASE_URL
    is_uncensored: bool = False
    category: str = PRIVATE_CATEGORY
    created_at: str = ""

    def documented(self) -> dict[str, Any]:
        """The fields Convai documents, and nothing else a reply added: a field we do not know
        (an `api_key` a proxy or a later API echoes) never reaches outputs, state or a terminal."""
        return self.model_dump(include=set(type(self).model_fields))

    def created(self) -> datetime | None:
        """`created_at` as a time (in UTC when it names no zone: Convai writes `Z`); None when
        it is missing or not an ISO-8601 time."""
        try:
            when = datetime.fromisoformat(self.created_at)
        except ValueError:
            return None
        return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


PAGING_MARKERS = frozenset(
    {
        "hasmore",
        "more",
        "moreavailable",
        "next",
        "page",
        "pages",
        "pagenumber",
        "pagesize",
        "perpage",
        "pagetoken",
        "totalpages",
        "cursor",
        "continuation",
        "offset",
        "limit",
        "truncated",
        "istruncated",
    }
)
"""Fields that would say a list reply is one page of several, by their name with case, `_`, `-`
and `.` removed (so `has_more`, `hasMore` and `Has-More` are one marker); any name starting with
`next` or containing `cursor`, `continuation`, `pagetoken`, `nextlink` or `truncat` is one too.
Present with a value other than null, false or empty, at the top of the reply or inside any
object of it other than a model, the reply is refused."""

_PAGING_PARTS = ("cursor", "continuation", "pagetoken", "nextlink", "truncat")


def _plain(name: str) -> str:
    return "".join(ch for ch in name.lower() if ch.isalnum())


def _is_paging_marker(name: str) -> bool:
    plain = _plain(name)
    return (
        plain in PAGING_MARKERS
        or plain.startswith("next")
        or any(part in plain for part in _PAGING_PARTS)
    )


def _says_nothing(value: Any) -> bool:
    """null, false or empty: a marker saying there is no further page (0 is a page number)."""
    return value is None or value is False or (isinstance(value, str | list | dict) and not value)


def paging_fields(fields: Mapping[str, Any], listed: int, where: str = "") -> list[str]:
    """Where `fields` (a list reply's fields other than `models`, at any depth) say the reply
    is one page of several: a paging marker, or a total (`total`, `totalCount`, ...) other than
    the `listed` number of models."""
    found: list[str] = []
    for name, value in fields.items():
        path = f"{where}{name}"
        if _is_paging_marker(name) and not _says_nothing(value):
            found.append(path)
        elif _plain(name).startswith("total") and _is_number(value) and value != listed:
            found.append(f"{path} {value}")
        elif isinstance(value, dict):
            found += paging_fields(value, listed, f"{path}.")
    return found


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def paging_headers(headers: Mapping[str, str], listed: int) -> list[str]:
    """Where a list reply's HTTP headers say it is one page of several: a `Link` to a `rel=next`
    page (as GitHub pages), or an `X-` header named like a paging marker or a total
    (`X-Next-Page`, `X-Has-More: true`, an `X-Total-Count` other than the `listed` number)."""
    return [f"header {name}" for name, value in headers.items() if _pages(name, value, listed)]


def _pages(header: str, value: str, listed: int) -> bool:
    name = header.lower()
    if name == "link":
        return _NEXT_LINK.search(value) is not None
    return name.startswith("x-") and bool(paging_fields({name[2:]: _header_value(value)}, listed))


_NEXT_LINK = re.compile(r"rel\s*=\s*\"?[^\";,]*\bnext\b", re.IGNORECASE)


def _header_value(text: str) -> Any:
    """A header's value as the JSON value it stands for: a number, false, or the text."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    return False if text.lower() in ("false", "") else text


class ListResponse(_Reply):
    models: list[PrivateModel]
    """Required: a list reply without it says nothing about which models exist."""
    count: int | None = None
    """When sent, the number of models: a list holding fewer is not the whole account."""

    @model_validator(mode="after")
    def _whole_account(self) -> ListResponse:
        """A list is the whole account or it is an error: never a page that a refresh would
        read as "the rest are gone", never two models of one name to choose between."""
        if self.count is not None and self.count != len(self.models):
            raise ValueError(
                f"count is {self.count} but the reply lists {len(self.models)} models: "
                "not the whole account"
            )
        paging = paging_fields(self.model_extra or {}, len(self.models))
        if paging:
            raise ValueError(
                f"it is paged ({', '.join(paging)}), and Convai's list is documented whole: "
                "not the whole account"
            )
        names = Counter(m.model_group_name for m in self.models)
        repeated = sorted(name for name, times in names.items() if times > 1)
        if repeated:
            raise ValueError(
                f"it lists {', '.join(repeated)} more than once; a model_group_name is unique "
                "in an account"
            )
        return self

    def find(self, model_group_name: str) -> PrivateModel | None:
        return next((m for m in self.models if m.model_group_name == model_group_name), None)


# Characters: Convai's older Character API, without the /llm-models envelope ---------------

CHARACTER_PATH_PREFIX = "/character/"
CHARACTER_CREATE_PATH = "/character/create"
CHARACTER_GET_PATH = "/character/get"
CHARACTER_UPDATE_PATH = "/character/update"
CHARACTER_SUCCESS = {"STATUS": "SUCCESS"}


class CharacterCreateRequest(_Request):
    charName: Identifier  # noqa: N815 - the wire name
    voiceType: StrictStr = "MALE"  # noqa: N815 - the wire name
    backstory: StrictStr = ""


class CharacterCreateResponse(BaseModel):
    model_config = STRICT_REPLY

    charID: str  # noqa: N815 - the wire name


class CharacterGetRequest(_Request):
    charID: Identifier  # noqa: N815 - the wire name


class CharacterUpdateRequest(_Request):
    """Sets the LLM a character uses: a built-in model code or a private model's group name."""

    charID: Identifier  # noqa: N815 - the wire name
    model_group_name: Identifier


class CharacterUpdateResponse(BaseModel):
    model_config = STRICT_REPLY

    STATUS: Literal["SUCCESS"]


class Character(BaseModel):
    """`/character/get`'s reply. Whether it reports the model is undocumented: it is optional."""

    model_config = STRICT_REPLY

    character_id: str
    character_name: str = ""
    user_id: str = ""
    voice_type: str = ""
    timestamp: str = ""
    backstory: str = ""
    model_group_name: str | None = None
