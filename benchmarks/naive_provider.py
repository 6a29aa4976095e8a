"""A dynamic provider for Convai models written the obvious way, for comparison.

Every read lists the account's models for itself, nothing is shared between operations, and each
call opens an HTTP client of its own. The key and URL come from CONVAI_API_KEY and
CONVAI_BASE_URL, never from the pickled provider.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from pulumi.dynamic import CreateResult, ReadResult, Resource, ResourceProvider

from convai_provider.api.wire import (
    API_KEY_HEADER,
    DEREGISTER_PATH,
    LIST_PATH,
    REGISTER_PATH,
    DeregisterRequest,
    ListResponse,
    RegisterRequest,
)
from convai_provider.resources.pulumi_pickling import provider_serialization


def _post(path: str, body: dict[str, Any]) -> dict[str, Any]:
    headers = {API_KEY_HEADER: os.environ["CONVAI_API_KEY"]}
    with httpx.Client(base_url=os.environ["CONVAI_BASE_URL"], timeout=30) as client:
        reply = client.post(path, json=body, headers=headers)
        reply.raise_for_status()
        payload: dict[str, Any] = reply.json()
        return payload


class NaiveModelProvider(ResourceProvider):
    def create(self, props: dict[str, Any]) -> CreateResult:
        request = RegisterRequest.model_validate(props)
        _post(REGISTER_PATH, request.to_body())
        return CreateResult(request.model_group_name, dict(props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        listing = ListResponse.model_validate(_post(LIST_PATH, {}))
        live = listing.find(id_)
        if live is None:
            return ReadResult("", {})
        return ReadResult(id_, {**props, **live.model_dump(exclude_none=True)})

    def delete(self, id_: str, _props: dict[str, Any]) -> None:
        _post(DEREGISTER_PATH, DeregisterRequest(model_group_name=id_).to_body())


class NaiveModel(Resource):
    def __init__(self, name: str, **props: Any) -> None:
        with provider_serialization():  # past ~985 resources, as ConvaiPrivateModel
            super().__init__(NaiveModelProvider(), name, props)
