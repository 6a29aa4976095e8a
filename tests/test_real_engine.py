"""The lifecycle through the real `pulumi` CLI: this project's program, on the local emulator."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from convai_provider.api.client import ConvaiClient
from convai_provider.api.wire import (
    REGISTER_PATH,
    RegisterRequest,
    UpdateRequest,
)
from convai_provider.emulator.process import EmulatorProcess
from testkit.convai import CONVAI_KEY, live, new_character, recovered, stored_endpoint_key
from testkit.processes import end_session, session_members
from testkit.pulumi_cli import Event, PulumiProject
from testkit.stacks import declared_model as model
from testkit.stacks import external_endpoint as endpoint
from testkit.stacks import product_project
from testkit.waiting import wait_for

ENDPOINT_KEY = "sk-e2e-endpoint-81c4d2"
ROTATED_KEY = "sk-e2e-rotated-3b9f70"
FALLBACK = "gpt-4o-mini"
MODEL_TYPE = "pulumi-python:dynamic/convai:PrivateModel"


@pytest.fixture
def project(tmp_path: Path, cli_bin: Path, convai: EmulatorProcess) -> Iterator[PulumiProject]:
    def no_orphans(command: str) -> None:
        orphans = convai.orphaned_characters(CONVAI_KEY)
        assert orphans == [], f"after `pulumi {command}`: characters on missing models: {orphans}"

    env = {"CONVAI_API_KEY": CONVAI_KEY}
    with product_project(tmp_path, cli_bin, env, ENDPOINT_KEY) as proj:
        proj.after_each_command = no_orphans
        yield proj


def stack(
    convai: EmulatorProcess,
    *models: dict[str, Any],
    endpoints: list[dict[str, Any]] | None = None,
    protect: bool = False,
) -> dict[str, Any]:
    return {
        "convai:baseUrl": convai.url,
        "convai-models:protectModels": protect,
        "convai-models:fallbackModel": FALLBACK,
        "convai-models:endpoints": endpoints or [endpoint()],
        "convai-models:models": list(models),
    }


def free_port() -> int:
    """A port nothing listens on (an endpoint that is down)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def models_of(convai: EmulatorProcess, chars: list[str]) -> list[str | None]:
    with ConvaiClient(CONVAI_KEY, convai.url) as client:
        return [client.get_character(c).model_group_name for c in chars]


def finished(events: list[Event], name: str, *ops: str) -> int:
    """Position of the event that says the step `op` on `name` completed."""
    return next(
        i
        for i, e in enumerate(events)
        if e.kind == "resOutputsEvent" and e.name == name and e.op in ops
    )


def started(events: list[Event], name: str, *ops: str) -> int:
    return next(
        i
        for i, e in enumerate(events)
        if e.kind == "resourcePreEvent" and e.name == name and e.op in ops
    )


def ops_on(events: list[Event], name: str) -> set[str]:
    return {e.op for e in events if e.name == name and e.kind == "resOutputsEvent"}


DELETES = ("delete", "delete-replaced")
CREATES = ("create", "create-replacement")


# A plan, an apply, and an empty plan -------------------------------------------------------------


def test_up_then_a_second_plan_is_empty(project: PulumiProject, convai: EmulatorProcess) -> None:
    # beta leaves display_name to Convai: what Convai fills in is never a perpetual diff
    beta = {k: v for k, v in model("beta", is_uncensored=True).items() if k != "display_name"}
    project.configure(stack(convai, model("alpha"), beta))
    project.up()
    assert set(live(convai)) == {"alpha", "beta"}
    assert live(convai)["beta"]["is_uncensored"] is True
    project.run("preview", "--expect-no-changes")
    assert ops_on(project.up_with_events(), "beta") == {"same"}
    outputs = project.outputs()
    assert outputs["models"]["alpha"]["model_name"] == "llama-3.1-8b"
    assert outputs["endpointKeys"] == {"alpha": ENDPOINT_KEY, "beta": ENDPOINT_KEY}


@pytest.mark.parametrize(
    ("typo", "meant"),
    [("convai-models:model", "convai-models:models"), ("convai:baseURL", "convai:baseUrl")],
)
def test_a_typo_in_a_stack_key_is_refused_and_plans_no_delete(
    project: PulumiProject, convai: EmulatorProcess, typo: str, meant: str
) -> None:
    declared = stack(convai, model("alpha"))
    project.configure(declared)
    project.up()
    mistyped = {(typo if k == meant else k): v for k, v in declared.items()}
    project.configure(mistyped)
    for refused in (project.preview(check=False), project.up(check=False)):
        said = refused.stdout + refused.stderr
        assert refused.returncode != 0
        assert f"{typo}: neither a setting of this project" in said
        assert f"did you mean {meant}?" in said
        assert "delete" not in said
    assert set(live(convai)) == {"alpha"}
    assert set(project.resources()) >= {"alpha"}


def test_an_unchecked_base_url_without_v1_is_a_warning_at_preview(
    project: PulumiProject, convai: EmulatorProcess
) -> None:
    rooted = {**endpoint(), "base_url": "https://llm.example.com"}

    def warned(*models: dict[str, Any], endpoints: list[dict[str, Any]] | None = None) -> str:
        project.configure(stack(convai, *models, endpoints=endpoints))
        done = project.preview()
        return done.stdout + done.stderr

    said = warned(model("alpha"), endpoints=[rooted])
    assert "warning: convai-models:models[0] (alpha): the base_url of endpoint 'llm'" in said
    assert "try https://llm.example.com/v1" in said
    assert "probably not the API root" not in warned(model("alpha"))  # ends in /v1
    # with the preflight on, it is the preflight that says so, at create
    assert "probably not the API root" not in warned(
        model("alpha", verify_endpoint=True), endpoints=[rooted]
    )


def test_a_create_waiting_for_its_endpoint_says_so_while_it_waits(
    project: PulumiProject, convai: EmulatorProcess, tmp_path: Path
) -> None:
    """A dynamic provider cannot attach a message to its resource (pulumi/pulumi#6065), but
    what it writes on stderr reaches the engine as it is written: the event log's timestamps
    show each line arrive during the wait, and the display shows it on the stack's row."""
    down = {**endpoint(), "base_url": f"http://127.0.0.1:{free_port()}/v1"}
    project.configure(
        {
            **stack(convai, model("alpha", verify_endpoint=True), endpoints=[down]),
            "convai:verifyTimeout": 25,
        }
    )
    log = tmp_path / "events.jsonl"
    done = project.up("--event-log", str(log), check=False)
    assert done.returncode != 0
    records = [json.loads(line) for line in log.read_text().splitlines()]

    def when(kind: str, text: str = "") -> list[int]:
        return [r["timestamp"] for r in records if kind in r and text in json.dumps(r[kind])]

    started = when("resourcePreEvent", "PrivateModel::alpha")[0]
    failed = when("resOpFailedEvent", "PrivateModel::alpha")[0]
    notices = when("diagnosticEvent", "alpha: waiting for its endpoint")
    assert len(notices) >= 3, notices
    assert all(started <= t <= failed for t in notices)
    assert len(set(notices)) >= 3  # spread over the wait, not delivered at its end
    progress = done.stdout.index("alpha: waiting for its endpoint (")
    assert progress < done.stdout.index("Could not create Convai private model 'alpha'")
    assert live(convai) == {}


# Drift ------------------------------------------------------------------------------------------


def test_refresh_shows_a_change_by_hand_and_up_puts_the_declaration_back(
    project: PulumiProject, convai: EmulatorProcess
) -> None:
    project.configure(stack(convai, model("alpha")))
    project.up()
    with ConvaiClient(CONVAI_KEY, convai.url) as client:
        client.update(UpdateRequest(model_group_name="alpha", display_name="Renamed by hand"))
    project.refresh()
    assert project.resources()["alpha"]["outputs"]["display_name"] == "Renamed by hand"
    drift = project.preview("--expect-no-changes", check=False)
    assert drift.returncode != 0
    assert "Renamed by hand" in drift.stdout and "alpha model" in drift.stdout
    project.up()
    assert live(convai)["alpha"]["display_name"] == "alpha model"
    project.run("preview", "--expect-no-changes")


def test_refresh_drops_a_model_deregistered_by_hand_and_up_registers_it_again(
    project: PulumiProject, convai: EmulatorProcess
) -> None:
    project.configure(stack(convai, model("alpha"), model("beta")))
    project.up()
    with ConvaiClient(CONVAI_KEY, convai.url) as client:
        client.deregister("beta")
    project.refresh()
    assert "beta" not in project.resources()
    events = project.up_with_events()
    assert ops_on(events, "beta") == {"create"}
    assert ops_on(events, "alpha") == {"same"}
    assert set(live(convai)) == {"alpha", "beta"}


# Updates, replacements and characters -----------------------------------------------------------


def test_display_name_and_key_change_in_place(
    project: PulumiProject, convai: EmulatorProcess
) -> None:
    project.configure(stack(convai, model("alpha")))
    project.up()
    created_at = live(convai)["alpha"]["created_at"]
    project.configure(stack(convai, model("alpha", display_name="Alpha v2")))
    project.set_secret("endpointKey", ROTATED_KEY)
    events = project.up_with_events()
    assert ops_on(events, "alpha") == {"update"}
    assert live(convai)["alpha"]["display_name"] == "Alpha v2"
    assert live(convai)["alpha"]["created_at"] == created_at  # the same model, not a new one
    assert stored_endpoint_key(convai, "alpha") == ROTATED_KEY


def test_a_replaced_model_moves_its_characters_to_the_fallback_first(
    project: PulumiProject, convai: EmulatorProcess
) -> None:
    a, b, c = (new_character(convai.url, name) for name in ("Ada", "Bo", "Cy"))
    project.configure(
        stack(
            convai,
            model("alpha", a, b),
            model("beta", c, endpoint="other"),
            endpoints=[endpoint(), endpoint("other", "qwen-7b")],
        )
    )
    project.up()
    assert models_of(convai, [a, b, c]) == ["alpha", "alpha", "beta"]
    project.configure(
        stack(
            convai,
            model("alpha", a, b),
            model("beta", c, endpoint="other"),
            endpoints=[endpoint(model_name="llama-70b"), endpoint("other", "qwen-7b")],
        )
    )
    events = project.up_with_events()
    assert "delete-replaced" in ops_on(events, "alpha")
    assert finished(events, "alpha", "delete-replaced") < started(events, "alpha", *CREATES)
    for char in (a, b):
        binding = f"character-{char}"
        assert finished(events, binding, *DELETES) < started(events, "alpha", *DELETES)
        assert finished(events, "alpha", *CREATES) < started(events, binding, *CREATES)
    assert ops_on(events, f"character-{c}") == {"same"}
    assert live(convai)["alpha"]["model_name"] == "llama-70b"
    assert models_of(convai, [a, b, c]) == ["alpha", "alpha", "beta"]


def test_a_removed_model_and_a_moved_character(
    project: PulumiProject, convai: EmulatorProcess
) -> None:
    a, b, c = (new_character(convai.url, name) for name in ("Ada", "Bo", "Cy"))
    project.configure(stack(convai, model("alpha", a, b), model("beta", c)))
    project.up()
    project.configure(stack(convai, model("alpha", a), model("beta", c, b)))
    events = project.up_with_events()
    assert ops_on(events, f"character-{b}") >= {"delete-replaced", "create-replacement"}
    assert models_of(convai, [a, b, c]) == ["alpha", "beta", "beta"]
    project.configure(stack(convai, model("alpha", a)))
    events = project.up_with_events()
    for char in (b, c):
        binding = f"character-{char}"
        assert finished(events, binding, "delete") < started(events, "beta", "delete")
    assert set(live(convai)) == {"alpha"}
    assert models_of(convai, [a, b, c]) == ["alpha", FALLBACK, FALLBACK]
    events = project.destroy_with_events()
    assert finished(events, f"character-{a}", "delete") < started(events, "alpha", "delete")
    assert live(convai) == {}
    assert models_of(convai, [a, b, c]) == [FALLBACK] * 3


# protect and adoption ---------------------------------------------------------------------------


def test_a_protected_model_is_not_deleted_until_protect_is_lifted(
    project: PulumiProject, convai: EmulatorProcess
) -> None:
    project.configure(stack(convai, model("alpha"), model("beta"), protect=True))
    project.up()
    project.configure(stack(convai, model("alpha"), protect=True))
    refused = project.up(check=False)
    assert refused.returncode != 0
    assert "protected" in refused.stdout + refused.stderr
    assert set(live(convai)) == {"alpha", "beta"}
    refused = project.destroy(check=False)
    assert refused.returncode != 0 and set(live(convai)) == {"alpha", "beta"}
    project.configure(stack(convai, model("alpha"), model("beta"), protect=False))
    project.up()
    project.destroy()
    assert live(convai) == {}


def test_state_unprotect_lifts_protect_for_destroy(
    project: PulumiProject, convai: EmulatorProcess
) -> None:
    project.configure(stack(convai, model("alpha"), protect=True))
    project.up()
    urn = project.resources()["alpha"]["urn"]
    project.run("state", "unprotect", urn, "--yes")
    project.destroy()
    assert live(convai) == {}


def test_adopt_existing_takes_over_a_model_registered_elsewhere(
    project: PulumiProject, convai: EmulatorProcess
) -> None:
    with ConvaiClient(CONVAI_KEY, convai.url) as client:
        client.register(
            RegisterRequest(
                model_group_name="alpha",
                model_name="llama-3.1-8b",
                api_key="sk-old",
                is_uncensored=False,
                display_name="Legacy",
            )
        )
    project.configure(stack(convai, model("alpha")))
    refused = project.up(check=False)
    assert refused.returncode != 0
    assert "adopt_existing" in refused.stdout
    project.configure(stack(convai, model("alpha", adopt_existing=True)))
    adopted = project.up()
    assert (
        "adopted Convai private model alpha (updated: display_name, base_url, api_key)"
        in adopted.stdout
    )
    assert "registered Convai private model alpha" not in adopted.stdout
    assert live(convai)["alpha"]["display_name"] == "alpha model"
    assert stored_endpoint_key(convai, "alpha") == ENDPOINT_KEY
    project.run("preview", "--expect-no-changes")


def test_pulumi_import_of_a_dynamic_resource_fails_and_adopt_existing_is_the_way(
    project: PulumiProject, convai: EmulatorProcess
) -> None:
    with ConvaiClient(CONVAI_KEY, convai.url) as client:
        client.register(
            RegisterRequest(
                model_group_name="alpha", model_name="m", api_key="k", is_uncensored=False
            )
        )
    project.configure(stack(convai))
    project.up()
    imported = project.run("import", MODEL_TYPE, "alpha", "alpha", "--yes", check=False)
    assert imported.returncode != 0
    # pulumi/pulumi#16175: the engine reads an import with no properties, so the SDK finds no
    # pickled provider. When this stops failing, docs/resources.md's adoption section needs a look.
    assert "KeyError: '__provider'" in imported.stdout + imported.stderr
    assert "alpha" not in project.resources()
    assert set(live(convai)) == {"alpha"}  # nothing was changed in Convai


# Secrets ----------------------------------------------------------------------------------------


def test_state_holds_the_endpoint_key_only_as_a_secret_and_the_convai_key_nowhere(
    project: PulumiProject, convai: EmulatorProcess
) -> None:
    a = new_character(convai.url)
    project.configure(stack(convai, model("alpha", a)))
    project.set_secret("convai:apiKey", CONVAI_KEY)
    project.env.pop("CONVAI_API_KEY")
    project.up()
    project.refresh()
    project.configure(stack(convai, model("alpha", a, display_name="Alpha v2")))
    project.up()
    exported = project.run("stack", "export").stdout
    assert ENDPOINT_KEY not in exported
    assert CONVAI_KEY not in exported
    state = project.resources()["alpha"]
    assert state["outputs"]["api_key"]["4dabf18193072939515e22adb298388d"] == (
        "1b47061264138c4ac30d75fd1eb44270"
    )
    assert state["inputs"]["api_key"]["4dabf18193072939515e22adb298388d"] == (
        "1b47061264138c4ac30d75fd1eb44270"
    )
    project.destroy()
    seen = "\n".join([*project.transcript, *project.logs()])
    assert ENDPOINT_KEY not in seen
    assert CONVAI_KEY not in seen


# An interrupted up ------------------------------------------------------------------------------


def test_an_interrupted_up_is_settled_from_its_pending_creates(
    project: PulumiProject, convai: EmulatorProcess, tmp_path: Path
) -> None:
    project.configure(stack(convai, model("alpha"), model("beta"), model("gamma")))
    convai.inject(path=REGISTER_PATH, latency_ms=2000)
    cli = project.start("up", "--yes", "--skip-preview")
    wait_for(lambda: convai.request_counts().get(REGISTER_PATH, 0) >= 3, "three registers")
    cli.kill()  # the CLI dies; its provider finishes the registers already sent
    cli.communicate(timeout=60)
    wait_for(lambda: len(live(convai)) == 3, "the registers to land")
    end_session(cli.pid)  # the orphaned provider and language host, in groups of their own
    assert session_members(cli.pid) == []
    convai.clear_faults()

    pending = project.pending_operations()
    assert sorted(op["resource"]["inputs"]["model_group_name"] for op in pending) == [
        "alpha",
        "beta",
        "gamma",
    ]
    assert {op["type"] for op in pending} == {"creating"}
    project.run("cancel", "--yes")  # the killed CLI's lock

    refused = project.up(check=False)
    assert refused.returncode != 0
    assert "HTTP 409" in refused.stdout and "convai-models recover" in refused.stdout
    assert "Traceback" not in refused.stdout  # the sentence alone, not the provider's frames
    assert "error: Could not create Convai private model 'alpha'" in refused.stdout
    assert "convai_provider." not in refused.stdout  # no class path before the sentence
    assert set(live(convai)) == {"alpha", "beta", "gamma"}  # nothing taken over, nothing lost

    recover = recovered(project, convai, tmp_path)
    assert recover.returncode == 0, recover.stderr
    assert recover.stderr.count("in state") == 3, recover.stderr
    project.refresh()
    assert project.pending_operations() == []
    assert all(project.resources()[n]["outputs"]["created_at"] for n in ("alpha", "beta", "gamma"))
    project.run("preview", "--expect-no-changes")
    project.destroy()
    assert live(convai) == {}
