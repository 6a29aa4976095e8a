"""`emulator`: a local Convai server, from the emulator extra (which a deployment installs not)."""

from __future__ import annotations

import argparse
from pathlib import Path

from convai_stack.commands.parser import Commands, OperatorError

# What the emulator imports from its extra (pyproject.toml); a deployment installs neither, so
# this module and every other command must not import them.
EMULATOR_EXTRA_MODULES = frozenset({"starlette", "uvicorn"})


def add_emulator(commands: Commands) -> None:
    emulator = commands.add_parser(
        "emulator",
        help="run a local Convai /llm-models server backed by SQLite",
        description=(
            "Serve Convai's /llm-models/register, update, deregister and list, and "
            "/character/create, get and update, on HOST:PORT, with state in the SQLite file DB "
            "(kept across restarts). Every distinct "
            "CONVAI-API-KEY is its own account. Admin endpoints under /_emulator/ reset state "
            "and inject faults (see docs/emulator.md). Prints 'Convai emulator listening on URL' "
            "when ready."
        ),
    )
    emulator.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    emulator.add_argument(
        "--port", type=port_argument, default=8787, help="port; 0 picks a free one (default 8787)"
    )
    emulator.add_argument(
        "--db",
        type=Path,
        default=Path(".convai-emulator.sqlite3"),
        help="SQLite database file (default .convai-emulator.sqlite3)",
    )
    emulator.add_argument("--no-access-log", action="store_true", help="do not log each request")
    emulator.set_defaults(run=_run_emulator)


def _run_emulator(args: argparse.Namespace) -> int:
    try:
        from convai_provider.emulator.server import EmulatorStartError, serve
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in EMULATOR_EXTRA_MODULES:
            raise
        raise OperatorError(
            f"the emulator needs its extra ({exc.name} is not installed): "
            "pip install 'convai-models[emulator]'"
        ) from None
    try:
        serve(args.host, args.port, args.db, access_log=not args.no_access_log)
    except EmulatorStartError as exc:
        raise OperatorError(str(exc)) from None
    return 0


def port_argument(text: str) -> int:
    """argparse's `type` for --port: a TCP port, 0 for any free one."""
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port from 0 to 65535")
    return int(text)
