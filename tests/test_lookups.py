"""Lookups from a program (convai_provider/resources/lookups.py): under mocks, then through the
real CLI on the emulator with the example program of docs/lookups.md."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pulumi
import pytest

from convai_provider.api.client import ConvaiClient
from convai_provider.api.wire import (
    LIST_PATH,
    PrivateModel,
    RegisterRequest,
)
from convai_provider.emulator.process import EmulatorProcess
from convai_provider.resources import lookups
from testkit.convai import CONVAI_KEY, new_character
from testkit.engine import ProgramRun, run_program_fully
from testkit.hostile_server import http_answer, serve_answer
from testkit.pulumi_cli import ROOT, CommandFailedError, PulumiProject

EXAMPLE = ROOT / "docs" / "examples" / "bind-to-shared-model"
SHARED = RegisterRequest(
    model_group_name="team-llama",
    model_name="llama-3.1-70b",
    api_key="sk-other-team-endpoint-4e1b",
    is_uncensored=False,
    display_name="Llama of the platform team",
)
FALLBACK = "gpt-4o-mini"


def program_config(url: str, key: str = CONVAI_KEY) -> dict[str, str]:
    return {"convai:apiKey": key, "convai:baseUrl": url}


def run(
    build: Callable[[], Any], url: str, *, preview: bool = True, key: str = CONVAI_KEY
) -> ProgramRun:
    return run_program_fully(
        build, config=program_config(url, key), secret_keys=["convai:apiKey"], preview=preview
    )


def exported(**outputs: Callable[[], pulumi.Output[Any]]) -> Callable[[], None]:
    def build() -> None:
        for name, lookup in outputs.items():
            pulumi.export(name, lookup())

    return build


@pytest.fixture
def shared(convai: EmulatorProcess) -> EmulatorProcess:
    with ConvaiClient(CONVAI_KEY, convai.url) as client:
        client.register(SHARED)
    return convai


# under mocks ------------------------------------------------------------------------------------


def test_lookups_answer_in_preview_with_plain_results_that_carry_no_key(
    shared: EmulatorProcess,
) -> None:
    char_id = new_character(shared.url, "Ada")
    done = run(
        exported(
            model=lambda: lookups.private_model("team-llama"),
            models=lookups.private_models,
            character=lambda: lookups.character_model(char_id),
        ),
        shared.url,
    )
    assert done.exports["model"]["model_name"] == "llama-3.1-70b"
    assert done.exports["model"]["display_name"] == "Llama of the platform team"
    assert [m["model_group_name"] for m in done.exports["models"]] == ["team-llama"]
    assert done.exports["character"] == FALLBACK  # a new character's model in the emulator
    assert done.secret_exports == set()
    shown = json.dumps(done.exports)
    assert CONVAI_KEY not in shown
    assert SHARED.api_key not in shown


PARTNER_KEY = "convai-partner-lookups-7d3e"
PARTNER_MODEL = RegisterRequest(
    model_group_name="partner-llama",
    model_name="llama-3.1-8b",
    api_key="sk-partner-endpoint-91c2",
    is_uncensored=False,
)


def with_partner(url: str, partner: dict[str, str]) -> dict[str, str]:
    return {**program_config(url), "convai:accounts": json.dumps({"partner": partner})}


def test_a_lookup_reads_an_account_of_the_stack_by_its_alias(
    shared: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stack with several accounts looks up a model of its partner account as its resources
    name it (account=), its key read as the provider reads it: the stack's, else the env's."""
    with ConvaiClient(PARTNER_KEY, shared.url) as client:
        client.register(PARTNER_MODEL)
    build = exported(
        partner=lambda: lookups.private_models(account="partner"),
        own=lookups.private_models,
        one=lambda: lookups.private_model("partner-llama", account="partner"),
    )
    secret = ["convai:apiKey", "convai:accounts"]
    for partner, env in (({"apiKey": PARTNER_KEY}, None), ({}, PARTNER_KEY)):
        if env is not None:
            monkeypatch.setenv("CONVAI_API_KEY_PARTNER", env)
        config = with_partner(shared.url, partner)
        done = run_program_fully(build, config=config, secret_keys=secret, preview=True)
        assert [m["model_group_name"] for m in done.exports["partner"]] == ["partner-llama"]
        assert [m["model_group_name"] for m in done.exports["own"]] == ["team-llama"]
        assert done.exports["one"]["model_name"] == "llama-3.1-8b"
        assert PARTNER_KEY not in json.dumps(done.exports)
        assert done.secret_exports == set()

    missing = exported(model=lambda: lookups.private_model("team-llama", account="partner"))
    with pytest.raises(pulumi.RunError) as refused:
        run_program_fully(missing, config=with_partner(shared.url, {}), secret_keys=secret)
    assert f"no private model 'team-llama' in the account at {shared.url} (account 'partner') " in (
        str(refused.value)
    )


def test_a_lookup_of_an_account_the_stack_does_not_declare_names_the_declared_ones(
    shared: EmulatorProcess,
) -> None:
    build = exported(models=lambda: lookups.private_models(account="nowhere"))
    config = with_partner(shared.url, {"apiKey": PARTNER_KEY})
    with pytest.raises(pulumi.RunError) as refused:
        run_program_fully(build, config=config, secret_keys=["convai:accounts"])
    assert "account 'nowhere' is not declared in this stack's convai:accounts (declared: " in (
        str(refused.value)
    )
    assert PARTNER_KEY not in str(refused.value)
    both = exported(models=lambda: lookups.private_models(account="partner", api_key="k-1"))
    with pytest.raises(pulumi.RunError, match="give account alone"):
        run_program_fully(both, config=config)


def test_a_missing_model_stops_the_program_with_one_line_naming_what_the_account_holds(
    shared: EmulatorProcess,
) -> None:
    with pytest.raises(pulumi.RunError) as refused:
        run(exported(model=lambda: lookups.private_model("team-llamma")), shared.url)
    message = str(refused.value)
    assert "\n" not in message
    assert "no private model 'team-llamma'" in message
    assert "it holds 1: team-llama" in message


def test_a_refused_key_stops_the_program_naming_the_setting(shared: EmulatorProcess) -> None:
    shared.inject(path=LIST_PATH, status=401, message="Invalid API key")
    with pytest.raises(pulumi.RunError) as refused:
        run(exported(models=lookups.private_models), shared.url)
    message = str(refused.value)
    assert "\n" not in message
    assert "convai:apiKey was refused" in message
    assert CONVAI_KEY not in message


def test_a_refused_key_given_to_the_lookup_is_named_as_its_argument(
    shared: EmulatorProcess,
) -> None:
    """A key passed to the lookup is no stack setting: the refusal must not send its user to
    `pulumi config set`."""
    shared.inject(path=LIST_PATH, status=401, message="Invalid API key")
    with pytest.raises(pulumi.RunError) as refused:
        run(
            exported(models=lambda: lookups.private_models(api_key="convai-other-key-1")),
            shared.url,
        )
    message = str(refused.value)
    assert "the lookup's api_key was refused" in message
    assert "convai:apiKey" not in message and "pulumi config" not in message


def test_a_base_url_given_to_the_lookup_is_named_as_its_argument(shared: EmulatorProcess) -> None:
    with pytest.raises(pulumi.RunError) as refused:
        run(
            exported(
                models=lambda: lookups.private_models(
                    api_key="convai-other-key-1", base_url="http://convai.example.com/v1"
                )
            ),
            shared.url,
        )
    message = str(refused.value)
    assert message.startswith("the lookup's base_url 'http://convai.example.com/v1'")
    assert "convai:baseUrl" not in message


def test_no_key_at_all_says_where_to_set_one(
    shared: EmulatorProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CONVAI_API_KEY", raising=False)
    with pytest.raises(pulumi.RunError, match="No Convai API key: run `pulumi config set"):
        run_program_fully(
            exported(models=lookups.private_models), config={"convai:baseUrl": shared.url}
        )


def test_a_character_whose_reply_names_no_model_is_unknown_with_a_warning(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    warnings: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *_a, **_k: warnings.append(message))
    reply = {"character_id": "c1", "character_name": "Ada", "timestamp": "2026-01-01"}
    with serve_answer(http_answer(200, reply)) as url:
        done = run(exported(character=lambda: lookups.character_model("c1")), url)
    assert done.exports["character"] is None
    assert len(warnings) == 1
    assert "the model of character c1 is unknown" in warnings[0]


def test_a_list_reply_not_understood_is_an_error_never_an_empty_account() -> None:
    not_a_list = http_answer(200, {"status": "success", "count": 0})
    with serve_answer(not_a_list) as url, pytest.raises(pulumi.RunError) as refused:
        run(exported(models=lookups.private_models), url)
    assert "\n" not in str(refused.value)
    assert "list" in str(refused.value)


def test_a_long_account_is_named_in_part() -> None:
    listing = [PrivateModel(model_group_name=f"m{i}", model_name="x") for i in range(25)]
    message = lookups._not_found("nope", "https://api.convai.com", listing)
    assert "it holds 25: m0, m1" in message
    assert "m9 and 15 more" in message
    assert "m10" not in message


# through the real CLI ---------------------------------------------------------------------------


@pytest.fixture
def example(tmp_path: Path, cli_bin: Path, shared: EmulatorProcess) -> Iterator[PulumiProject]:
    project = PulumiProject(tmp_path, cli_bin, {}, main=EXAMPLE)
    project.set_secret("convai:apiKey", CONVAI_KEY)
    yield project
    project.end_started()


def configure_example(project: PulumiProject, url: str, model: str, *chars: str) -> None:
    project.configure(
        {"convai:baseUrl": url, "lookups:sharedModel": model, "lookups:characters": list(chars)}
    )


def test_the_example_binds_characters_to_a_model_owned_elsewhere(
    example: PulumiProject, shared: EmulatorProcess
) -> None:
    chars = [new_character(shared.url, "Ada"), new_character(shared.url, "Grace")]
    configure_example(example, shared.url, "team-llama", *chars)
    preview = example.preview()
    assert "llama-3.1-70b" in preview.stdout  # the lookup answered in preview
    example.up()
    outputs = example.outputs()
    assert outputs["sharedModel"]["model_name"] == "llama-3.1-70b"
    assert outputs["accountModels"] == 1
    assert [outputs[f"before-{c}"] for c in chars] == [FALLBACK, FALLBACK]
    with ConvaiClient(CONVAI_KEY, shared.url) as client:
        assert [client.get_character(c).model_group_name for c in chars] == [
            "team-llama",
            "team-llama",
        ]
    example.preview("--expect-no-changes")
    example.destroy()
    with ConvaiClient(CONVAI_KEY, shared.url) as client:
        assert [m.model_group_name for m in client.list_models().models] == ["team-llama"]
        assert [client.get_character(c).model_group_name for c in chars] == [FALLBACK] * 2
    everything = json.dumps(example.export()) + "\n".join(example.transcript)
    assert CONVAI_KEY not in everything


def test_the_example_stops_in_preview_with_one_line_when_the_model_is_missing(
    example: PulumiProject, shared: EmulatorProcess
) -> None:
    configure_example(example, shared.url, "team-llamma", new_character(shared.url, "Ada"))
    with pytest.raises(CommandFailedError) as failed:
        example.preview()
    output = str(failed.value)
    assert "no private model 'team-llamma'" in output
    assert "Traceback" not in output
    assert example.resources() == {}


def test_the_example_stops_in_preview_with_one_line_when_the_key_is_refused(
    example: PulumiProject, shared: EmulatorProcess
) -> None:
    configure_example(example, shared.url, "team-llama", new_character(shared.url, "Ada"))
    shared.inject(path=LIST_PATH, status=403, message="Forbidden")
    with pytest.raises(CommandFailedError) as failed:
        example.preview()
    output = str(failed.value)
    assert "convai:apiKey was refused" in output
    assert "Traceback" not in output
    assert CONVAI_KEY not in output


# an account of convai:accounts -------------------------------------------------------------------


def test_an_accounts_url_is_sent_that_accounts_key_and_never_the_default_one() -> None:
    recorder = http_answer(200, {"status": "success", "models": []})
    with serve_answer(recorder) as partner_url:
        partner = {"apiKey": PARTNER_KEY, "baseUrl": partner_url}
        done = run_program_fully(
            exported(listed=lambda: lookups.private_models(account="partner")),
            config=with_partner("http://127.0.0.1:9", partner),
        )
    assert done.exports["listed"] == []
    sent = b"".join(recorder.requests)
    assert PARTNER_KEY.encode() in sent and CONVAI_KEY.encode() not in sent


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"account": "nowhere"}, "account 'nowhere' is not declared"),
        ({"account": "Partner"}, "a lookup's account must be a lowercase letter"),
        ({"account": "partner", "base_url": "http://127.0.0.1:9"}, "give account alone"),
    ],
)
def test_a_lookups_account_that_cannot_be_read_stops_the_program(
    given: dict[str, Any], said: str
) -> None:
    with pytest.raises(pulumi.RunError, match=said):
        run_program_fully(
            exported(listed=lambda: lookups.private_models(**given)),
            config=with_partner("http://127.0.0.1:9", {"apiKey": PARTNER_KEY}),
        )


def test_a_field_convai_does_not_document_never_reaches_a_lookups_plain_result() -> None:
    """A proxy or a later API that echoes a key in the list: the lookup's result is plain (not
    secret) and may be exported into state, so only the documented fields are kept."""
    echoed = {"model_group_name": "m", "model_name": "x", "api_key": "sk-echoed-endpoint-91ab"}
    listing = http_answer(200, {"status": "success", "models": [echoed | {"key": CONVAI_KEY}]})
    with serve_answer(listing) as url:
        done = run(
            exported(one=lambda: lookups.private_model("m"), every=lookups.private_models),
            url,
        )
    shown = json.dumps(done.exports)
    assert "sk-echoed-endpoint-91ab" not in shown and CONVAI_KEY not in shown
    assert set(done.exports["one"]) == set(PrivateModel.model_fields)
