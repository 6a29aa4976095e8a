"""The Kubernetes resources staging and prod render, committed as golden files.

Every change to what the vLLM endpoints run shows as a diff of `tests/golden/*.yaml` to review
with the change. After a deliberate change, write the files again and commit them:

    CONVAI_WRITE_GOLDEN=1 .venv/bin/python -m pytest tests/test_rendered_manifests.py \
        tests/test_vllm_options.py

(the second writes `staging-options.yaml`: staging with every optional part of an endpoint on).

Rendered under mocks (tests/test_stacks.py's runner): the generated endpoint key is the mocks'
fixed one, and every secret value is written as `[secret]`.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from pulumi.runtime import rpc

from tests.test_stacks import run_stack

GOLDEN = Path(__file__).resolve().parent / "golden"
WRITE = "CONVAI_WRITE_GOLDEN"


def masked(value: Any) -> Any:
    """Secret values as `[secret]`, mappings in key order, whole numbers as integers (the wire
    format carries every number as a float)."""
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return "[secret]"
        return {k: masked(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [masked(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def rendered(stack: str, config: dict[str, str] | None = None) -> str:
    """Each Kubernetes resource the stack declares (its file's config, or `config`), by type and
    name, with the options that decide how it changes (timeouts, ignored fields, dependencies by
    name)."""
    run = run_stack(stack, config)
    names = {r.urn: f"{r.type}::{r.name}" for r in run.registrations}
    documents = []
    for registration in run.registrations:
        if not registration.type.startswith("kubernetes:"):
            continue
        document: dict[str, Any] = {
            "resource": f"{registration.type}::{registration.name}",
            "inputs": masked(registration.inputs),
        }
        if registration.custom_timeouts:
            document["customTimeouts"] = registration.custom_timeouts
        if registration.ignore_changes:
            document["ignoreChanges"] = registration.ignore_changes
        depends = sorted(names.get(urn, urn) for urn in registration.dependencies)
        if depends:
            document["dependsOn"] = depends
        documents.append(document)
    documents.sort(key=lambda document: str(document["resource"]))
    return yaml.safe_dump_all(documents, sort_keys=False, width=100)


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_rendered_resources_match_the_golden_file(stack: str) -> None:
    assert_golden(stack, rendered(stack))


def assert_golden(name: str, now: str) -> None:
    golden = GOLDEN / f"{name}.yaml"
    if os.environ.get(WRITE) == "1":
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(now)
    committed = golden.read_text() if golden.exists() else ""
    diff = "".join(
        difflib.unified_diff(
            committed.splitlines(keepends=True),
            now.splitlines(keepends=True),
            f"tests/golden/{name}.yaml (committed)",
            f"{name} as rendered now",
        )
    )
    assert not diff, (
        f"The {name} resources changed. If the change is meant, review this diff, then run "
        f"`{WRITE}=1 .venv/bin/python -m pytest tests/test_rendered_manifests.py "
        f"tests/test_vllm_options.py` and commit tests/golden/:\n{diff}"
    )
