"""Stack files as the tests read them: parsed by the schema, or handed over as the runtime does."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from convai_stack.stack_config import (
    StackConfig,
    parse_stack_config,
    project_values,
    read_stack_file,
)


def load_stack_file(path: Path) -> StackConfig:
    config = read_stack_file(path)
    return parse_stack_config(project_values(config), str(path), keys=config)


def as_runtime_config(config: Mapping[str, Any]) -> dict[str, str]:
    """Stack file values as the Pulumi runtime hands them to a program: strings, objects as JSON."""
    return {k: v if isinstance(v, str) else json.dumps(v) for k, v in config.items()}
