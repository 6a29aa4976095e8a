"""Settling an interrupted `pulumi up`'s pending creates from the exported state."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from convai_provider import CHARACTER_TYPE_TOKEN, TYPE_TOKEN
from convai_provider.api.wire import PrivateModel
from convai_stack.commands.recovery import RecoveryError, recover_pending_creates

STACK_URN = "urn:pulumi:prod::convai-models::pulumi:pulumi:Stack::convai-models-prod"
SECRET = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "ciphertext": "x"}


def model_inputs(group: str, **changes: Any) -> dict[str, Any]:
    return {
        "__provider": SECRET,
        "api_key": SECRET,
        "model_group_name": group,
        "model_name": "llama-3.1-8b",
        "base_url": "https://llm.example.com/v1",
        "display_name": f"{group} model",
        "is_uncensored": False,
        "adopt_existing": False,
        "verify_endpoint": True,
        **changes,
    }


def pending(kind: str, name: str, inputs: dict[str, Any], op: str = "creating") -> dict[str, Any]:
    return {
        "type": op,
        "resource": {
            "urn": f"urn:pulumi:prod::convai-models::{kind}::{name}",
            "custom": True,
            "type": kind,
            "inputs": inputs,
            "parent": STACK_URN,
        },
    }


def exported(*operations: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": 3,
        "deployment": {
            "resources": [{"urn": STACK_URN, "type": "pulumi:pulumi:Stack"}],
            "pending_operations": list(operations),
        },
    }


def listed(group: str, **changes: Any) -> PrivateModel:
    fields = {
        "model_group_name": group,
        "model_name": "llama-3.1-8b",
        "base_url": "https://llm.example.com/v1",
        "display_name": f"{group} model",
        "is_uncensored": False,
        "category": "Private",
        "created_at": "2026-11-29T10:00:00Z",
        **changes,
    }
    return PrivateModel.model_validate(fields)


def test_a_model_convai_holds_as_declared_becomes_a_resource() -> None:
    state = exported(pending(TYPE_TOKEN, "alpha", model_inputs("alpha")))
    recovery = recover_pending_creates(state, {"alpha": listed("alpha")})
    assert recovery.adopted == ["alpha"] and recovery.settled
    deployment = recovery.state["deployment"]
    assert deployment["pending_operations"] == []
    created = deployment["resources"][-1]
    assert created["id"] == "alpha"
    assert created["outputs"] == created["inputs"] == model_inputs("alpha")
    assert created["outputs"]["__provider"] == SECRET  # ciphertext copied, never decrypted
    assert state["deployment"]["pending_operations"]  # the input is left as it was


def test_a_model_convai_does_not_hold_is_dropped_for_the_next_up() -> None:
    recovery = recover_pending_creates(
        exported(pending(TYPE_TOKEN, "alpha", model_inputs("alpha"))), {}
    )
    assert recovery.dropped == ["alpha"] and recovery.settled
    assert recovery.state["deployment"]["pending_operations"] == []
    assert len(recovery.state["deployment"]["resources"]) == 1


@pytest.mark.parametrize(
    "difference",
    [
        {"model_name": "qwen-7b"},
        {"base_url": "https://elsewhere.example.com/v1"},
        {"is_uncensored": True},
        {"display_name": "Someone else's"},
    ],
)
def test_a_different_model_of_that_name_is_a_conflict_naming_what_differs(
    difference: dict[str, Any],
) -> None:
    operation = pending(TYPE_TOKEN, "alpha", model_inputs("alpha"))
    recovery = recover_pending_creates(
        exported(operation), {"alpha": listed("alpha", **difference)}
    )
    (field,) = difference
    assert list(recovery.conflicts) == ["alpha"] and not recovery.settled
    (reason,) = recovery.conflicts["alpha"]
    assert reason.startswith(f"{field}: declared ")
    assert reason.endswith(f"Convai has {difference[field]!r}")
    assert recovery.state["deployment"]["pending_operations"] == [operation]
    assert len(recovery.state["deployment"]["resources"]) == 1


def test_a_record_whose_fields_are_not_a_declaration_is_a_conflict() -> None:
    operation = pending(TYPE_TOKEN, "alpha", model_inputs("alpha", display_name=["not", "a"]))
    recovery = recover_pending_creates(exported(operation), {"alpha": listed("alpha")})
    assert recovery.conflicts == {"alpha": ["the record is not a valid declaration"]}


def test_bindings_are_dropped_and_other_operations_kept() -> None:
    binding = pending(CHARACTER_TYPE_TOKEN, "character-c1", {"char_id": "c1"})
    foreign = pending("kubernetes:apps/v1:Deployment", "vllm", {})
    deleting = pending(TYPE_TOKEN, "old", model_inputs("old"), op="deleting")
    recovery = recover_pending_creates(exported(binding, foreign, deleting), {})
    assert recovery.dropped == ["character-c1"]
    assert recovery.state["deployment"]["pending_operations"] == [foreign, deleting]


@pytest.mark.parametrize(
    "document",
    [[], {"deployment": "x"}, {"deployment": {"pending_operations": [{"type": "creating"}]}}],
)
def test_something_else_than_an_export_is_refused(document: Any) -> None:
    with pytest.raises(RecoveryError):
        recover_pending_creates(document, {})


def run_recover(state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            *(sys.executable, "-m", "convai_provider", "recover", "--stack", "prod"),
            *("--base-url", "http://127.0.0.1:9", "--api-key", "k", "--state", str(state)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_command_fails_in_one_line_naming_the_fix(tmp_path: Path) -> None:
    state = tmp_path / "state.json"
    state.write_text(json.dumps(exported(pending(TYPE_TOKEN, "alpha", model_inputs("alpha")))))
    done = run_recover(state)
    assert done.returncode == 2  # nothing listens on port 9: one error line, no traceback
    assert done.stderr.startswith("error: ") and "Traceback" not in done.stderr
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    done = run_recover(garbage)
    assert done.returncode == 2
    assert "pulumi stack export" in done.stderr


def test_a_replacement_takes_the_place_of_the_resource_pending_replacement() -> None:
    """A CLI killed during a delete-before-replace: Convai deleted the old model, state keeps it
    as `pendingReplacement` next to the replacement's pending create (measured through the
    real CLI in test_state_integrity.py). Never two resources of one URN."""
    urn = f"urn:pulumi:prod::convai-models::{TYPE_TOKEN}::alpha"
    old = {"urn": urn, "type": TYPE_TOKEN, "id": "alpha", "pendingReplacement": True}
    binding = {"urn": "urn:pulumi:prod::convai-models::x::after", "type": "x"}
    state = exported(pending(TYPE_TOKEN, "alpha", model_inputs("alpha")))
    state["deployment"]["resources"] += [old, binding]
    recovery = recover_pending_creates(state, {"alpha": listed("alpha")})
    assert recovery.adopted == ["alpha"] and recovery.settled
    resources = recovery.state["deployment"]["resources"]
    assert [r["urn"] for r in resources].count(urn) == 1
    assert resources[1]["id"] == "alpha" and "pendingReplacement" not in resources[1]
    assert resources[2] == binding  # in place: what follows it still follows it


def test_a_live_resource_of_the_same_urn_is_left_to_a_person() -> None:
    urn = f"urn:pulumi:prod::convai-models::{TYPE_TOKEN}::alpha"
    state = exported(pending(TYPE_TOKEN, "alpha", model_inputs("alpha")))
    state["deployment"]["resources"].append({"urn": urn, "type": TYPE_TOKEN, "id": "alpha"})
    recovery = recover_pending_creates(state, {"alpha": listed("alpha")})
    assert not recovery.settled and "not pending replacement" in recovery.conflicts["alpha"][0]
    assert [r["urn"] for r in recovery.state["deployment"]["resources"]].count(urn) == 1
