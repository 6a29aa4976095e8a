"""The operator commands: list, audit, adopt, health and recover, with output and exit codes."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from convai_provider.api.access import (
    API_KEY_CONFIG,
    API_KEY_ENV,
    API_KEY_FLAG,
    BASE_URL_CONFIG,
    BASE_URL_FLAG,
    BASE_URL_ORDER,
    ConvaiKeyError,
    checked_convai_key,
    convai_base_url,
    convai_key,
    convai_url_problem,
)
from convai_provider.api.accounts import (
    ACCOUNT_FLAG,
    ACCOUNTS_CONFIG,
    API_KEY_FIELD,
    AccountError,
    account_key,
    account_name,
    account_settings,
    alias_argument,
    key_env,
    one_key_for_two,
    with_account_url,
)
from convai_provider.api.client import ConvaiClient
from convai_provider.api.errors import ConvaiError
from convai_provider.api.wire import PrivateModel
from convai_provider.guards.documents import parse_json
from convai_provider.guards.durations import seconds_argument
from convai_provider.guards.text import server_text
from convai_provider.guards.urls import refusal
from convai_stack.commands.adoption import adoption_entries, adoption_yaml
from convai_stack.commands.audit import Audit, accounts_in_use, audit
from convai_stack.commands.command_line import (
    EXIT_CLEAN,
    EXIT_DIFFERS,
    Commands,
    OperatorError,
)
from convai_stack.commands.health import (
    InvalidEndpointKeyError,
    check_health,
    stack_outputs_problem,
)
from convai_stack.commands.recovery import (
    Recovery,
    RecoveryError,
    checked_export,
    recover_pending_creates,
)
from convai_stack.stack_config import (
    StackConfig,
    StackConfigError,
    StackKeys,
    parse_stack_config,
    project_values,
    read_stack_file,
    stack_file,
)


def add_operator_commands(commands: Commands) -> None:
    _command(commands, "list", "list the account's private models", _run_list, stack_required=False)
    _command(
        commands,
        "audit",
        "compare a stack with Convai: unmanaged, missing and drifted models (exit 0 clean, "
        "1 differences, 2 error)",
        _run_audit,
    )
    _command(
        commands,
        "adopt",
        "print the stack configuration entries that bring unmanaged models under a stack",
        _run_adopt,
    )
    health = _command(
        commands,
        "health",
        "run the endpoint preflight for every model of a stack (exit 1 if any fails)",
        _run_health,
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
        _run_recover,
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
        type=_alias,
        help=f"an account of the stack's {ACCOUNTS_CONFIG} (default: the account of "
        f"{API_KEY_CONFIG}); its key comes from --api-key, else $CONVAI_API_KEY_<ALIAS> (such as "
        f"{key_env('partner')}), its URL from the stack's {ACCOUNTS_CONFIG}.ALIAS.baseUrl, else "
        "as the default account's (docs/accounts.md)",
    )
    if convai:
        parser.add_argument(
            "--api-key",
            help=f"Convai API key (default: ${API_KEY_ENV}; the stack's {API_KEY_CONFIG} is "
            "ciphertext these commands cannot read)",
        )
        parser.add_argument("--base-url", help=f"Convai API URL; without it, {BASE_URL_ORDER}")
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


# shared -----------------------------------------------------------------------------------------


def _load_stack(args: argparse.Namespace) -> tuple[StackConfig, dict[str, Any]]:
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


def _stack_settings(args: argparse.Namespace) -> dict[str, Any] | None:
    """The stack file's config, for the Convai URL and a key in plain text; with --base-url a
    stack without a file here (one kept elsewhere) needs none."""
    if args.base_url and not stack_file(args.stack, args.root).exists():
        return None
    return _load_stack(args)[1]


def _alias(text: str) -> str:
    try:
        return alias_argument(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _client(
    args: argparse.Namespace, stack_raw: dict[str, Any] | None = None, account: str | None = None
) -> ConvaiClient:
    """A client of `account` (default: --account; None: the default account)."""
    api_key, key_source, base_url = _access(args, stack_raw, account or args.account)
    try:
        return ConvaiClient(api_key, base_url, timeout=30, max_retries=3, key_source=key_source)
    except ConvaiError as exc:
        raise OperatorError(str(exc)) from None


def _access(
    args: argparse.Namespace, stack_raw: dict[str, Any] | None, account: str | None
) -> tuple[str, str, str]:
    """`account`'s key, the setting it came from, and its URL (None: the default account)."""
    if args.api_key is not None and not args.api_key.strip():
        env = API_KEY_ENV if account is None else key_env(account)
        raise OperatorError(f"{API_KEY_FLAG} is empty: give the key, or leave it out to use ${env}")
    settings = dict(stack_raw or {})
    try:
        if account is None:
            api_key, key_source = convai_key(
                _plain_text(settings), os.environ, flag=args.api_key, instead=API_KEY_FLAG
            )
        else:
            declared = _account_settings(stack_raw, account)
            api_key, key_source = _account_key(args.api_key, declared, account)
            settings = with_account_url(settings, declared)
    except ConvaiKeyError as exc:
        raise OperatorError(str(exc)) from None
    base_url, source = convai_base_url(settings, os.environ, flag=args.base_url)
    problem = convai_url_problem(base_url)
    if problem is not None:
        raise OperatorError(refusal(source, base_url, problem))
    return api_key, key_source, base_url


def _account_settings(stack_raw: dict[str, Any] | None, account: str) -> dict[str, Any]:
    """The stack's settings of `account`, which it must declare; without a stack, none."""
    if stack_raw is None:
        return {}
    try:
        return account_settings(stack_raw, account)
    except AccountError as exc:
        raise OperatorError(str(exc)) from None


def _account_key(flag: str | None, declared: dict[str, Any], account: str) -> tuple[str, str]:
    """--api-key, else the stack's apiKey where it is plain text (the emulator's), else
    $CONVAI_API_KEY_<ALIAS>: the commands cannot decrypt a secret."""
    if flag is not None:
        return checked_convai_key(flag, API_KEY_FLAG, instead=API_KEY_FLAG), API_KEY_FLAG
    plain = declared.get(API_KEY_FIELD)
    return account_key(
        plain if isinstance(plain, str) else None, os.environ, account, instead=API_KEY_FLAG
    )


def _plain_text(stack_raw: dict[str, Any]) -> dict[str, Any]:
    """A stack file's values the commands can read: a secret is ciphertext only Pulumi decrypts
    (the dev stack's key, `dev-account`, is in plain text: the emulator's, no secret)."""
    return {k: v for k, v in stack_raw.items() if isinstance(v, str)}


def _live_models(client: ConvaiClient) -> list[PrivateModel]:
    try:
        return client.list_models().models
    except ConvaiError as exc:
        raise OperatorError(str(exc)) from None
    finally:
        client.close()


def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def shown(value: object) -> str:
    """A field Convai sent (a name, a URL), fit for one cell or line of output: a newline in it
    would fake a row, an ESC start an escape sequence."""
    return server_text(value, limit=None)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )


# list -------------------------------------------------------------------------------------------


def _run_list(args: argparse.Namespace) -> int:
    raw = None if args.stack is None else _stack_settings(args)
    models = _live_models(_client(args, raw))
    if args.json:
        _print_json({"models": [m.documented() for m in models], "count": len(models)})
        return EXIT_CLEAN
    if not models:
        print("No private models in this Convai account.")
        return EXIT_CLEAN
    header = ["GROUP", "MODEL", "DISPLAY NAME", "BASE URL", "UNCENSORED", "CREATED"]
    rows = [
        [
            shown(m.model_group_name),
            shown(m.model_name),
            shown(m.display_name or "-"),
            shown(m.base_url),
            "yes" if m.is_uncensored else "no",
            shown(m.created_at),
        ]
        for m in models
    ]
    print(_table([header, *rows]))
    return EXIT_CLEAN


# audit ------------------------------------------------------------------------------------------


def _run_audit(args: argparse.Namespace) -> int:
    """One account with --account; else every account the stack's models use."""
    stack, raw = _load_stack(args)
    accounts = [args.account] if args.account else accounts_in_use(stack)
    if not args.account and accounts != [None]:
        _refuse_one_accounts_flags(args, accounts)
    if len(accounts) > 1:
        _refuse_one_key_for_two(args, raw, accounts)
    results = [
        audit(args.stack, stack, _live_models(_client(args, raw, account)), account)
        for account in accounts
    ]
    clean = all(r.clean for r in results)
    if args.json:
        if len(results) == 1:
            _print_json(results[0].as_json())
        else:
            _print_json(
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
    by_key: dict[str, list[str | None]] = {}
    for account in accounts:
        by_key.setdefault(_access(args, raw, account)[0], []).append(account)
    shared = next((same for same in by_key.values() if len(same) > 1), None)
    if shared is not None:
        raise OperatorError(one_key_for_two(shared))


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


# adopt ------------------------------------------------------------------------------------------


def _run_adopt(args: argparse.Namespace) -> int:
    stack, raw = _load_stack(args)
    entries = adoption_entries(stack, _live_models(_client(args, raw)), args.account)
    if args.json:
        _print_json(entries)
    elif not entries["models"]:
        print(f"Every model in Convai is already declared in stack '{args.stack}'.")
    else:
        print(f"# Add to stacks/Pulumi.{args.stack}.yaml under config:")
        print(adoption_yaml(entries, args.stack))
    return EXIT_CLEAN


# health -----------------------------------------------------------------------------------------


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


def _run_health(args: argparse.Namespace) -> int:
    stack, _ = _load_stack(args)
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


# recover ----------------------------------------------------------------------------------------


def _run_recover(args: argparse.Namespace) -> int:
    exported = _read_export(args.state)
    try:
        checked_export(exported)  # before Convai is asked anything
    except RecoveryError as exc:
        raise OperatorError(f"{args.state}: {exc}") from None
    live = {m.model_group_name: m for m in _live_models(_client(args, _stack_settings(args)))}
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
