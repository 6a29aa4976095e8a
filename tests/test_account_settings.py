"""`convai:accounts`: aliases, where each account's key and URL come from, and the provider's
refusals, without the engine (the real CLI runs them in test_accounts.py)."""

from __future__ import annotations

import json
from typing import Any, cast

import pulumi
import pytest
from pulumi.dynamic import ConfigureRequest
from pulumi.output import Unknown

from convai_provider import ConvaiCharacterModel, ConvaiPrivateModel
from convai_provider.api.accounts import (
    AccountError,
    alias_problem,
    declared_accounts,
    key_env,
)
from convai_provider.api.client import ConvaiClient
from convai_provider.api.resolver import sharing_one_key
from convai_provider.emulator.process import EmulatorProcess
from convai_provider.guards.fingerprints import fingerprint
from convai_provider.resources.character_model import CharacterModelProvider
from convai_provider.resources.private_model import PrivateModelProvider
from convai_provider.resources.provider_errors import ConvaiOperationError
from convai_provider.resources.settings import (
    PULUMI_HINTS,
    ConvaiSettings,
    InvalidSettingError,
    MissingApiKeyError,
    UnknownAccountError,
)
from convai_provider.resources.type_tokens import (
    CHARACTER_TYPE_TOKEN,
    TYPE_TOKEN,
    earlier_tokens,
)
from convai_stack.stack_config import StackConfigError, parse_stack_config
from testkit.convai import engine_secret, turbo
from testkit.engine import run_program

PARTNER_KEY = "convai-partner-key-91d0c2"
DEFAULT_KEY = "convai-default-key-5a7e13"


def config(accounts: Any) -> dict[str, Any]:
    return {
        "convai:apiKey": DEFAULT_KEY,
        "convai:baseUrl": "http://127.0.0.1:9/",
        "convai:accounts": accounts,
    }


@pytest.mark.parametrize("alias", ["partner", "p2", "team_a"])
def test_an_alias_is_a_lowercase_name(alias: str) -> None:
    assert alias_problem(alias) is None


@pytest.mark.parametrize("alias", ["Partner", "2p", "team-a", "", "default", "a" * 33, 7])
def test_other_aliases_are_refused_saying_the_form(alias: object) -> None:
    problem = alias_problem(alias)
    assert problem is not None
    assert "lowercase letter" in problem or "default" in problem


def test_accounts_are_read_as_the_engine_hands_them_over_json_text_in_a_secret() -> None:
    text = json.dumps({"partner": {"apiKey": PARTNER_KEY, "baseUrl": "https://p.example.com"}})
    assert declared_accounts(config(engine_secret(text))) == {
        "partner": {"apiKey": PARTNER_KEY, "baseUrl": "https://p.example.com"}
    }
    assert declared_accounts(config({"partner": {"apiKey": PARTNER_KEY}})) == {
        "partner": {"apiKey": PARTNER_KEY}
    }
    assert declared_accounts({}) == {}


@pytest.mark.parametrize(
    ("accounts", "said"),
    [
        ("not json", "must map each alias to its settings"),
        (["partner"], "must map each alias to its settings"),
        ({"Partner": {}}, "an alias must be a lowercase letter"),
        ({"partner": "key"}, "convai:accounts.partner must map"),
        ({"partner": {"apikey": PARTNER_KEY}}, "apikey is no setting of an account"),
    ],
)
def test_a_malformed_accounts_map_is_refused_without_quoting_a_value(
    accounts: Any, said: str
) -> None:
    with pytest.raises(AccountError) as refused:
        declared_accounts(config(accounts))
    assert said in str(refused.value)
    assert PARTNER_KEY not in str(refused.value)


def test_an_account_takes_its_key_and_url_else_the_default_accounts_url() -> None:
    accounts = {"partner": {"apiKey": PARTNER_KEY}, "own": {"apiKey": "convai-own-key-00b7f1"}}
    accounts["own"]["baseUrl"] = "http://127.0.0.1:10"
    partner = ConvaiSettings.resolve(config(accounts), {}, account="partner")
    assert (partner.api_key, partner.base_url) == (PARTNER_KEY, "http://127.0.0.1:9")
    assert partner.access.key_source == "convai:accounts.partner.apiKey"
    own = ConvaiSettings.resolve(config(accounts), {}, account="own")
    assert own.base_url == "http://127.0.0.1:10"
    default = ConvaiSettings.resolve(config(accounts), {})
    assert default.api_key == DEFAULT_KEY


def test_an_accounts_key_may_come_from_its_environment_variable() -> None:
    env = {key_env("partner"): PARTNER_KEY, "CONVAI_API_KEY": DEFAULT_KEY}
    settings = ConvaiSettings.resolve(config({"partner": {}}), env, account="partner")
    assert settings.api_key == PARTNER_KEY
    assert settings.access.key_source == "CONVAI_API_KEY_PARTNER"
    with pytest.raises(MissingApiKeyError) as missing:
        ConvaiSettings.resolve(config({"partner": {}}), {"CONVAI_API_KEY": DEFAULT_KEY}, "partner")
    assert "No Convai API key for account 'partner'" in str(missing.value)
    assert "CONVAI_API_KEY_PARTNER" in str(missing.value)


def test_an_accounts_bad_url_is_refused_naming_its_setting() -> None:
    accounts = {"partner": {"apiKey": PARTNER_KEY, "baseUrl": "http://convai.example.com"}}
    with pytest.raises(InvalidSettingError) as refused:
        ConvaiSettings.resolve(config(accounts), {}, account="partner")
    assert "convai:accounts.partner.baseUrl" in str(refused.value)


def test_an_undeclared_account_is_refused_naming_it_and_the_declared_ones() -> None:
    with pytest.raises(UnknownAccountError) as refused:
        ConvaiSettings.resolve(config({"partner": {}, "other": {}}), {}, account="nowhere")
    said = str(refused.value)
    assert "account 'nowhere' is not declared" in said
    assert "(declared: other, partner;" in said


def test_a_refused_accounts_key_names_where_to_set_it_again() -> None:
    assert "`pulumi config set --secret --path convai:accounts.partner.apiKey`" in (
        PULUMI_HINTS.refused("convai:accounts.partner.apiKey")
    )
    assert PULUMI_HINTS.refused("CONVAI_API_KEY_PARTNER").startswith(
        "The CONVAI-API-KEY from $CONVAI_API_KEY_PARTNER was refused"
    )


def configured(provider: Any, accounts: Any) -> Any:
    provider._config = config(accounts)
    return provider


def test_check_refuses_an_undeclared_account_and_passes_a_declared_one() -> None:
    provider = configured(PrivateModelProvider(), {"partner": {"apiKey": PARTNER_KEY}})
    refused = provider.check({}, turbo(account="nowhere"))
    assert [f.property for f in refused.failures] == ["account"]
    assert "account 'nowhere' is not declared" in refused.failures[0].reason
    assert "(declared: partner;" in refused.failures[0].reason
    assert provider.check({}, turbo(account="partner")).failures == []
    assert provider.check({}, turbo()).failures == []
    binding = configured(CharacterModelProvider(), {})
    failures = binding.check({}, {"char_id": "c1", "model_group_name": "m", "account": "x"})
    assert "(declared: none;" in failures.failures[0].reason


def test_a_move_to_another_account_replaces_creating_first_and_nothing_else_does() -> None:
    provider = PrivateModelProvider()
    olds = turbo()
    moved = provider.diff("turbo", olds, turbo(account="partner"))
    assert moved.replaces == ["account"]
    assert moved.delete_before_replace is False
    renamed = provider.diff("turbo", olds, turbo(model_name="llama-3.1-70b"))
    assert renamed.delete_before_replace is True
    assert provider.diff("turbo", olds, turbo()).changes is False


def test_a_bindings_account_never_changes() -> None:
    provider = CharacterModelProvider()
    binding = {"char_id": "c1", "model_group_name": "m"}
    with pytest.raises(ConvaiOperationError) as refused:
        provider.diff("c1", {**binding, "account": "partner"}, binding)
    assert "a character lives in one Convai account" in str(refused.value)
    assert provider.diff("c1", binding, binding).changes is False


def test_a_delete_in_an_account_the_stack_no_longer_declares_sends_nothing() -> None:
    provider = configured(PrivateModelProvider(), {})
    with pytest.raises(ConvaiOperationError) as refused:
        provider.delete("turbo", turbo(account="partner"))  # the URL is a closed port
    assert str(refused.value).startswith("Could not delete Convai private model 'turbo'")
    assert "account 'partner' is not declared" in str(refused.value)


def test_a_create_in_an_account_without_a_key_fails_in_one_sentence_naming_its_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A library program declaring a model of a keyless account (the stacks' program refuses
    it before any resource) got a traceback beside the error (#25's trial, F8)."""
    monkeypatch.delenv("CONVAI_API_KEY_PARTNER", raising=False)
    provider = configured(PrivateModelProvider(), {"partner": {}})
    with pytest.raises(ConvaiOperationError) as refused:
        provider.create(turbo(account="partner"))
    assert str(refused.value).startswith("Could not create Convai private model 'turbo'")
    assert "convai:accounts.partner.apiKey" in str(refused.value)


def bind(account: str | None) -> list[Any]:
    def program() -> None:
        model = ConvaiPrivateModel("beta", **turbo(account="partner"))
        ConvaiCharacterModel("ada", char_id="c1", model=model, account=account)

    return run_program(program)


def test_a_binding_given_its_model_takes_the_models_account_and_name() -> None:
    binding = next(r for r in bind(None) if r.name == "ada")
    assert binding.inputs["account"] == "partner"
    assert binding.inputs["model_group_name"] == "turbo"


def test_a_binding_in_another_account_than_its_model_is_refused_at_preview() -> None:
    with pytest.raises(Exception, match="declared in account 'other', but its model 'beta'"):
        bind("other")


def test_a_fallback_of_the_stack_in_another_account_than_the_characters_is_refused() -> None:
    models: list[dict[str, Any]] = [
        {"model_group_name": "spare", "endpoint": "llm"},
        {"model_group_name": "beta", "endpoint": "llm", "account": "partner", "characters": ["c"]},
    ]
    values = {
        "endpoints": [
            {
                "name": "llm",
                "kind": "external",
                "base_url": "https://llm.example.com/v1",
                "model_name": "llama-3.1-8b",
                "api_key_config": "llmKey",
            }
        ],
        "models": models,
        "fallbackModel": "spare",
    }
    with pytest.raises(StackConfigError) as refused:
        parse_stack_config(values)
    assert "convai-models:fallbackModel: 'spare' is in the default account" in str(refused.value)
    assert "the characters of beta live in another account" in str(refused.value)
    models[0]["account"] = "partner"
    assert parse_stack_config(values).fallbackModel == "spare"


def test_a_model_another_key_does_not_find_stays_naming_its_accounts_key_setting(
    convai: EmulatorProcess,
) -> None:
    provider = configured(PrivateModelProvider(), {"partner": {"apiKey": PARTNER_KEY}})
    provider._config["convai:baseUrl"] = convai.url
    props = turbo(account="partner") | {"convai_key_fingerprint": fingerprint("another-key-0c1")}
    with pytest.raises(ConvaiOperationError) as refused:
        provider.read("turbo", props)
    assert "Set convai:accounts.partner.apiKey (or $CONVAI_API_KEY_PARTNER) to the key" in str(
        refused.value
    )


# the adversary review (docs/accounts.md) -------------------------------------------------------


@pytest.mark.parametrize(
    ("accounts", "env"),
    [
        ({"partner": {"apiKey": DEFAULT_KEY}}, {}),  # a rotated key set on the wrong alias
        ({"partner": {}}, {"CONVAI_API_KEY_PARTNER": DEFAULT_KEY}),
    ],
)
def test_one_key_given_to_two_accounts_is_refused_naming_both_and_never_the_key(
    accounts: Any, env: dict[str, str]
) -> None:
    for account in ("partner", None):
        with pytest.raises(InvalidSettingError) as refused:
            ConvaiSettings.resolve(config(accounts), env, account=account)
        said = str(refused.value)
        assert said.startswith(
            "the default account (convai:apiKey (or $CONVAI_API_KEY)) and account 'partner' "
            "(convai:accounts.partner.apiKey (or $CONVAI_API_KEY_PARTNER)) are given the same "
            "Convai key"
        )
        assert DEFAULT_KEY not in said


def test_two_aliases_given_one_key_are_refused_and_their_models_never_sent() -> None:
    shared = "convai-shared-key-77aa01"
    provider = configured(
        PrivateModelProvider(), {"partner": {"apiKey": shared}, "other": {"apiKey": shared}}
    )
    with pytest.raises(ConvaiOperationError) as refused:  # the URL is a closed port
        provider.create(turbo(account="other", verify_endpoint=False))
    said = str(refused.value)
    assert said.startswith("Could not create Convai private model 'turbo': ")
    assert "account 'partner' (convai:accounts.partner.apiKey" in said
    assert "account 'other' (convai:accounts.other.apiKey" in said
    assert "are given the same Convai key" in said and shared not in said


def test_an_alias_named_value_is_an_alias_and_a_setting_named_value_is_refused() -> None:
    accounts = {"value": {}, "partner": {"apiKey": PARTNER_KEY}}
    assert set(declared_accounts(config(accounts))) == {"value", "partner"}
    as_engine_sends = config(engine_secret(json.dumps(accounts)))
    assert set(declared_accounts(as_engine_sends)) == {"value", "partner"}
    with pytest.raises(AccountError) as refused:
        declared_accounts(config({"partner": {"apiKey": PARTNER_KEY, "value": {}}}))
    assert "value is no setting of an account" in str(refused.value)


def test_a_bindings_account_unknown_at_preview_is_no_move() -> None:
    provider = CharacterModelProvider()
    binding = {"char_id": "c1", "model_group_name": "m", "account": "partner"}
    unknown = {**binding, "account": Unknown()}  # type: ignore[no-untyped-call]
    assert provider.diff("c1", binding, unknown).changes is False


def test_a_binding_and_its_model_in_other_accounts_are_refused_when_outputs_resolve() -> None:
    def program() -> None:
        model = ConvaiPrivateModel("beta", **turbo())
        account = pulumi.Output.from_input("partner")
        ConvaiCharacterModel("ada", char_id="c1", model=model, account=account)

    with pytest.raises(Exception, match="declared in account 'partner', but its model 'beta'"):
        run_program(program)


def test_a_subclass_of_a_resource_keeps_its_type_token() -> None:
    class TeamModel(ConvaiPrivateModel):
        pass

    class TeamBinding(ConvaiCharacterModel):
        pass

    def program() -> None:
        model = TeamModel("beta", **turbo())
        TeamBinding("ada", char_id="c1", model=model)

    tokens = {r.name: r.type for r in run_program(program)}
    assert tokens == {"beta": TYPE_TOKEN, "ada": CHARACTER_TYPE_TOKEN}
    # its resources in state from before, under the dynamic default token, move without a replace
    assert earlier_tokens(TeamModel, ConvaiPrivateModel) == ["pulumi-python:dynamic:Resource"]
    assert earlier_tokens(TeamBinding, ConvaiCharacterModel) == ["pulumi-python:dynamic:Resource"]
    assert earlier_tokens(ConvaiPrivateModel, ConvaiPrivateModel) == []
    with pytest.raises(TypeError, match="keeps its type token"):

        class Renamed(ConvaiPrivateModel, module="team", name="Model"):
            pass


def renamed(provider: Any, account: str | None = "team") -> Any:
    """`provider` after partner was renamed team: the same key under another alias."""
    return configured(provider, {"team": {"apiKey": PARTNER_KEY}} if account else {})


def test_an_alias_renamed_with_its_key_updates_the_model_in_place() -> None:
    provider = renamed(PrivateModelProvider())
    olds = turbo(account="partner") | {"convai_key_fingerprint": fingerprint(PARTNER_KEY)}
    diff = provider.diff("turbo", olds, turbo(account="team"))
    assert (diff.changes, diff.replaces) == (True, [])
    updated = provider.update("turbo", olds, turbo(account="team"))  # sends nothing: port 9
    assert updated.outs["account"] == "team"
    assert updated.outs["convai_key_fingerprint"] == olds["convai_key_fingerprint"]
    other = olds | {"convai_key_fingerprint": fingerprint("convai-another-key-2b9e0c")}
    assert provider.diff("turbo", other, turbo(account="team")).replaces == ["account"]


def test_an_alias_renamed_with_its_key_keeps_its_bindings() -> None:
    provider = renamed(CharacterModelProvider())
    binding = {"char_id": "c1", "model_group_name": "m"}
    olds = binding | {"account": "partner", "convai_key_fingerprint": fingerprint(PARTNER_KEY)}
    diff = provider.diff("c1", olds, binding | {"account": "team"})
    assert (diff.changes, diff.replaces) == (True, [])
    with pytest.raises(ConvaiOperationError, match="a character lives in one Convai account"):
        renamed(CharacterModelProvider(), None).diff(
            "c1", olds, binding
        )  # the default account: another key


def test_a_provider_resolves_its_settings_once_when_configured(
    convai: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every operation used to resolve the settings again, reading the environment again: one
    changed in between sent another key. configure() resolves every account once."""
    monkeypatch.setenv("CONVAI_API_KEY_PARTNER", PARTNER_KEY)
    provider = PrivateModelProvider()
    stack = {"convai:apiKey": DEFAULT_KEY, "convai:baseUrl": convai.url}
    provider.configure(ConfigureRequest(cast(Any, {**stack, "convai:accounts": {"partner": {}}})))
    monkeypatch.setenv("CONVAI_API_KEY_PARTNER", "convai-another-key-9d0e11")
    created = provider.create(turbo(account="partner", verify_endpoint=False))
    with ConvaiClient(PARTNER_KEY, convai.url) as client:
        assert client.list_models().find(created.id) is not None


def test_accounts_sharing_one_key_are_grouped_and_a_blank_key_is_no_key() -> None:
    """Accounts without a key are refused as missing, never as sharing the empty key."""
    keys = {None: "k-1", "partner": "k-1", "team_b": " ", "spare": " ", "own": "k-2", "x": "k-2"}
    assert sharing_one_key(keys) == [[None, "partner"], ["own", "x"]]
    assert sharing_one_key({None: "", "partner": ""}) == []
