"""`recover`: the creates an interrupted `pulumi up` left pending, settled against Convai."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from convai_provider.api.accounts import account_name
from convai_provider.guards.documents import parse_json
from convai_stack.commands.convai import ACCOUNT_FLAG, command_client, live_models
from convai_stack.commands.operator_stack import stack_settings
from convai_stack.commands.output import shown
from convai_stack.commands.parser import EXIT_CLEAN, EXIT_DIFFERS, OperatorError
from convai_stack.commands.recovery import (
    Recovery,
    RecoveryError,
    checked_export,
    recover_pending_creates,
)


def run_recover(args: argparse.Namespace) -> int:
    exported = _read_export(args.state)
    try:
        checked_export(exported)  # before Convai is asked anything
    except RecoveryError as exc:
        raise OperatorError(f"{args.state}: {exc}") from None
    live = {m.model_group_name: m for m in live_models(command_client(args, stack_settings(args)))}
    try:
        recovery = recover_pending_creates(exported, live, args.account)
    except RecoveryError as exc:
        raise OperatorError(f"{args.state}: {exc}") from None
    text = json.dumps(recovery.state, indent=4) + "\n"
    if args.out == "-":
        sys.stdout.write(text)
    else:
        Path(args.out).write_text(text)
    print(_recovery_text(args, recovery), file=sys.stderr)
    return EXIT_CLEAN if recovery.settled else EXIT_DIFFERS


def _account_flag(account: str | None) -> str:
    """How a recover names `account` (None: the default account) on its command line."""
    return f"{ACCOUNT_FLAG} {account}" if account else f"no {ACCOUNT_FLAG}"


def _read_export(source: str) -> Any:
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
        return parse_json(text)
    except (OSError, ValueError) as exc:
        raise OperatorError(
            f"could not read the exported state from {source}: {exc}; produce it with "
            "`pulumi stack export --stack NAME --file FILE`"
        ) from None


def _recovery_text(args: argparse.Namespace, recovery: Recovery) -> str:
    lines = [
        *(f"  in state   {shown(n)}: Convai holds it as declared" for n in recovery.adopted),
        *(
            f"  dropped    {shown(n)}: not in Convai, `pulumi up` creates it"
            for n in recovery.dropped
        ),
        *(
            f"  conflict   {shown(n)}: Convai holds a different model of that name "
            f"({shown('; '.join(d))})"
            for n, d in recovery.conflicts.items()
        ),
    ]
    lines += [
        f"  left       {shown(n)}: a pending create in {account_name(a)}, settled only by a "
        f"recover with {_account_flag(a)}"
        for n, a in recovery.elsewhere.items()
    ]
    if not lines:
        return (
            "No pending creates of Convai resources: nothing to settle. (A create whose provider "
            "process was killed leaves none: `pulumi up` then fails with 409 and, when Convai "
            "holds the model exactly as declared, names the way to adopt it; see "
            "docs/state-integrity.md.)"
        )
    if recovery.conflicts:
        lines.append(
            f"Decide each conflict before importing (`pulumi stack import` forgets pending "
            f"creates): `convai-models audit --stack {args.stack}` shows the model; if it is this "
            "stack's, set adopt_existing: true for one `pulumi up`, else choose another "
            "model_group_name."
        )
        return "\n".join(lines)
    out = "FILE" if args.out == "-" else args.out
    if recovery.elsewhere:
        flags = sorted({_account_flag(a) for a in recovery.elsewhere.values()})
        lines.append(
            f"Before importing, run recover on {out} again ({' and '.join(flags)}): "
            "`pulumi stack import` forgets the pending creates it still holds."
        )
        return "\n".join(lines)
    lines.append(
        f"Next: `pulumi stack import --stack {args.stack} --file {out}`, then `pulumi refresh "
        f"--yes --stack {args.stack}` and `pulumi up --stack {args.stack}` (the dev stack: "
        "`scripts/dev-up recover` does all of it)."
    )
    return "\n".join(lines)
