"""State written before the package re-cut keeps working with the real CLI.

Pulumi pickles each dynamic provider into state by reference to its class's module path, and
unpickles the one in state for `refresh` and `destroy`. `fixtures/state-before-recut` is a stack
that convai-models 0.1.0 (commit 6eaaf4e) wrote (`pulumi stack export`, a model and a character
bound to it), whose providers name `convai_provider.provider` and
`convai_provider.character_provider`: those paths stay importable, and this test holds them to
it.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from convai_provider.api.client import ConvaiClient
from convai_provider.api.wire import RegisterRequest, UpdateRequest
from convai_provider.emulator.process import EmulatorProcess
from testkit.convai import CONVAI_KEY, live, new_character
from testkit.pulumi_cli import PulumiProject

FIXTURE = Path(__file__).parent / "fixtures" / "state-before-recut"
OLD_PATHS = {
    "legacy": b"convai_provider.provider",
    "character-": b"convai_provider.character_provider",
}


def recreate_in_convai(convai: EmulatorProcess) -> str:
    """What the old stack made, in this test's emulator: the model and a character on it."""
    with ConvaiClient(CONVAI_KEY, convai.url) as client:
        client.register(
            RegisterRequest(
                model_group_name="legacy",
                model_name="llama-3.1-8b",
                api_key="sk-old-state-endpoint-4e1a",
                is_uncensored=False,
                display_name="Legacy model",
                base_url="https://llm.example.com/v1",
            )
        )
        char_id = new_character(convai.url)
        client.set_character_model(char_id, "legacy")
    return char_id


@dataclass
class OldStack:
    project: PulumiProject
    character: str


@pytest.fixture
def old_stack(tmp_path: Path, cli_bin: Path, convai: EmulatorProcess) -> OldStack:
    char_id = recreate_in_convai(convai)
    old_char_id = (FIXTURE / "character.txt").read_text().strip()
    env = {"CONVAI_API_KEY": CONVAI_KEY, "CONVAI_BASE_URL": convai.url}
    project = PulumiProject(tmp_path, cli_bin, env)
    stack_file = (FIXTURE / "Pulumi.e2e.yaml").read_text()
    project.stack_file.write_text(stack_file.replace(old_char_id, char_id))
    state = tmp_path / "old-state.json"
    state.write_text((FIXTURE / "export.json").read_text().replace(old_char_id, char_id))
    project.run("stack", "import", "--file", str(state))
    return OldStack(project, char_id)


def pickled_providers(project: PulumiProject) -> dict[str, bytes]:
    shown: dict[str, Any] = json.loads(project.run("stack", "export", "--show-secrets").stdout)
    return {
        r["urn"].rsplit("::", 1)[-1]: base64.b64decode(
            json.loads(r["inputs"]["__provider"]["plaintext"])
        )
        for r in shown["deployment"]["resources"]
        if "__provider" in (r.get("inputs") or {})
    }


def test_providers_pickled_at_the_old_module_paths_refresh_and_destroy(
    old_stack: OldStack, convai: EmulatorProcess
) -> None:
    project = old_stack.project
    pickled = pickled_providers(project)
    for prefix, old_path in OLD_PATHS.items():
        [name] = [n for n in pickled if n.startswith(prefix)]
        assert old_path in pickled[name], f"{name}'s provider does not name {old_path!r}"

    # The program, declaring what the old version declared, finds every resource as it stands:
    # type tokens, names and URNs are what they were.
    project.run("preview", "--expect-no-changes")

    with ConvaiClient(CONVAI_KEY, convai.url) as client:
        client.update(UpdateRequest(model_group_name="legacy", display_name="Renamed by hand"))
    project.refresh()
    assert project.resources()["legacy"]["outputs"]["display_name"] == "Renamed by hand"

    project.destroy()
    assert live(convai) == {}
    with ConvaiClient(CONVAI_KEY, convai.url) as client:
        character = client.get_character(old_stack.character)
    assert character.model_group_name == "gpt-4o-mini"
