"""ConvaiPrivateModel through the real provider server, driven with the engine's call sequences."""

from __future__ import annotations

import base64
import sys
from typing import Any

import pytest

from convai_provider import (
    TYPE_TOKEN,
    ConvaiCharacterModel,
    ConvaiPrivateModel,
    ConvaiPrivateModelArgs,
)
from convai_provider.api.client import ConvaiClient
from convai_provider.api.wire import RegisterRequest, UpdateRequest
from convai_provider.emulator.process import EmulatorProcess
from testkit.convai import (
    CONVAI_KEY,
    ENDPOINT_KEY,
    declare,
    live,
    stack_config,
    stored_endpoint_key,
    turbo,
)
from testkit.engine import (
    UNKNOWN,
    CheckFailedError,
    Engine,
    ProviderError,
    run_program,
)


@pytest.fixture
def engine(convai: EmulatorProcess) -> Engine:
    return Engine(stack_config(convai))


def test_the_type_token_names_convai() -> None:
    (res,) = declare(m=turbo())
    assert res.type == TYPE_TOKEN == "pulumi-python:dynamic/convai:PrivateModel"


def test_keyword_and_args_forms_declare_the_same_inputs() -> None:
    def program() -> None:
        ConvaiPrivateModel("kw", **turbo())
        ConvaiPrivateModel("args", ConvaiPrivateModelArgs(**turbo()))

    kw, args = run_program(program)
    assert {k: v for k, v in kw.inputs.items()} == {k: v for k, v in args.inputs.items()}


def test_a_program_may_declare_more_resources_than_the_recursion_limit() -> None:
    """Pulumi 3.272 nests one pickling wrapper per dynamic resource it serializes; past the
    recursion limit (~985 resources) each further one would fail (see pulumi_pickling.py)."""
    pairs = sys.getrecursionlimit() // 2 + 50

    def program() -> None:
        for i in range(pairs):
            model = ConvaiPrivateModel(f"m{i}", **turbo(model_group_name=f"g{i}"))
            ConvaiCharacterModel(f"c{i}", char_id=f"char-{i}", model_group_name=model.id)

    assert len(run_program(program)) == 2 * pairs


def test_the_endpoint_key_is_a_secret_even_when_passed_in_plain() -> None:
    (reg,) = run_program(lambda: ConvaiPrivateModel("m", **turbo()))
    from pulumi.runtime import rpc

    assert reg.inputs["api_key"] == {
        rpc._special_sig_key: rpc._special_secret_sig,
        "value": ENDPOINT_KEY,
    }


def test_preview_of_a_new_model_checks_unknowns_without_calling_convai(
    engine: Engine, convai: EmulatorProcess
) -> None:
    (res,) = declare(m=turbo())
    res.inputs["base_url"] = UNKNOWN
    res.inputs["api_key"] = UNKNOWN
    assert engine.preview([res]) == {"m": "create"}
    assert convai.request_counts() == {}


def test_create_registers_and_outputs_every_input_computed_fields_after_a_read(
    engine: Engine, convai: EmulatorProcess
) -> None:
    (res,) = declare(m=turbo())
    assert engine.up([res]) == {"m": "create"}
    entry = engine.state["m"]
    assert entry.id == "turbo"
    assert entry.outputs.get("category") is None  # Convai's, read by the next refresh
    engine.refresh()
    entry = engine.state["m"]
    assert entry.outputs["category"] == "Private"
    assert entry.outputs["created_at"].endswith("Z")
    for field, value in turbo().items():
        assert entry.outputs[field] == value
    assert entry.outputs["is_uncensored"] is False
    assert live(convai)["turbo"]["display_name"] == "Turbo"


def test_a_server_default_is_no_perpetual_diff(engine: Engine, convai: EmulatorProcess) -> None:
    (res,) = declare(
        m={"model_group_name": "g", "model_name": "m", "api_key": "k", "verify_endpoint": False}
    )
    engine.up([res])
    assert engine.state["m"].outputs["base_url"] == "https://api.openai.com/v1"
    engine.refresh()
    assert engine.preview([res]) == {"m": "same"}


def test_in_place_update_sends_only_the_changed_fields(
    engine: Engine, convai: EmulatorProcess
) -> None:
    engine.up(declare(m=turbo()))
    engine.refresh()  # reads created_at, which the update must keep
    created_at = engine.state["m"].outputs["created_at"]
    convai.clear_counts()
    changed = declare(m=turbo(display_name="Turbo v2", api_key="sk-rotated", is_uncensored=True))
    assert engine.up(changed) == {"m": "update"}
    assert convai.request_counts() == {"/llm-models/update": 1}
    model = live(convai)["turbo"]
    assert model["display_name"] == "Turbo v2" and model["is_uncensored"] is True
    assert engine.state["m"].outputs["api_key"] == "sk-rotated"
    assert engine.state["m"].outputs["created_at"] == created_at


def test_the_endpoint_key_rotation_reaches_convai(engine: Engine, convai: EmulatorProcess) -> None:
    engine.up(declare(m=turbo()))
    engine.up(declare(m=turbo(api_key="sk-rotated")))
    db_key = stored_endpoint_key(convai, "turbo")
    assert db_key == "sk-rotated"


@pytest.mark.parametrize("field", ["model_group_name", "model_name"])
def test_immutable_fields_replace_deleting_first(
    engine: Engine, convai: EmulatorProcess, field: str
) -> None:
    engine.up(declare(m=turbo()))
    engine.calls.clear()
    changed = declare(m=turbo(**{field: "changed"}))
    assert engine.up(changed) == {"m": "replace"}
    assert [c.split(":")[0] for c in engine.calls] == ["Check", "Diff", "Check", "Delete", "Create"]
    (model,) = live(convai).values()
    assert model[field] == "changed"


def test_diff_asks_for_replacement_when_an_immutable_field_is_unknown(engine: Engine) -> None:
    (res,) = declare(m=turbo())
    engine.up([res])
    news = {**engine.state["m"].inputs, "model_name": UNKNOWN}
    with engine.command():
        diff = engine.diff(res, engine.state["m"], news)
    assert list(diff.replaces) == ["model_name"] and diff.deleteBeforeReplace


def test_refresh_records_out_of_band_changes_as_drift(
    engine: Engine, convai: EmulatorProcess
) -> None:
    (res,) = declare(m=turbo())
    engine.up([res])
    with ConvaiClient(CONVAI_KEY, convai.url) as client:
        client.update(
            UpdateRequest(
                model_group_name="turbo", display_name="Renamed by hand", is_uncensored=True
            )
        )
    engine.refresh()
    entry = engine.state["m"]
    assert entry.outputs["display_name"] == "Renamed by hand"
    assert entry.inputs["display_name"] == "Renamed by hand"
    assert entry.outputs["api_key"] == ENDPOINT_KEY  # never returned by Convai: kept from state
    assert engine.preview([res]) == {"m": "update"}
    engine.up([res])
    assert live(convai)["turbo"]["display_name"] == "Turbo"


def test_refresh_after_out_of_band_deregister_drops_the_model(
    engine: Engine, convai: EmulatorProcess
) -> None:
    (res,) = declare(m=turbo())
    engine.up([res])
    with ConvaiClient(CONVAI_KEY, convai.url) as client:
        client.deregister("turbo")
    engine.refresh()
    assert "m" not in engine.state
    assert engine.up([res]) == {"m": "create"}
    assert list(live(convai)) == ["turbo"]


def test_destroy_deregisters_and_tolerates_models_already_gone(
    engine: Engine, convai: EmulatorProcess
) -> None:
    engine.up(declare(a=turbo(), b=turbo(model_group_name="b", display_name="B")))
    with ConvaiClient(CONVAI_KEY, convai.url) as client:
        client.deregister("b")
    engine.destroy()
    assert engine.state == {} and live(convai) == {}


def test_removing_a_model_from_the_program_deregisters_it(
    engine: Engine, convai: EmulatorProcess
) -> None:
    engine.up(declare(a=turbo(), b=turbo(model_group_name="b", display_name="B")))
    assert engine.up(declare(a=turbo())) == {"a": "same", "b": "delete"}
    assert list(live(convai)) == ["turbo"]


def test_adopt_takes_over_an_existing_model(engine: Engine, convai: EmulatorProcess) -> None:
    with ConvaiClient(CONVAI_KEY, convai.url) as client:
        client.register(
            RegisterRequest(
                model_group_name="turbo",
                model_name="llama-3.1-8b",
                api_key="old",
                is_uncensored=True,
            )
        )
    created_before = live(convai)["turbo"]["created_at"]
    (res,) = declare(m=turbo(adopt_existing=True))
    assert engine.up([res]) == {"m": "create"}
    model = live(convai)["turbo"]
    assert model["created_at"] == created_before
    assert model["display_name"] == "Turbo" and model["is_uncensored"] is False
    assert model["base_url"] == "https://llm.example.com/v1"
    assert stored_endpoint_key(convai, "turbo") == ENDPOINT_KEY
    assert engine.state["m"].outputs["created_at"] == created_before
    assert engine.preview([res]) == {"m": "same"}


def test_adopt_registers_when_nothing_exists(engine: Engine, convai: EmulatorProcess) -> None:
    engine.up(declare(m=turbo(adopt_existing=True)))
    assert list(live(convai)) == ["turbo"]


def test_adopt_refuses_a_different_model_name(engine: Engine, convai: EmulatorProcess) -> None:
    with ConvaiClient(CONVAI_KEY, convai.url) as client:
        client.register(
            RegisterRequest(
                model_group_name="turbo", model_name="other", api_key="k", is_uncensored=False
            )
        )
    with pytest.raises(ProviderError) as caught:
        engine.up(declare(m=turbo(adopt_existing=True)))
    assert "model_name 'other'" in caught.value.details
    assert "declares 'llama-3.1-8b'" in caught.value.details
    assert live(convai)["turbo"]["model_name"] == "other"


def test_without_adopt_an_existing_name_is_a_clear_conflict(
    engine: Engine, convai: EmulatorProcess
) -> None:
    with ConvaiClient(CONVAI_KEY, convai.url) as client:
        client.register(
            RegisterRequest(
                model_group_name="turbo", model_name="x", api_key="k", is_uncensored=False
            )
        )
    with pytest.raises(ProviderError) as caught:
        engine.up(declare(m=turbo()))
    details = caught.value.details
    assert "Could not create Convai private model 'turbo'" in details
    assert "HTTP 409" in details and "already exists" in details
    assert "transactionID" in details and "`adopt_existing: true`" in details
    assert "Convai's 'turbo' is not this declaration (model_name: declared" in details
    assert "choose another model_group_name" in details and "exactly as declared" not in details


@pytest.mark.parametrize(
    ("fields", "prop", "fragment"),
    [
        ({"model_group_name": ""}, "model_group_name", "must not be empty"),
        ({"model_name": "  "}, "model_name", "must not be empty"),
        ({"base_url": "ftp://x/v1"}, "base_url", "http(s) URL"),
        ({"base_url": "llm.example.com/v1"}, "base_url", "http(s) URL"),
        ({"is_uncensored": "yes"}, "is_uncensored", "true or false"),
        ({"display_name": " padded"}, "display_name", "whitespace"),
        ({"api_key": None}, "api_key", "is required"),
    ],
)
def test_check_names_each_bad_field_and_what_is_allowed(
    engine: Engine, convai: EmulatorProcess, fields: dict[str, Any], prop: str, fragment: str
) -> None:
    (res,) = declare(m=turbo(**fields))
    if fields.get(prop, "") is None:
        res.inputs.pop(prop, None)
    with pytest.raises(CheckFailedError) as caught:
        engine.up([res])
    assert [p for p, _ in caught.value.failures] == [prop]
    assert fragment in caught.value.failures[0][1]
    assert convai.request_counts() == {}


def test_check_reports_every_bad_field_at_once(engine: Engine) -> None:
    (res,) = declare(m=turbo(model_group_name="", base_url="nope", is_uncensored="x"))
    with pytest.raises(CheckFailedError) as caught:
        engine.preview([res])
    assert sorted(p for p, _ in caught.value.failures) == [
        "base_url",
        "is_uncensored",
        "model_group_name",
    ]


def test_a_missing_convai_key_says_how_to_set_it(convai: EmulatorProcess) -> None:
    engine = Engine({"convai:baseUrl": convai.url}, env={"CONVAI_API_KEY": ""})
    with pytest.raises(ProviderError) as caught:
        engine.up(declare(m=turbo()))
    assert "pulumi config set --secret convai:apiKey" in caught.value.details


def test_a_preview_needs_no_convai_key(convai: EmulatorProcess) -> None:
    """configure() builds the client when it can, but a missing key must not fail a preview."""
    engine = Engine({"convai:baseUrl": convai.url}, env={"CONVAI_API_KEY": ""})
    assert engine.preview(declare(m=turbo())) == {"m": "create"}


def test_the_environment_is_the_fallback_for_key_and_url(convai: EmulatorProcess) -> None:
    engine = Engine({}, env={"CONVAI_API_KEY": CONVAI_KEY, "CONVAI_BASE_URL": convai.url})
    engine.up(declare(m=turbo()))
    assert list(live(convai)) == ["turbo"]


def test_an_unreachable_convai_fails_with_the_model_and_operation_named() -> None:
    config = {
        "convai:apiKey": CONVAI_KEY,
        "convai:baseUrl": "http://127.0.0.1:9",
        "convai:maxRetries": "1",
    }
    with pytest.raises(ProviderError) as caught:
        Engine(config).up(declare(m=turbo()))
    assert "Could not create Convai private model 'turbo'" in caught.value.details
    assert "could not reach http://127.0.0.1:9" in caught.value.details


def test_the_convai_key_is_in_neither_the_pickled_provider_nor_any_output(
    engine: Engine, convai: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CONVAI_API_KEY", CONVAI_KEY)
    (res,) = declare(m=turbo())
    pickled = base64.b64decode(res.inputs["__provider"])
    assert CONVAI_KEY.encode() not in pickled
    assert b"httpx" not in pickled and b"ConvaiClient" not in pickled
    engine.up([res])
    engine.up(declare(m=turbo(display_name="v2")))
    engine.refresh()
    for entry in engine.state.values():
        assert CONVAI_KEY not in repr(entry.outputs) and CONVAI_KEY not in repr(entry.inputs)
    assert len(engine.logs) == 3
    for log in engine.logs:
        assert CONVAI_KEY not in log and ENDPOINT_KEY not in log


def test_refreshing_many_models_costs_one_list_call(
    engine: Engine, convai: EmulatorProcess
) -> None:
    models = {f"m{i}": turbo(model_group_name=f"g{i}", display_name=f"D{i}") for i in range(40)}
    engine.up(declare(**models))
    convai.clear_counts()
    engine.refresh()
    assert convai.request_counts() == {"/llm-models/list": 1}
    assert len(engine.state) == 40


def test_creating_many_models_lists_nothing_and_a_refresh_reads_what_convai_computed(
    engine: Engine, convai: EmulatorProcess
) -> None:
    """A create used to list the whole account to learn category and created_at: O(N^2) bytes
    for N creates. They now wait for the next read, and no preview shows a change meanwhile."""
    models = {f"m{i}": turbo(model_group_name=f"g{i}", display_name=f"D{i}") for i in range(40)}
    engine.up(declare(**models))
    assert convai.request_counts() == {"/llm-models/register": 40}
    assert all(e.outputs.get("created_at") is None for e in engine.state.values())
    assert all(e.outputs.get("category") is None for e in engine.state.values())
    assert engine.preview(declare(**models)) == dict.fromkeys(models, "same")
    convai.clear_counts()
    engine.refresh()
    assert convai.request_counts() == {"/llm-models/list": 1}
    listed = live(convai)
    for i in range(40):
        outputs = engine.state[f"m{i}"].outputs
        assert outputs["created_at"] == listed[f"g{i}"]["created_at"]
        assert outputs["category"] == "Private"
    assert engine.preview(declare(**models)) == dict.fromkeys(models, "same")


def test_an_identical_model_registered_before_this_create_is_not_taken_over(
    engine: Engine, convai: EmulatorProcess
) -> None:
    """Another stack declaring the same model, or a create that failed earlier: from its inputs
    alone a create cannot tell, so it takes nothing it did not register itself."""
    fields = turbo()
    with ConvaiClient(CONVAI_KEY, convai.url) as client:
        client.register(
            RegisterRequest(
                model_group_name="turbo",
                model_name=fields["model_name"],
                api_key="sk-other-stack",
                is_uncensored=False,
                display_name=fields["display_name"],
                base_url=fields["base_url"],
            )
        )
    with pytest.raises(ProviderError) as caught:
        engine.up(declare(m=turbo()))
    assert "HTTP 409" in caught.value.details
    assert "`adopt_existing: true`" in caught.value.details
    assert "convai-models recover" in caught.value.details
    assert stored_endpoint_key(convai, "turbo") == "sk-other-stack"


def test_refresh_says_in_the_provider_log_that_a_vanished_model_was_dropped(
    engine: Engine, convai: EmulatorProcess
) -> None:
    engine.up(declare(m=turbo()))
    with ConvaiClient(CONVAI_KEY, convai.url) as client:
        client.deregister("turbo")
    engine.refresh()
    assert "convai: Convai private model turbo is gone; dropping it from state" in engine.logs[-1]


def test_an_update_leaves_fields_it_did_not_change_alone(
    engine: Engine, convai: EmulatorProcess
) -> None:
    engine.up(declare(m=turbo()))
    with ConvaiClient(CONVAI_KEY, convai.url) as client:  # changed by hand, not refreshed
        client.update(
            UpdateRequest(model_group_name="turbo", base_url="https://by-hand.example.com/v1")
        )
    assert engine.up(declare(m=turbo(display_name="Turbo v2"))) == {"m": "update"}
    model = live(convai)["turbo"]
    assert model["display_name"] == "Turbo v2"
    assert model["base_url"] == "https://by-hand.example.com/v1"  # only display_name was sent


def test_a_conflict_on_the_display_name_says_so(engine: Engine, convai: EmulatorProcess) -> None:
    with ConvaiClient(CONVAI_KEY, convai.url) as client:
        client.register(
            RegisterRequest(
                model_group_name="other",
                model_name="x",
                api_key="k",
                is_uncensored=False,
                display_name="Turbo",
            )
        )
    with pytest.raises(ProviderError) as caught:
        engine.up(declare(m=turbo()))
    assert "another model holds display_name 'Turbo'" in caught.value.details
