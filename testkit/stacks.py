"""Stack files as the tests read them: parsed by the schema, or handed over as the runtime does."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from convai_stack.stack_config import (
    ENDPOINTS_KEY,
    PLACEHOLDER,
    PROJECT,
    StackConfig,
    parse_stack_config,
    project_values,
    read_stack_file,
)

from .pulumi_cli import PulumiProject


def load_stack_file(path: Path) -> StackConfig:
    config = read_stack_file(path)
    return parse_stack_config(project_values(config), str(path), keys=config)


def as_runtime_config(config: Mapping[str, Any]) -> dict[str, str]:
    """Stack file values as the Pulumi runtime hands them to a program: strings, objects as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}


TEST_PINS = {
    "revision": "5206a32e0bd3067aef1ce90f5528ade7d866253f",
    "image_digest": "sha256:" + "4b7e" * 16,
}
"""Made-up values the tests set where the committed files hold the placeholder, as an operator
sets the real ones."""


def with_test_pins(config: Mapping[str, Any]) -> dict[str, Any]:
    """A stack file's config with every placeholder of its endpoints replaced by TEST_PINS."""
    key = f"{PROJECT}:{ENDPOINTS_KEY}"
    pinned = dict(config)
    if isinstance(config.get(key), list):
        pinned[key] = [
            {k: TEST_PINS[k] if v == PLACEHOLDER and k in TEST_PINS else v for k, v in e.items()}
            for e in config[key]
        ]
    return pinned


ENDPOINT_KEY_CONFIG = "endpointKey"
"""The secret holding the key of `external_endpoint`."""


@contextmanager
def product_project(
    directory: Path, cli_bin: Path, env: Mapping[str, str], endpoint_key: str
) -> Iterator[PulumiProject]:
    """The product's program through the real CLI, its endpoint's key in the stack's secrets; what
    the block started with `start` is ended after it."""
    project = PulumiProject(directory, cli_bin, env)
    project.set_secret(ENDPOINT_KEY_CONFIG, endpoint_key)
    try:
        yield project
    finally:
        project.end_started()


def external_endpoint(name: str = "llm", model_name: str = "llama-3.1-8b") -> dict[str, Any]:
    """An external endpoint of a stack file, its key in the secret `endpointKey`."""
    return {
        "name": name,
        "kind": "external",
        "base_url": "https://llm.example.com/v1",
        "model_name": model_name,
        "api_key_config": ENDPOINT_KEY_CONFIG,
    }


def declared_model(group: str, *characters: str, **fields: Any) -> dict[str, Any]:
    """A model of a stack file on the endpoint `llm`, bound to `characters`."""
    return {
        "model_group_name": group,
        "endpoint": "llm",
        "display_name": f"{group} model",
        "verify_endpoint": False,  # the preflight has tests of its own
        "characters": list(characters),
        **fields,
    }
