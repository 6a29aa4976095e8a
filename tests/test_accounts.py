"""Several Convai accounts in one stack, through the real `pulumi` CLI on the emulator (where two
keys are two accounts): each model lands in its own account only, a moved model is registered in
its new account before it leaves the old, a rotated key shows no diff and is used next, destroy
empties both, and every mistake is refused at preview naming the alias and the accounts."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from convai_provider.api.client import ConvaiClient
from convai_provider.emulator.process import EmulatorProcess
from convai_provider.guards.fingerprints import is_fingerprint_of
from testkit.convai import CONVAI_KEY, live, new_character
from testkit.pulumi_cli import Event, PulumiProject
from testkit.stacks import declared_model as model
from testkit.stacks import external_endpoint, product_project

PARTNER_KEY = "convai-partner-key-4e1b9d"
ROTATED_PARTNER_KEY = "convai-partner-rotated-a07c35"
ENDPOINT_KEY = "sk-accounts-endpoint-2f8e61"
FALLBACK = "gpt-4o-mini"
EVERY_KEY = (CONVAI_KEY, PARTNER_KEY, ROTATED_PARTNER_KEY, ENDPOINT_KEY)


@pytest.fixture
def project(tmp_path: Path, cli_bin: Path, convai: EmulatorProcess) -> Iterator[PulumiProject]:
    """Both accounts' keys as the stack's secrets, none in the environment."""
    with product_project(tmp_path, cli_bin, {}, ENDPOINT_KEY) as proj:
        proj.set_secret("convai:apiKey", CONVAI_KEY)
        proj.set_secret("convai:accounts.partner.apiKey", PARTNER_KEY, path=True)
        yield proj
    seen = "\n".join([*proj.transcript, *proj.logs(), proj.run("stack", "export").stdout])
    for key in EVERY_KEY:
        assert key not in seen, "a key reached the CLI's output, its logs or state"


def stack(convai: EmulatorProcess, *models: dict[str, Any]) -> dict[str, Any]:
    return {
        "convai:baseUrl": convai.url,
        "convai-models:fallbackModel": FALLBACK,
        "convai-models:endpoints": [external_endpoint()],
        "convai-models:models": list(models),
    }


def model_of(convai: EmulatorProcess, key: str, char_id: str) -> str | None:
    with ConvaiClient(key, convai.url) as client:
        return client.get_character(char_id).model_group_name


def step(events: list[Event], kind: str, name: str, op: str) -> int:
    return next(i for i, e in enumerate(events) if (e.kind, e.name, e.op) == (kind, name, op))


def no_changes(project: PulumiProject) -> None:
    project.preview("--expect-no-changes")


def test_each_model_lands_in_its_own_account_a_move_registers_first_and_destroy_empties_both(
    project: PulumiProject, convai: EmulatorProcess
) -> None:
    ada = new_character(convai.url, key=PARTNER_KEY)
    project.configure(
        stack(
            convai,
            model("alpha"),
            model("beta", ada, account="partner"),
            model("gamma", account="partner"),
        )
    )
    project.up()
    assert set(live(convai, CONVAI_KEY)) == {"alpha"}
    assert set(live(convai, PARTNER_KEY)) == {"beta", "gamma"}
    assert model_of(convai, PARTNER_KEY, ada) == "beta"
    no_changes(project)
    resources = project.resources()
    assert resources["gamma"]["outputs"]["account"] == "partner"
    assert resources[f"character-{ada}"]["outputs"]["account"] == "partner"
    assert resources["alpha"]["outputs"].get("account") is None

    project.configure(
        stack(convai, model("alpha"), model("beta", ada, account="partner"), model("gamma"))
    )
    assert "replace" in project.preview().stdout
    events = project.up_with_events()
    registered = step(events, "resOutputsEvent", "gamma", "create-replacement")
    assert registered < step(events, "resourcePreEvent", "gamma", "delete-replaced")
    assert set(live(convai, CONVAI_KEY)) == {"alpha", "gamma"}
    assert set(live(convai, PARTNER_KEY)) == {"beta"}
    no_changes(project)

    project.destroy()
    assert live(convai, CONVAI_KEY) == {}
    assert live(convai, PARTNER_KEY) == {}
    assert model_of(convai, PARTNER_KEY, ada) == FALLBACK


def test_a_rotated_account_key_shows_no_diff_and_the_next_operation_uses_it(
    project: PulumiProject, convai: EmulatorProcess
) -> None:
    project.configure(stack(convai, model("alpha"), model("beta", account="partner")))
    project.up()
    convai.rotate_key(PARTNER_KEY, ROTATED_PARTNER_KEY)  # the old key opens nothing from now on
    project.set_secret("convai:accounts.partner.apiKey", ROTATED_PARTNER_KEY, path=True)
    no_changes(project)
    project.up()  # stores the new config, which refresh and destroy use
    project.refresh()
    beta = _with_secrets(project)["beta"]["outputs"]
    assert is_fingerprint_of(ROTATED_PARTNER_KEY, _plaintext(beta["convai_key_fingerprint"]))
    assert set(live(convai, ROTATED_PARTNER_KEY)) == {"beta"}
    project.configure(
        stack(convai, model("alpha"), model("beta", account="partner", display_name="Beta v2"))
    )
    project.up()
    assert live(convai, ROTATED_PARTNER_KEY)["beta"]["display_name"] == "Beta v2"
    no_changes(project)
    project.destroy()
    assert live(convai, ROTATED_PARTNER_KEY) == {}


def _with_secrets(project: PulumiProject) -> dict[str, dict[str, Any]]:
    """State with its secrets in plain text (each `{<sig>, plaintext: JSON}`); left out of the
    transcript the fixture scans, since it shows secrets on purpose."""
    exported = json.loads(project.run("stack", "export", "--show-secrets").stdout)
    project.transcript.pop()
    return {r["urn"].rsplit("::", 1)[-1]: r for r in exported["deployment"]["resources"]}


def _plaintext(secret: dict[str, str]) -> Any:
    return json.loads(secret["plaintext"])


def test_an_account_the_stack_does_not_declare_is_refused_at_preview(
    project: PulumiProject, convai: EmulatorProcess
) -> None:
    project.configure(stack(convai, model("alpha"), model("beta", account="nowhere")))
    failed = project.preview(check=False)
    assert failed.returncode != 0
    assert "account 'nowhere' is not declared" in failed.stdout + failed.stderr
    assert "(declared: partner;" in failed.stdout + failed.stderr
    project.configure(stack(convai, model("alpha", account="Partner-1")))
    failed = project.preview(check=False)
    assert failed.returncode != 0
    assert "models[0].account: must be a lowercase letter" in failed.stdout + failed.stderr
    assert live(convai, CONVAI_KEY) == {} and live(convai, PARTNER_KEY) == {}


def test_removing_an_account_a_model_uses_is_refused_and_a_delete_in_it_fails_naming_it(
    project: PulumiProject, convai: EmulatorProcess
) -> None:
    project.configure(stack(convai, model("alpha"), model("beta", account="partner")))
    project.up()
    project.run("config", "rm", "convai:accounts")
    failed = project.preview(check=False)
    assert failed.returncode != 0
    assert "account 'partner' is not declared" in failed.stdout + failed.stderr
    assert "(declared: none;" in failed.stdout + failed.stderr

    project.configure(stack(convai, model("alpha")))  # beta now only in state
    failed = project.up(check=False)
    assert failed.returncode != 0
    assert "Could not delete Convai private model 'beta'" in failed.stdout + failed.stderr
    assert "account 'partner' is not declared" in failed.stdout + failed.stderr
    assert "beta" in project.resources()
    assert set(live(convai, PARTNER_KEY)) == {"beta"}

    project.set_secret("convai:accounts.partner.apiKey", PARTNER_KEY, path=True)
    project.up()
    assert live(convai, PARTNER_KEY) == {}
    assert set(live(convai, CONVAI_KEY)) == {"alpha"}


def test_moving_a_model_that_has_characters_to_another_account_is_refused_at_preview(
    project: PulumiProject, convai: EmulatorProcess
) -> None:
    ada = new_character(convai.url, key=PARTNER_KEY)
    project.configure(stack(convai, model("beta", ada, account="partner")))
    project.up()
    project.configure(stack(convai, model("beta", ada)))
    failed = project.preview(check=False)
    assert failed.returncode != 0
    assert "a character lives in one Convai account" in failed.stdout + failed.stderr
    said = failed.stdout + failed.stderr
    assert "bound in account 'partner', and now declared in the default account" in said
    assert set(live(convai, PARTNER_KEY)) == {"beta"}
    assert model_of(convai, PARTNER_KEY, ada) == "beta"


def test_renaming_an_alias_with_its_key_updates_in_place_and_keeps_the_character(
    project: PulumiProject, convai: EmulatorProcess
) -> None:
    """Before, the model's create-before-delete met 409 in the same Convai account, and the
    binding's diff refused the rename as a move."""
    ada = new_character(convai.url, key=PARTNER_KEY)
    project.configure(stack(convai, model("beta", ada, account="partner")))
    project.up()
    registered = live(convai, PARTNER_KEY)["beta"]["created_at"]
    project.run("config", "rm", "convai:accounts")
    project.set_secret("convai:accounts.team.apiKey", PARTNER_KEY, path=True)
    project.configure(stack(convai, model("beta", ada, account="team")))
    events = project.up_with_events()
    ops = {(e.name, e.op) for e in events if e.kind == "resourcePreEvent"}
    assert ("beta", "update") in ops and (f"character-{ada}", "update") in ops
    assert not any(op in {"replace", "create-replacement", "delete-replaced"} for _, op in ops)
    assert live(convai, PARTNER_KEY)["beta"]["created_at"] == registered  # never re-registered
    assert model_of(convai, PARTNER_KEY, ada) == "beta"
    resources = project.resources()
    assert resources["beta"]["outputs"]["account"] == "team"
    assert resources[f"character-{ada}"]["outputs"]["account"] == "team"
    no_changes(project)


def test_one_key_given_to_two_accounts_is_refused_before_anything_is_registered(
    project: PulumiProject, convai: EmulatorProcess
) -> None:
    project.set_secret("convai:accounts.partner.apiKey", CONVAI_KEY, path=True)  # wrong alias
    project.configure(stack(convai, model("alpha"), model("beta", account="partner")))
    failed = project.up(check=False)
    said = failed.stdout + failed.stderr
    assert failed.returncode != 0
    assert "the default account (convai:apiKey (or $CONVAI_API_KEY)) and account 'partner'" in said
    assert "are given the same Convai key" in said
    assert live(convai, CONVAI_KEY) == {}
