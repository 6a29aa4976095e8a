"""Rules of the stacks written once: the vLLM endpoint's URL and namespace, the exports, where
the stack files are and how they are read. Each test ties a place that applies a rule to the one
place that states it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from convai_provider import TYPE_TOKEN
from convai_provider.api.wire import OPENAI_BASE_URL
from convai_stack import stack_config
from convai_stack.stack_config import (
    API_PATH,
    ENDPOINT_KEYS_EXPORT,
    MODELS_EXPORT,
    STACK_CONFIG_DIR,
    StackConfig,
    StackConfigError,
    VllmEndpoint,
    published_base_url,
    read_stack_document,
    read_stack_file,
    stack_file,
    vllm_namespace,
)
from policy import guardrails
from testkit.stacks import load_stack_file
from tests.test_dev_up import dev_project_module
from tests.test_stacks import run_stack

ROOT = Path(__file__).resolve().parent.parent


def test_a_vllm_endpoint_is_published_and_namespaced_as_its_schema_says() -> None:
    declared = load_stack_file(stack_file("staging", ROOT))
    run = run_stack("staging")
    namespaces = {r.inputs["metadata"]["name"] for r in run.of_type("kubernetes:core/v1:Namespace")}
    vllm = [e for e in declared.endpoints if isinstance(e, VllmEndpoint)]
    assert vllm and namespaces == {e.namespace for e in vllm}
    models = {r.name: r for r in run.of_type(TYPE_TOKEN)}
    for model in declared.models:
        endpoint = declared.endpoint(model.endpoint)
        assert models[model.model_group_name].inputs["base_url"] == endpoint.served_as[0]
    assert set(run.exports) == {MODELS_EXPORT, ENDPOINT_KEYS_EXPORT}


def test_the_endpoint_url_and_namespace_rules() -> None:
    assert published_base_url("llm.example.com") == "https://llm.example.com/v1"
    assert vllm_namespace("llama-8b") == "vllm-llama-8b"
    assert vllm_namespace("a" * 58) == "vllm-" + "a" * 58  # 63: the longest a namespace may be


def test_the_policy_pack_judges_by_the_rules_the_stack_applies() -> None:
    """policy/guardrails.py writes these again (it is no part of the schema's owner's files):
    tied here until it imports them."""
    assert guardrails.PUBLISHED_PATH == API_PATH
    assert guardrails.CONVAI_DEFAULT_BASE_URL == OPENAI_BASE_URL


def test_stack_files_are_where_the_project_says_and_its_defaults_are_the_schemas() -> None:
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert project["stackConfigDir"] == STACK_CONFIG_DIR
    assert stack_file("prod", ROOT) == ROOT / "stacks" / "Pulumi.prod.yaml"
    for key, declared in project["config"].items():
        assert declared["default"] == StackConfig.model_fields[key].default, key


DUPLICATED = "config:\n  convai-models:protectModels: false\n  convai-models:protectModels: true\n"


def test_the_reader_refuses_a_key_given_twice_naming_it_and_its_lines(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.x.yaml"
    path.write_text(DUPLICATED)
    for read in (read_stack_document, read_stack_file):
        with pytest.raises(StackConfigError) as refused:
            read(path)
        assert str(refused.value) == (
            f"{path}:3:3: invalid YAML: duplicate key 'convai-models:protectModels' (first "
            "given on line 2); give each key once"
        ), read.__name__


def test_dev_up_reads_the_committed_stack_file_with_the_same_reader(tmp_path: Path) -> None:
    """scripts/dev_project.py read it with yaml.safe_load, which keeps the last of two keys."""
    (tmp_path / "stacks").mkdir()
    stack_file("dev", tmp_path).write_text(DUPLICATED)
    with pytest.raises(SystemExit, match="duplicate key 'convai-models:protectModels'"):
        dev_project_module().stack_file(tmp_path, {}, "http://127.0.0.1:8787")
    refused = subprocess.run(
        [
            sys.executable,
            "scripts/dev_project.py",
            "--root",
            str(tmp_path),
            "--check",
            "config",
            "rm",
            "x",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 1 and "dev-up: " in refused.stderr
    assert "duplicate key 'convai-models:protectModels' (first given on line 2)" in refused.stderr


NAMES_BEFORE_THE_SPLIT = [
    "PROJECT",
    "ENDPOINTS_KEY",
    "MODELS_KEY",
    "PROTECT_KEY",
    "FALLBACK_KEY",
    "EXTRA_BUILTINS_KEY",
    "REQUIRE_DIGEST_KEY",
    "STACK_KEYS",
    "PROVIDER_NAMESPACE",
    "DEV_STACK",
    "SECRET_KEY_FIELDS",
    "VLLM_IMAGE",
    "VLLM_IMAGE_TAG",
    "Quantity",
    "Hostname",
    "DnsLabel",
    "VllmName",
    "PLACEHOLDER",
    "ImageDigest",
    "REVISION_PATTERN",
    "LabelMap",
    "IpNetwork",
    "EGRESS_DENIED",
    "ConfigKey",
    "Toleration",
    "GPU_TOLERATIONS",
    "MAX_GPUS_PER_NODE",
    "COMMON_GPU_COUNTS",
    "FqdnPattern",
    "HF_HUB_FQDNS",
    "MetricsScrape",
    "Autoscaling",
    "GatewayDataplane",
    "GatewayRef",
    "ExternalEndpoint",
    "VllmEndpoint",
    "Endpoint",
    "ModelDeclaration",
    "StackConfig",
    "StackConfigError",
    "parse_stack_config",
    "StackKeys",
    "unknown_key_problems",
    "known_keys",
    "stack_file",
    "read_stack_file",
    "project_values",
]
"""Every public name convai_stack.stack_config defined when it was one 1,000-line module."""


@pytest.mark.parametrize("name", NAMES_BEFORE_THE_SPLIT)
def test_every_name_of_the_schema_is_still_imported_from_stack_config(name: str) -> None:
    assert name in stack_config.__all__ and hasattr(stack_config, name)
