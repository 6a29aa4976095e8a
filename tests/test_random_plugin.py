"""The stand-in random plugin (testkit/random_plugin.py) through the real CLI: what the stack
tests rely on it for, as the real RandomPassword behaves."""

from __future__ import annotations

import string
from pathlib import Path

import pytest

from testkit import random_plugin
from testkit.pulumi_cli import ROOT, PulumiProject

PROGRAM = ROOT / "tests" / "fixtures" / "random-password-program"
NAME = "api-key"
TYPE = random_plugin.RESOURCE_TYPE


@pytest.fixture
def project(tmp_path: Path, cli_bin: Path) -> PulumiProject:
    proj = PulumiProject(tmp_path, cli_bin, {}, main=PROGRAM)
    random_plugin.install(proj)
    return proj


def result(project: PulumiProject) -> str:
    value: str = project.outputs()["result"]
    return value


def test_a_password_is_made_kept_replaced_on_any_input_change_and_kept_secret(
    project: PulumiProject,
) -> None:
    project.configure({"convai-models:length": 48, "convai-models:minNumeric": 5})
    project.up()
    first = result(project)
    assert len(first) == 48
    assert set(first) <= set(string.ascii_letters + string.digits)  # special=False
    assert sum(c.isdigit() for c in first) >= 5

    (state,) = [r for r in project.resources().values() if r["type"] == TYPE]
    assert state["outputs"]["result"]["4dabf18193072939515e22adb298388d"]  # a secret in state
    assert first not in project.run("stack", "export").stdout

    project.run("preview", "--expect-no-changes")
    project.refresh()
    assert result(project) == first  # nothing outside the state to read: kept as it was

    project.configure({"convai-models:length": 32, "convai-models:minNumeric": 5})
    preview = project.preview()
    assert "+-" in preview.stdout and NAME in preview.stdout  # replaced, create before delete
    project.up()
    assert len(result(project)) == 32
    assert result(project) != first

    project.destroy()
    assert project.resources() == {}


def test_a_length_below_the_minimums_is_refused_naming_the_field(project: PulumiProject) -> None:
    project.configure({"convai-models:length": 4, "convai-models:minNumeric": 5})
    done = project.run("preview", check=False)
    assert done.returncode != 0
    assert "length (4) must be >= the sum of the min_* counts" in done.stdout + done.stderr
