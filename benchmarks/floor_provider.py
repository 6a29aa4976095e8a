"""A dynamic provider that calls nothing: a create or a delete waits the latency, a read 0.

Driven through the same engine and provider server as ConvaiPrivateModel, it measures what the
engine, gRPC and Pulumi's provider server cost by themselves, plus the round trip a create and a
delete cannot avoid (register; deregister): the floor under those figures.
"""

from __future__ import annotations

import os
import time
from typing import Any

from pulumi.dynamic import CheckResult, CreateResult, ReadResult, Resource, ResourceProvider

from convai_provider.resources.pulumi_outputs import settle_outputs_in_one_wait
from convai_provider.resources.pulumi_pickling import provider_serialization

LATENCY_ENV = "BENCH_FLOOR_LATENCY_MS"


def _latency() -> float:
    return int(os.environ.get(LATENCY_ENV, "50")) / 1000


class OneRoundTrip(ResourceProvider):
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, [])

    def create(self, props: dict[str, Any]) -> CreateResult:
        time.sleep(_latency())  # "register"
        return CreateResult(str(props["model_group_name"]), dict(props))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_, props)

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        time.sleep(_latency())  # "deregister"


class FloorModel(Resource):
    def __init__(self, name: str, **props: Any) -> None:
        settle_outputs_in_one_wait()  # as ConvaiPrivateModel: the floor is the same program
        with provider_serialization():  # past ~985 resources, as ConvaiPrivateModel
            super().__init__(OneRoundTrip(), name, props)
