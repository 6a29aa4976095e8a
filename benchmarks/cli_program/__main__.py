"""The benchmark's Pulumi program: `bench:count` models of the provider `bench:kind`."""

from __future__ import annotations

from typing import Any

import pulumi

from benchmarks.floor_provider import FloorModel
from benchmarks.naive_provider import NaiveModel
from convai_provider import ConvaiPrivateModel

KINDS: dict[str, Any] = {"ours": ConvaiPrivateModel, "naive": NaiveModel, "floor": FloorModel}

config = pulumi.Config("bench")
kind = config.require("kind")
resource = KINDS[kind]
for i in range(config.require_int("count")):
    fields: dict[str, Any] = {
        "model_group_name": f"{kind}-{i}",  # the providers share one Convai account
        "model_name": "llama-3.1-8b",
        "api_key": f"sk-{i}",
        "base_url": "https://llm.example.com/v1",
        "is_uncensored": False,
    }
    if resource is ConvaiPrivateModel:
        fields["verify_endpoint"] = False
    resource(f"m{i}", **fields)
