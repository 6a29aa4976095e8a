"""The operator commands' arguments: list, audit, adopt, health and recover, and the flags
they share (the account, its key and URL, the stack, JSON output)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from convai_provider.api.access import API_KEY_CONFIG, BASE_URL_CONFIG
from convai_provider.api.accounts import ACCOUNTS_CONFIG, key_env
from convai_provider.guards.durations import seconds_argument
from convai_stack.commands.adopt_command import run_adopt
from convai_stack.commands.audit_command import run_audit
from convai_stack.commands.convai import (
    ACCOUNT_FLAG,
    API_KEY_FLAG,
    BASE_URL_FLAG,
    BASE_URL_ORDER,
    KEY_ORDER,
    alias_argument,
)
from convai_stack.commands.health_command import run_health
from convai_stack.commands.list_command import run_list
from convai_stack.commands.parser import Commands
from convai_stack.commands.recover_command import run_recover


def add_operator_commands(commands: Commands) -> None:
    _command(commands, "list", "list the account's private models", run_list, stack_required=False)
    _command(
        commands,
        "audit",
        "compare a stack with Convai: unmanaged, missing and drifted models (exit 0 clean, "
        "1 differences, 2 error)",
        run_audit,
    )
    _command(
        commands,
        "adopt",
        "print the stack configuration entries that bring unmanaged models under a stack",
        run_adopt,
    )
    health = _command(
        commands,
        "health",
        "run the endpoint preflight for every model of a stack (exit 1 if any fails)",
        run_health,
        convai=False,
        json_flag=False,
    )
    health.add_argument(
        "--outputs",
        metavar="FILE",
        help="`pulumi stack output --json --show-secrets` saved to FILE, or - for stdin; "
        "where generated endpoint keys come from",
    )
    health.add_argument(
        "--timeout",
        type=seconds_argument,
        default=30.0,
        help="seconds each endpoint may take to become ready (default 30)",
    )
    recover = _command(
        commands,
        "recover",
        "settle the creates an interrupted `pulumi up` left pending: reads `pulumi stack "
        "export`, writes the state for `pulumi stack import` (exit 1 if a conflict remains)",
        run_recover,
        json_flag=False,
    )
    recover.add_argument(
        "--state",
        required=True,
        metavar="FILE",
        help="`pulumi stack export --stack NAME` saved to FILE, or - for stdin",
    )
    recover.add_argument(
        "--out",
        default="-",
        metavar="FILE",
        help="where to write the settled state for `pulumi stack import --file` (default stdout)",
    )


def _command(
    commands: Commands,
    name: str,
    description: str,
    run: Callable[[argparse.Namespace], int],
    *,
    stack: bool = True,
    stack_required: bool = True,
    convai: bool = True,
    json_flag: bool = True,
) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=description, description=description)
    parser.add_argument(
        ACCOUNT_FLAG,
        metavar="ALIAS",
        type=alias_argument,
        help=f"an account of the stack's {ACCOUNTS_CONFIG} (default: the account of "
        f"{API_KEY_CONFIG}); its key comes from --api-key, else $CONVAI_API_KEY_<ALIAS> (such as "
        f"{key_env('partner')}), its URL from the stack's {ACCOUNTS_CONFIG}.ALIAS.baseUrl, else "
        "as the default account's (docs/accounts.md)",
    )
    if convai:
        parser.add_argument(API_KEY_FLAG, help=f"Convai API key ({KEY_ORDER})")
        parser.add_argument(BASE_URL_FLAG, help=f"Convai API URL; without it, {BASE_URL_ORDER}")
    if stack:
        parser.add_argument(
            "--stack",
            required=stack_required,
            help="stack name: reads stacks/Pulumi.NAME.yaml"
            + ("" if stack_required else f" for its {BASE_URL_CONFIG}"),
        )
        parser.add_argument(
            "--root", type=Path, default=Path(), help="project root holding stacks/ (default .)"
        )
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print JSON for machines")
    parser.set_defaults(run=run)
    return parser
