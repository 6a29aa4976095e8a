"""Characters bound to models: no character is ever left on a model that does not exist."""

from __future__ import annotations

from typing import Any

import httpx
import pulumi
import pytest
from pulumi.dynamic import Config, ConfigureRequest

from convai_provider import CHARACTER_TYPE_TOKEN, TYPE_TOKEN, ConvaiCharacterModel
from convai_provider.api.builtin_models import BUILTIN_MODEL_CODES
from convai_provider.api.client import ConvaiClient
from convai_provider.api.errors import AuthenticationError, BadRequestError
from convai_provider.api.wire import RegisterRequest
from convai_provider.emulator.process import EmulatorProcess
from convai_provider.guards.fingerprints import fingerprint, is_fingerprint_of
from convai_provider.resources import lookups
from convai_provider.resources.character_model import CharacterModelProvider
from convai_provider.resources.key_identity import KEY_FINGERPRINT
from convai_provider.resources.provider_errors import ConvaiOperationError
from convai_stack.program import main
from testkit.convai import CONVAI_KEY, new_character, stack_config
from testkit.engine import Declared, Engine, ProviderError, run_program_fully
from testkit.hostile_server import http_answer, serve_answer

FALLBACK = "gpt-4o-mini"


def model_of(client: ConvaiClient, char_id: str) -> str | None:
    return client.get_character(char_id).model_group_name


# The emulator's Character API -------------------------------------------------------------------


def test_character_api_shapes(client: ConvaiClient, convai: EmulatorProcess) -> None:
    char = new_character(client.base_url)
    got = client.get_character(char)
    assert got.character_id == char and got.character_name == "Ada"
    assert got.model_group_name == FALLBACK  # new characters start on a built-in model
    client.register(
        RegisterRequest(model_group_name="mine", model_name="m", api_key="k", is_uncensored=False)
    )
    reply = httpx.post(
        f"{convai.url}/character/update",
        headers={"CONVAI-API-KEY": CONVAI_KEY},
        json={"charID": char, "model_group_name": "mine"},
    )
    assert reply.json() == {"STATUS": "SUCCESS"}
    assert model_of(client, char) == "mine"


def test_character_api_errors_in_its_own_shapes(
    client: ConvaiClient, convai: EmulatorProcess
) -> None:
    unauthenticated = httpx.post(f"{convai.url}/character/get", json={"charID": "x"})
    assert unauthenticated.status_code == 401
    assert unauthenticated.json() == {"API_ERROR": "Invalid API key provided."}
    unknown = httpx.post(
        f"{convai.url}/character/get", headers={"CONVAI-API-KEY": CONVAI_KEY}, json={"charID": "x"}
    )
    assert unknown.status_code == 400 and "not found" in unknown.json()["ERROR"]
    char = new_character(client.base_url)
    with pytest.raises(BadRequestError, match="Invalid model_group_name 'ghost'"):
        client.set_character_model(char, "ghost")
    with (
        pytest.raises(AuthenticationError),
        ConvaiClient("x", convai.url, transport=httpx.HTTPTransport()) as other,
    ):
        other._http.headers.pop("CONVAI-API-KEY")
        other.get_character(char)


def test_the_orphan_view_shows_the_outage_this_prevents(
    client: ConvaiClient, convai: EmulatorProcess
) -> None:
    client.register(
        RegisterRequest(model_group_name="mine", model_name="m", api_key="k", is_uncensored=False)
    )
    char = new_character(client.base_url)
    client.set_character_model(char, "mine")
    assert convai.orphaned_characters(CONVAI_KEY) == []
    client.deregister("mine")  # what the seed warns about: Convai lets it happen
    (orphan,) = convai.orphaned_characters(CONVAI_KEY)
    assert orphan["charID"] == char and orphan["model_group_name"] == "mine"


DOCUMENTED_CODES = [
    # Convai's Core AI Settings page (issue #15), the list a character may use.
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "gpt-4o",
    "gpt-4o-mini",
    "claude-opus-4.1",
    "claude-opus-4",
    "claude-4-sonnet",
    "claude-3-7-sonnet",
    "gemini-2.5-flash",
    "gemini-2.5-flash-lite",
    "gemini-2.0-flash",
    "gemma-3n-e4b",
    "gemma-3n-e2b",
    "llama-4-maverick",
    "llama-4-scout",
    "llama-3-70B",
]


def test_characters_may_use_exactly_the_documented_built_in_codes(
    client: ConvaiClient, convai: EmulatorProcess
) -> None:
    char = new_character(client.base_url)
    for code in DOCUMENTED_CODES:
        client.set_character_model(char, code)
        assert model_of(client, char) == code
        assert convai.orphaned_characters(CONVAI_KEY) == []  # a built-in model never goes away
    for undocumented in ("claude-3-5-haiku", "llama-3-70b", "gpt-5"):
        with pytest.raises(BadRequestError, match=f"Invalid model_group_name '{undocumented}'"):
            client.set_character_model(char, undocumented)


def test_the_built_in_list_is_the_documented_one() -> None:
    assert list(BUILTIN_MODEL_CODES) == DOCUMENTED_CODES


# Through the engine, with the stack program ----------------------------------------------------


def stack(
    convai: EmulatorProcess, models: list[dict[str, Any]], **endpoint_models: str
) -> dict[str, str]:
    """A stack with one external endpoint per entry of endpoint_models (name -> served model)."""
    import json

    endpoints = [
        {
            "name": name,
            "kind": "external",
            "base_url": f"http://127.0.0.1:8000/{name}/v1",
            "model_name": served,
            "api_key_config": "localVllmApiKey",
        }
        for name, served in endpoint_models.items()
    ]
    return {
        "convai:apiKey": CONVAI_KEY,
        "convai:baseUrl": convai.url,
        "convai-models:localVllmApiKey": "EMPTY",
        "convai-models:fallbackModel": FALLBACK,
        "convai-models:endpoints": json.dumps(endpoints),
        "convai-models:models": json.dumps([{"verify_endpoint": False, **m} for m in models]),
    }


def alpha_and_beta(on_alpha: list[str], on_beta: list[str]) -> list[dict[str, Any]]:
    """Two models on two endpoints ("one", "two"), with the characters that use each."""
    return [
        {"model_group_name": "alpha", "endpoint": "one", "characters": on_alpha},
        {"model_group_name": "beta", "endpoint": "two", "characters": on_beta},
    ]


def program(config: dict[str, str]) -> list[Declared]:
    run = run_program_fully(
        main, config=config, secret_keys=["convai:apiKey", "convai-models:localVllmApiKey"]
    )
    return [
        Declared.from_registration(r)
        for r in run.registrations
        if r.type in (TYPE_TOKEN, CHARACTER_TYPE_TOKEN)
    ]


@pytest.fixture
def guarded(convai: EmulatorProcess) -> Engine:
    """An engine that checks after every Create, Update and Delete that no character is orphaned."""

    def no_orphans(call: str) -> None:
        orphans = convai.orphaned_characters(CONVAI_KEY)
        assert orphans == [], f"after {call}: characters on missing models: {orphans}"

    return Engine(stack_config(convai), after_each_change=no_orphans)


@pytest.fixture
def chars(client: ConvaiClient) -> list[str]:
    return [new_character(client.base_url, name) for name in ("Ada", "Bo", "Cy")]


def test_bindings_follow_the_declared_models(
    guarded: Engine, convai: EmulatorProcess, client: ConvaiClient, chars: list[str]
) -> None:
    a, b, c = chars
    config = stack(
        convai,
        alpha_and_beta([a, b], [c]),
        one="llama-8b",
        two="qwen-7b",
    )
    guarded.up(program(config))
    assert [model_of(client, x) for x in chars] == ["alpha", "alpha", "beta"]
    assert guarded.preview(program(config)) == {
        "alpha": "same",
        "beta": "same",
        f"character-{a}": "same",
        f"character-{b}": "same",
        f"character-{c}": "same",
    }


# Replacement, removal, moves and destroy, and the order the engine puts them in, run through the
# real Pulumi CLI: tests/test_real_engine.py.


def test_refresh_detects_a_character_moved_by_hand(
    guarded: Engine, convai: EmulatorProcess, client: ConvaiClient, chars: list[str]
) -> None:
    a = chars[0]
    resources = program(
        stack(
            convai,
            [{"model_group_name": "alpha", "endpoint": "one", "characters": [a]}],
            one="llama-8b",
        )
    )
    guarded.up(resources)
    client.set_character_model(a, "gpt-4o")
    guarded.refresh()
    assert guarded.state[f"character-{a}"].outputs["model_group_name"] == "gpt-4o"
    assert guarded.preview(resources)[f"character-{a}"] == "replace"
    guarded.up(resources)
    assert model_of(client, a) == "alpha"


def test_an_unknown_character_is_an_error_naming_character_and_model(
    guarded: Engine, convai: EmulatorProcess
) -> None:
    resources = program(
        stack(
            convai,
            [{"model_group_name": "alpha", "endpoint": "one", "characters": ["nobody"]}],
            one="llama-8b",
        )
    )
    with pytest.raises(ProviderError) as caught:
        guarded.up(resources)
    details = caught.value.details
    assert "Could not bind Convai character 'nobody' to model 'alpha'" in details
    assert "Character 'nobody' not found" in details


def test_bindings_depend_on_their_model_in_the_program(convai: EmulatorProcess) -> None:
    config = stack(
        convai, [{"model_group_name": "alpha", "endpoint": "one", "characters": ["c1"]}], one="m"
    )
    run = run_program_fully(
        main, config=config, secret_keys=["convai:apiKey", "convai-models:localVllmApiKey"]
    )
    binding = run.named("character-c1")
    model = run.named("alpha")
    assert binding.type == CHARACTER_TYPE_TOKEN
    assert binding.inputs["model_group_name"] == "alpha"
    assert binding.inputs["fallback_model_group_name"] == FALLBACK
    assert binding.property_dependencies["model_group_name"] == [model.urn]


def test_an_unknown_model_is_an_error_naming_character_and_model(
    guarded: Engine, chars: list[str]
) -> None:
    def binding() -> None:
        ConvaiCharacterModel("b", char_id=chars[0], model_group_name="ghost")

    resources = [Declared.from_registration(r) for r in run_program_fully(binding).registrations]
    with pytest.raises(ProviderError) as caught:
        guarded.up(resources)
    details = caught.value.details
    assert f"Could not bind Convai character '{chars[0]}' to model 'ghost'" in details
    assert "Invalid model_group_name 'ghost'" in details


# "Character gone" only on Convai's own answer for that call -------------------------------------

CHARACTER_NOT_FOUND = {"ERROR": "Character 'c1' not found"}
NOT_CONVAIS = {
    "a proxy's page": http_answer(400, raw_body=b"<html>400: character not found</html>"),
    "another shape": http_answer(400, {"error": "Character 'c1' not found"}),
    "another character": http_answer(400, {"ERROR": "Character 'c2' not found"}),
    "the model's": http_answer(400, {"ERROR": "Model 'alpha' not found"}),
}
BINDING = {
    "char_id": "c1",
    "model_group_name": "alpha",
    "fallback_model_group_name": "gpt-4o",
    KEY_FINGERPRINT: fingerprint(CONVAI_KEY),
}


def configured_binding_provider(url: str) -> CharacterModelProvider:
    provider = CharacterModelProvider()
    config = {"convai:apiKey": CONVAI_KEY, "convai:baseUrl": url, "convai:maxRetries": "0"}
    provider.configure(ConfigureRequest(Config(config, "convai-models")))
    return provider


def test_convais_character_not_found_drops_the_binding_and_lets_its_delete_pass() -> None:
    with serve_answer(http_answer(400, CHARACTER_NOT_FOUND)) as url:
        provider = configured_binding_provider(url)
        assert provider.read("c1", BINDING).id == ""
        provider.delete("c1", BINDING)


@pytest.mark.parametrize("answer", list(NOT_CONVAIS))
def test_any_other_not_found_keeps_the_binding_and_fails_its_delete(answer: str) -> None:
    with serve_answer(NOT_CONVAIS[answer]) as url:
        provider = configured_binding_provider(url)
        with pytest.raises(ConvaiOperationError, match="Could not read Convai character 'c1'"):
            provider.read("c1", BINDING)
        with pytest.raises(
            ConvaiOperationError, match="Could not move to the fallback Convai character 'c1'"
        ):
            provider.delete("c1", BINDING)


def test_a_reply_about_another_character_is_not_taken_for_this_ones() -> None:
    """A cache that ignores the request's body answers every ID with one character: its model
    was recorded as this binding's drift, and the lookup answered with it."""
    other = {"character_id": "c2", "character_name": "Bo", "model_group_name": "someone-elses"}
    with serve_answer(http_answer(200, other)) as url:
        provider = configured_binding_provider(url)
        with pytest.raises(ConvaiOperationError) as refused:
            provider.read("c1", BINDING)
        said = str(refused.value)
        assert "it describes character 'c2', not the 'c1' asked for" in said
        with pytest.raises(pulumi.RunError, match="describes character 'c2'"):
            run_program_fully(
                lambda: pulumi.export("model", lookups.character_model("c1")),
                config={"convai:apiKey": CONVAI_KEY, "convai:baseUrl": url},
            )


# Another account's key never takes a character for gone ------------------------------------------

OTHER_ACCOUNT_KEY = "convai-other-account-key-5e18c0"


@pytest.mark.parametrize(
    ("recorded", "refusal"),
    [
        (fingerprint(OTHER_ACCOUNT_KEY), "is not the one this binding was created with"),
        (None, "state does not record which key it was created with"),
    ],
    ids=["another key's", "none recorded"],
)
def test_a_character_missing_under_a_key_not_recorded_for_its_binding_keeps_it(
    recorded: str | None, refusal: str
) -> None:
    binding = BINDING | {KEY_FINGERPRINT: recorded}
    with serve_answer(http_answer(400, CHARACTER_NOT_FOUND)) as url:
        provider = configured_binding_provider(url)
        with pytest.raises(ConvaiOperationError, match=refusal):
            provider.read("c1", binding)
        with pytest.raises(ConvaiOperationError, match=refusal):
            provider.delete("c1", binding)


def test_refresh_or_destroy_with_another_accounts_key_keeps_the_binding(
    guarded: Engine, client: ConvaiClient, chars: list[str]
) -> None:
    """A wrong CI secret: Convai answers "Character not found" for this account's characters.
    Before, refresh dropped the binding and destroy counted it as gone: the character stayed on
    its model, and the next destroy with the right key deregistered models under it."""
    a = chars[0]

    def binding() -> None:
        ConvaiCharacterModel("b", char_id=a, model_group_name="gpt-4o")

    guarded.up([Declared.from_registration(r) for r in run_program_fully(binding).registrations])
    assert model_of(client, a) == "gpt-4o"
    assert is_fingerprint_of(CONVAI_KEY, guarded.state["b"].outputs[KEY_FINGERPRINT])
    assert KEY_FINGERPRINT not in guarded.state["b"].inputs
    guarded.config = {**guarded.config, "convai:apiKey": OTHER_ACCOUNT_KEY}
    for operation in (guarded.refresh, guarded.destroy):
        with pytest.raises(ProviderError, match="is not the one this binding was created with"):
            operation()
        assert "b" in guarded.state
    guarded.config = {**guarded.config, "convai:apiKey": CONVAI_KEY}
    guarded.refresh()
    guarded.destroy()
    assert guarded.state == {} and model_of(client, a) == FALLBACK
