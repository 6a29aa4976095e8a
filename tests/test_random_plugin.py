"""The stand-in random plugin (testkit/random_plugin.py) through the real CLI: what the stack
tests rely on it for, as the real RandomPassword behaves."""

from __future__ import annotations

import signal
import string
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from pulumi.runtime import rpc
from pulumi.runtime.proto import provider_pb2, provider_pb2_grpc

from testkit import random_plugin
from testkit.processes import end_group
from testkit.pulumi_cli import ROOT, PulumiProject, read_events

PROGRAM = ROOT / "tests" / "fixtures" / "random-password-program"
NAME = "api-key"
TYPE = random_plugin.RESOURCE_TYPE
URN = f"urn:pulumi:e2e::convai-models::{TYPE}::{NAME}"


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

    # Any input: `special` too (the real provider's RequiresReplace); only the password.
    project.configure(
        {"convai-models:length": 32, "convai-models:minNumeric": 5, "convai-models:special": True}
    )
    log = project.dir / "plan.jsonl"
    project.run("preview", "--event-log", str(log))
    planned = {(e.name, e.op) for e in read_events(log) if e.kind == "resourcePreEvent"}
    assert {(n, op) for n, op in planned if op != "same"} == {
        (NAME, "create-replacement"),
        (NAME, "replace"),
        (NAME, "delete-replaced"),
    }

    project.destroy()
    assert project.resources() == {}


def test_a_length_below_the_minimums_is_refused_naming_the_field(project: PulumiProject) -> None:
    project.configure({"convai-models:length": 4, "convai-models:minNumeric": 5})
    done = project.run("preview", check=False)
    assert done.returncode != 0
    assert "length (4) must be >= the sum of the min_* counts" in done.stdout + done.stderr


# The plugin's own answers, over its gRPC protocol ------------------------------------------------
# The SDK marks `result` secret itself (additional_secret_outputs), so a test through the CLI
# cannot see whether the plugin does; the real provider does (pulumi-random's schema.json:
# "result": {"secret": true}; its recorded Create answers carry the secret envelope), and
# terraform-provider-random's random_password requires replacement for each of these inputs
# (RequiresReplace on length, special, upper, lower, numeric, number, min_*, override_special
# and keepers).

CHANGED_INPUTS = {
    "length": 17,
    "special": False,
    "upper": False,
    "lower": False,
    "numeric": False,
    "number": False,
    "minUpper": 1,
    "minLower": 1,
    "minNumeric": 1,
    "minSpecial": 1,
    "overrideSpecial": "_%@",
    "keepers": {"rotation": "2"},
}
"""A changed value for every input of `random_plugin.INPUTS`."""


@pytest.fixture
def plugin() -> Iterator[provider_pb2_grpc.ResourceProviderStub]:
    process = subprocess.Popen(
        [sys.executable, "-m", "testkit.random_plugin"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert process.stdout is not None
        port = process.stdout.readline().strip()
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield provider_pb2_grpc.ResourceProviderStub(channel)
    finally:
        end_group(process, signal.SIGKILL, 5)


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    message.update(values)
    return message


def test_every_input_is_covered_by_the_replacement_table() -> None:
    assert set(CHANGED_INPUTS) == set(random_plugin.INPUTS)


def test_the_created_result_is_a_secret_of_the_plugin_itself(
    plugin: provider_pb2_grpc.ResourceProviderStub,
) -> None:
    created = plugin.Create(
        provider_pb2.CreateRequest(urn=URN, properties=struct({"length": 16}), timeout=10),
        timeout=10,
    )
    outputs = json_format.MessageToDict(created.properties)
    assert set(outputs["result"]) == {rpc._special_sig_key, "value"}
    assert outputs["result"][rpc._special_sig_key] == rpc._special_secret_sig
    assert len(outputs["result"]["value"]) == 16


@pytest.mark.parametrize("name", sorted(CHANGED_INPUTS))
def test_a_change_of_any_input_replaces_create_before_delete(
    plugin: provider_pb2_grpc.ResourceProviderStub, name: str
) -> None:
    olds = {"length": 16, **{k: v for k, v in random_plugin.DEFAULTS.items() if v is not None}}
    news = {**olds, name: CHANGED_INPUTS[name]}
    diff = plugin.Diff(
        provider_pb2.DiffRequest(urn=URN, olds=struct(olds), news=struct(news)), timeout=10
    )
    assert diff.changes == provider_pb2.DiffResponse.DIFF_SOME
    assert list(diff.replaces) == [name]
    assert not diff.deleteBeforeReplace
    same = plugin.Diff(
        provider_pb2.DiffRequest(urn=URN, olds=struct(olds), news=struct(olds)), timeout=10
    )
    assert same.changes == provider_pb2.DiffResponse.DIFF_NONE
