"""PrivateModelProvider's methods called directly, against the emulator."""

from __future__ import annotations

import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dill
import pytest
from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config
from pulumi.output import Unknown

from convai_provider.client import ConvaiClient
from convai_provider.emulator.process import EmulatorProcess
from convai_provider.listing import SharedListing
from convai_provider.provider import PrivateModelProvider
from convai_provider.provider_base import ConvaiOperationError
from convai_provider.runtime import ConvaiRuntime
from convai_provider.settings import ConvaiSettings
from convai_provider.wire import ListResponse, PrivateModel
from testkit.convai import CONVAI_KEY


@pytest.fixture
def provider(convai: EmulatorProcess) -> PrivateModelProvider:
    instance = PrivateModelProvider()
    config = {"convai:apiKey": CONVAI_KEY, "convai:baseUrl": convai.url}
    instance.configure(ConfigureRequest(Config(config, "convai-models")))
    return instance


def inputs(group: str = "g", **changes: Any) -> dict[str, Any]:
    return {
        "model_group_name": group,
        "model_name": "m",
        "api_key": "sk-1",
        "verify_endpoint": False,
        **changes,
    }


def test_check_fills_the_defaults_convai_would(provider: PrivateModelProvider) -> None:
    result = provider.check({}, inputs())
    assert result.failures == []
    assert result.inputs["base_url"] == "https://api.openai.com/v1"
    assert result.inputs["is_uncensored"] is False and result.inputs["adopt_existing"] is False
    assert provider.check({}, {"model_group_name": "g", "model_name": "m", "api_key": "k"}).inputs[
        "verify_endpoint"
    ]


def test_check_keeps_unknowns_and_validates_the_rest(provider: PrivateModelProvider) -> None:
    result = provider.check({}, inputs(api_key=Unknown(), base_url="nope"))  # type: ignore[no-untyped-call]
    assert isinstance(result.inputs["api_key"], Unknown)
    assert [f.property for f in result.failures] == ["base_url"]


def test_check_refuses_an_input_it_does_not_know(provider: PrivateModelProvider) -> None:
    result = provider.check({}, inputs(temperature=0.7))
    assert [(f.property, f.reason) for f in result.failures] == [
        ("temperature", "temperature is not a known field; remove it or check its spelling")
    ]


def test_diff_ignores_the_provider_and_a_display_name_left_out(
    provider: PrivateModelProvider,
) -> None:
    olds = {
        **provider.check({}, inputs()).inputs,
        "display_name": "Set by Convai",
        "__provider": "a",
    }
    news = {**provider.check({}, inputs()).inputs, "__provider": "b"}
    diff = provider.diff("g", olds, news)
    assert diff.changes is False and diff.replaces == []


def test_create_read_update_delete(provider: PrivateModelProvider, convai: EmulatorProcess) -> None:
    checked = provider.check({}, inputs(display_name="D")).inputs
    created = provider.create(checked)
    assert created.id == "g" and created.outs is not None
    read = provider.read("g", created.outs)
    assert read.id == "g" and read.outs == created.outs
    assert read.inputs is not None and "created_at" not in read.inputs
    news = {**checked, "display_name": "D2"}
    updated = provider.update("g", created.outs, news)
    assert updated.outs is not None and updated.outs["display_name"] == "D2"
    assert updated.outs["created_at"] == created.outs["created_at"]
    provider.delete("g", updated.outs)
    assert provider.read("g", updated.outs).id == ""
    provider.delete("g", updated.outs)  # already gone: still success


def test_update_of_a_vanished_model_names_it(provider: PrivateModelProvider) -> None:
    with pytest.raises(
        ConvaiOperationError, match=r"Could not update Convai private model 'ghost'.*404"
    ):
        provider.update("ghost", inputs("ghost"), inputs("ghost", display_name="x"))


def test_one_instance_serves_four_threads(
    provider: PrivateModelProvider, convai: EmulatorProcess
) -> None:
    def lifecycle(i: int) -> bool:
        checked = provider.check({}, inputs(f"g{i}", display_name=f"D{i}")).inputs
        outs = provider.create(checked).outs or {}
        provider.update(f"g{i}", outs, {**checked, "is_uncensored": True})
        read = provider.read(f"g{i}", outs).outs or {}
        return bool(read["is_uncensored"])

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(lifecycle, range(24))) == [True] * 24
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: provider.delete(f"g{i}", {}), range(24)))
    assert provider.read("g0", {}).id == ""


def test_a_configured_provider_pickles_without_its_configuration(
    provider: PrivateModelProvider,
) -> None:
    provider.create(provider.check({}, inputs()).inputs)
    pickled = dill.dumps(provider, protocol=pickle.DEFAULT_PROTOCOL, recurse=True)
    assert CONVAI_KEY.encode() not in pickled
    assert b"httpx" not in pickled


class GatedLists:
    """A list fetch whose calls each block until the test opens their gate; records the clock
    value at which each call was requested."""

    def __init__(self, clock: list[float], replies: list[list[str]]) -> None:
        self.clock = clock
        self.replies = replies
        self.requested_at: list[float] = []
        self.gates = [threading.Event() for _ in replies]

    def __call__(self, _deadline: float | None) -> ListResponse:
        number = len(self.requested_at)
        self.requested_at.append(self.clock[0])
        self.gates[number].wait(timeout=10)
        groups = self.replies[number]
        return ListResponse(
            status="success",
            models=[PrivateModel(model_group_name=g, model_name="m") for g in groups],
        )


def test_a_create_missing_from_the_list_it_joined_takes_one_requested_after_its_reply() -> None:
    """Our register went out at 1 and came back at 10. It joins the list a concurrent create
    requested at 5, which lacks the model; meanwhile another create requested a list at 11,
    after our reply, which must hold it: we take that one rather than asking for a third."""
    clock = [5.0]
    fetch = GatedLists(clock, [["other"], ["other", "mine"], ["never asked for"]])
    waiting = threading.Event()

    def now() -> float:
        if threading.current_thread().name == "ours":
            waiting.set()  # requested_after reads the clock once it has joined a flight
        return clock[0]

    listing = SharedListing(fetch, clock=now)
    runtime = ConvaiRuntime(
        ConvaiSettings(api_key="unused"), ConvaiClient("unused", "http://127.0.0.1:9"), listing
    )
    with ThreadPoolExecutor(3, thread_name_prefix="others") as others:
        others.submit(listing.requested_after, 0.0)  # the list requested at 5
        while not fetch.requested_at:
            time.sleep(0.001)
        result: list[PrivateModel | None] = []
        ours = threading.Thread(
            name="ours",
            target=lambda: result.append(
                PrivateModelProvider._listed_after(runtime, "mine", 1.0, 10.0, deadline=60.0)
            ),
        )
        ours.start()
        assert waiting.wait(timeout=10)
        clock[0] = 11.0
        others.submit(listing.requested_after, 11.0)  # the list requested at 11
        while len(fetch.requested_at) < 2:
            time.sleep(0.001)
        clock[0] = 12.0
        fetch.gates[0].set()
        fetch.gates[1].set()
        ours.join(timeout=10)
    assert result and result[0] is not None and result[0].model_group_name == "mine"
    assert fetch.requested_at == [5.0, 11.0]
