"""The benchmark's Pulumi program: `bench:count` models of the provider `bench:kind`."""

from __future__ import annotations

import hashlib
from typing import Any

import pulumi

from benchmarks.floor_provider import FloorModel
from benchmarks.naive_provider import NaiveModel
from convai_provider import ConvaiPrivateModel

KINDS: dict[str, Any] = {"ours": ConvaiPrivateModel, "naive": NaiveModel, "floor": FloorModel}

ENDPOINT_KEY_LENGTH = 48
"""As long as the stacks' generated endpoint keys (convai_stack/vllm.py), one per model as when
every model is an endpoint of its own: each is long enough that the provider keeps it out of
every message, so the benchmark pays for that as a real stack does."""


def endpoint_key(i: int) -> str:
    return hashlib.sha256(f"bench endpoint {i}".encode()).hexdigest()[:ENDPOINT_KEY_LENGTH]


config = pulumi.Config("bench")
kind = config.require("kind")
resource = KINDS[kind]
for i in range(config.require_int("count")):
    fields: dict[str, Any] = {
        "model_group_name": f"{kind}-{i}",  # the providers share one Convai account
        "model_name": "llama-3.1-8b",
        "api_key": endpoint_key(i),
        "base_url": "https://llm.example.com/v1",
        "is_uncensored": False,
    }
    if resource is ConvaiPrivateModel:
        fields["verify_endpoint"] = False
    resource(f"m{i}", **fields)
