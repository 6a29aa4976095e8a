"""PrivateModelProvider's methods called directly, against the emulator."""

from __future__ import annotations

import pickle
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import dill
import pytest
from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config
from pulumi.output import Unknown

from convai_provider.api.account import ConvaiAccount, Operation
from convai_provider.emulator.process import EmulatorProcess
from convai_provider.guards.fingerprints import fingerprint
from convai_provider.resources.key_identity import KEY_FINGERPRINT
from convai_provider.resources.private_model import PrivateModelProvider
from convai_provider.resources.provider_errors import ConvaiOperationError
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
    assert created.outs["created_at"] is None and created.outs["category"] is None
    read = provider.read("g", created.outs)
    assert read.id == "g" and read.outs is not None
    assert read.outs["created_at"] and read.outs["category"] == "Private"  # Convai computed them
    assert {**read.outs, "created_at": None, "category": None} == created.outs
    assert read.inputs is not None and "created_at" not in read.inputs
    news = {**checked, "display_name": "D2"}
    updated = provider.update("g", read.outs, news)
    assert updated.outs is not None and updated.outs["display_name"] == "D2"
    assert updated.outs["created_at"] == read.outs["created_at"]
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
    created_with_this_key = {KEY_FINGERPRINT: fingerprint(CONVAI_KEY)}
    assert provider.read("g0", created_with_this_key).id == ""


def test_a_configured_provider_pickles_without_its_configuration(
    provider: PrivateModelProvider,
) -> None:
    provider.create(provider.check({}, inputs()).inputs)
    pickled = dill.dumps(provider, protocol=pickle.DEFAULT_PROTOCOL, recurse=True)
    assert CONVAI_KEY.encode() not in pickled
    assert b"httpx" not in pickled


@pytest.mark.parametrize("adopt_existing", [False, True])
def test_a_create_is_one_operation_with_one_deadline(
    provider: PrivateModelProvider, monkeypatch: pytest.MonkeyPatch, adopt_existing: bool
) -> None:
    """Adopting a model that is not there falls back to registering it: within the deadline
    the create started with, not a fresh one."""
    started: list[Operation] = []
    start = ConvaiAccount.operation

    def counted(account: ConvaiAccount) -> Operation:
        started.append(start(account))
        return started[-1]

    monkeypatch.setattr(ConvaiAccount, "operation", counted)
    created = provider.create(provider.check({}, inputs(adopt_existing=adopt_existing)).inputs)
    assert created.id == "g"
    assert len(started) == 1
