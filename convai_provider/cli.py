"""`python -m convai_provider <command>`: the emulator and the operator commands."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m convai_provider",
        description="Convai private LLM models: local emulator and operator tools.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_emulator(commands)
    return parser


def _add_emulator(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    emulator = commands.add_parser(
        "emulator",
        help="run a local Convai /llm-models server backed by SQLite",
        description=(
            "Serve Convai's /llm-models/register, update, deregister and list on HOST:PORT, "
            "with state in the SQLite file DB (kept across restarts). Every distinct "
            "CONVAI-API-KEY is its own account. Admin endpoints under /_emulator/ reset state "
            "and inject faults (see README). Prints 'Convai emulator listening on URL' when ready."
        ),
    )
    emulator.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    emulator.add_argument(
        "--port", type=int, default=8787, help="port; 0 picks a free one (default 8787)"
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
    from .emulator.server import serve

    serve(args.host, args.port, args.db, access_log=not args.no_access_log)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
