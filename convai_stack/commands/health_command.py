"""`health`: the endpoint preflight for every model of a stack."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from convai_provider.guards.documents import parse_json
from convai_stack.commands.health import (
    InvalidEndpointKeyError,
    check_health,
    stack_outputs_problem,
)
from convai_stack.commands.operator_stack import load_stack
from convai_stack.commands.parser import EXIT_CLEAN, EXIT_DIFFERS, OperatorError


def _read_outputs(source: str | None) -> dict[str, Any] | None:
    if source is None:
        return None
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
        outputs = parse_json(text)
    except (OSError, ValueError) as exc:
        raise OperatorError(
            f"could not read stack outputs from {source}: {exc}; produce them with "
            "`pulumi stack output --json --show-secrets`"
        ) from None
    problem = stack_outputs_problem(outputs)
    if problem is not None:
        raise OperatorError(f"stack outputs from {source}: {problem}")
    return dict(outputs)


def run_health(args: argparse.Namespace) -> int:
    stack, _ = load_stack(args)
    outputs = _read_outputs(args.outputs)

    def progress(done: int, total: int, group: str) -> None:
        if sys.stderr.isatty():
            print(f"[{done}/{total}] checking {group}...", file=sys.stderr)

    try:
        results = check_health(
            stack, outputs, wait=args.timeout, progress=progress, account=args.account
        )
    except InvalidEndpointKeyError as exc:
        raise OperatorError(str(exc)) from None
    for health in results:
        status = "OK  " if health.ok else "FAIL"
        print(f"{status}  {health.model_group_name}  {health.model_name} at {health.base_url}")
        if not health.ok:
            print(f"      {health.detail}")
    failed = sum(not h.ok for h in results)
    print(f"{len(results) - failed} of {len(results)} endpoints healthy.")
    return EXIT_DIFFERS if failed else EXIT_CLEAN
