"""The stack file an operator command reads (stacks/Pulumi.NAME.yaml): its models, checked by
the stack schema, and its settings as written (secrets stay ciphertext)."""

from __future__ import annotations

import argparse
from typing import Any

from convai_stack.commands.parser import OperatorError
from convai_stack.stack_config import (
    StackConfig,
    StackConfigError,
    StackKeys,
    parse_stack_config,
    project_values,
    read_stack_file,
    stack_file,
)


def load_stack(args: argparse.Namespace) -> tuple[StackConfig, dict[str, Any]]:
    """--stack's models and its settings as written; the command stopped when it cannot be read."""
    path = stack_file(args.stack, args.root)
    if not path.exists():
        raise OperatorError(
            f"{path} does not exist: run from the project root or pass --root with the "
            "directory holding stacks/ (a new stack: see docs/operations.md, 'Adding an "
            "environment')"
        )
    try:
        raw = read_stack_file(path)
        secrets = frozenset(k for k, v in raw.items() if isinstance(v, dict) and "secure" in v)
        stack = StackKeys(args.stack, secrets)
        return parse_stack_config(project_values(raw), str(path), keys=raw, where=stack), raw
    except StackConfigError as exc:
        heading, *problems = str(exc).splitlines()
        raise OperatorError(" ".join([heading, "; ".join(problems)]).strip()) from None


def stack_settings(args: argparse.Namespace) -> dict[str, Any] | None:
    """The stack file's settings, for the Convai URL and a key in plain text; None without
    --stack, or with --base-url for a stack without a file here (one kept elsewhere)."""
    if args.stack is None:
        return None
    if args.base_url and not stack_file(args.stack, args.root).exists():
        return None
    return load_stack(args)[1]
