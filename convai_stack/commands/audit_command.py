"""`audit`: a stack compared with Convai, for one account or every account its models use."""

from __future__ import annotations

import argparse
from typing import Any

from convai_provider.api.access import API_KEY_ENV
from convai_provider.api.accounts import account_name, key_env, one_key_for_two
from convai_provider.api.resolver import sharing_one_key
from convai_stack.commands.audit import Audit, accounts_in_use, audit
from convai_stack.commands.convai import (
    ACCOUNT_FLAG,
    API_KEY_FLAG,
    BASE_URL_FLAG,
    command_access,
    command_client,
    live_models,
)
from convai_stack.commands.operator_stack import load_stack
from convai_stack.commands.output import print_json, shown
from convai_stack.commands.parser import EXIT_CLEAN, EXIT_DIFFERS, OperatorError


def run_audit(args: argparse.Namespace) -> int:
    """One account with --account; else every account the stack's models use."""
    stack, raw = load_stack(args)
    accounts = [args.account] if args.account else accounts_in_use(stack)
    if not args.account and accounts != [None]:
        _refuse_one_accounts_flags(args, accounts)
    if len(accounts) > 1:
        _refuse_one_key_for_two(args, raw, accounts)
    results = [
        audit(args.stack, stack, live_models(command_client(args, raw, account)), account)
        for account in accounts
    ]
    clean = all(r.clean for r in results)
    if args.json:
        if len(results) == 1:
            print_json(results[0].as_json())
        else:
            print_json(
                {"stack": args.stack, "accounts": [r.as_json() for r in results], "clean": clean}
            )
    else:
        print("\n".join(_audit_text(r) for r in results))
    return EXIT_CLEAN if clean else EXIT_DIFFERS


def _refuse_one_accounts_flags(args: argparse.Namespace, accounts: list[str | None]) -> None:
    """Without --account, --api-key and --base-url are the default account's: an audit of
    another account (or of several) would send that key, or every account's key, to another
    account's server."""
    given = [
        flag
        for flag, value in ((API_KEY_FLAG, args.api_key), (BASE_URL_FLAG, args.base_url))
        if value is not None
    ]
    if not given:
        return
    names = ", ".join(account_name(a) for a in accounts)
    keys = ", ".join(f"${API_KEY_ENV if a is None else key_env(a)}" for a in accounts)
    raise OperatorError(
        f"{' and '.join(given)} give the default account's setting, and stack '{args.stack}' "
        f"has models in {names}: each account is audited with its own key ({keys}) and URL. "
        f"Pass {ACCOUNT_FLAG} ALIAS to audit one account with {' and '.join(given)}, or leave "
        f"{' and '.join(given)} out"
    )


def _refuse_one_key_for_two(
    args: argparse.Namespace, raw: dict[str, Any], accounts: list[str | None]
) -> None:
    """Two accounts given one key are one Convai account: their audits would each list the
    other's models as unmanaged, and call its own missing."""
    keys = {account: command_access(args, raw, account).api_key for account in accounts}
    shared = sharing_one_key(keys)
    if shared:
        raise OperatorError(one_key_for_two(shared[0]))


def _audit_text(result: Audit) -> str:
    where = "" if result.account is None else f" account '{result.account}'"
    lines = [f"Stack '{result.stack}' against Convai{where}:"]
    for group in result.in_sync:
        lines.append(f"  in sync    {shown(group)}")
    for group in result.missing:
        lines.append(
            f"  missing    {shown(group)}: declared but not in Convai (pulumi up registers it)"
        )
    for group in result.unmanaged:
        lines.append(
            f"  unmanaged  {shown(group)}: in Convai but not in the stack "
            f"(adopt --stack {result.stack} prints its entry)"
        )
    for d in result.drift:
        lines.append(
            f"  drift      {shown(d.model_group_name)}.{d.field}: declared {d.declared!r}, "
            f"Convai has {shown(repr(d.in_convai))}"
        )
    lines.append(f"  note       {result.note}")
    found = len(result.missing) + len(result.unmanaged) + len(result.drift)
    lines.append("Clean." if result.clean else f"{found} difference(s).")
    return "\n".join(lines)
