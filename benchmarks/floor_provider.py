"""A dynamic provider whose create is nothing but two waits of the injected latency.

Driven through the same engine stand-in and provider server as ConvaiPrivateModel, it measures
what the harness costs by itself (gRPC, Pulumi's provider server, the Python engine, the Check
calls sharing the four workers): the floor under any create figure on this machine.
"""

from __future__ import annotations

import os
import time
from typing import Any

from pulumi.dynamic import CheckResult, CreateResult, Resource, ResourceProvider

LATENCY_ENV = "BENCH_FLOOR_LATENCY_MS"


class TwoRoundTrips(ResourceProvider):
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        return CheckResult(news, [])

    def create(self, props: dict[str, Any]) -> CreateResult:
        latency = int(os.environ.get(LATENCY_ENV, "50")) / 1000
        time.sleep(latency)  # "register"
        time.sleep(latency)  # "list"
        return CreateResult(str(props["model_group_name"]), dict(props))


class FloorModel(Resource):
    def __init__(self, name: str, **props: Any) -> None:
        super().__init__(TwoRoundTrips(), name, props)
