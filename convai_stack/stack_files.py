"""Where the stack files are, and the one reader of them (the program's errors, the operator
commands, scripts/dev-up): a key given twice, a file that is no UTF-8, YAML or mapping, refused
with its path and line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from convai_provider.guards.documents import DocumentError, load_yaml
from convai_stack.config_problems import StackConfigError

STACK_CONFIG_DIR = "stacks"
"""Where the stack files are: Pulumi.yaml's `stackConfigDir`."""


def stack_file(stack: str, root: Path = Path()) -> Path:
    """The stack file of `stack` in the checkout `root` (relative to it by default)."""
    return root / STACK_CONFIG_DIR / f"Pulumi.{stack}.yaml"


def read_stack_file(path: Path) -> dict[str, Any]:
    """The `config:` map of a stack file, every key fully namespaced."""
    document = read_stack_document(path)
    if not isinstance(document.get("config", {}), dict):
        raise StackConfigError(f"{path} must be a mapping with a `config:` mapping inside")
    config = dict(document.get("config") or {})
    for key in config:
        if not isinstance(key, str):
            raise StackConfigError(
                f"{path}: config key {key!r} is not a string: keys read like `project:name`"
            )
    return config


def read_stack_document(path: Path) -> dict[str, Any]:
    """A Pulumi project or stack file as a mapping: the one reader of these files. A key given
    twice is refused, naming the key and both lines (YAML would keep the last one silently);
    so is a file that is no UTF-8, no YAML or no mapping."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise StackConfigError(
            f"{path} does not exist: create it (see docs/operations.md, 'Adding an environment')"
        ) from None
    except IsADirectoryError:
        raise StackConfigError(
            f"{path} is a directory, not a stack file: {stack_file('NAME')} must be a file"
        ) from None
    except OSError as exc:
        raise StackConfigError(f"{path} could not be read: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise StackConfigError(
            f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start}): "
            "save it as UTF-8"
        ) from None
    try:
        document = load_yaml(text, str(path)) or {}
    except DocumentError as exc:
        raise StackConfigError(str(exc)) from None
    if not isinstance(document, dict):
        raise StackConfigError(f"{path} must be a mapping with a `config:` mapping inside")
    return document
