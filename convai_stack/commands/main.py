"""`convai-models <command>`: the parser of every command (the emulator, the preflight and the
operator commands), and the one place their errors become an `error:` line and an exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from convai_provider.guards.text import safe_output
from convai_stack.commands.arguments import add_operator_commands
from convai_stack.commands.emulator_command import add_emulator
from convai_stack.commands.parser import EXIT_ERROR, CommandLine, OperatorError
from convai_stack.commands.preflight_command import add_preflight

ENTRY_POINT = "convai-models"
"""The installed command (pyproject.toml's [project.scripts]); otherwise `python -m`."""


def program_name(argv0: str) -> str:
    """What usage lines and error hints call the command: the way it was run."""
    path = Path(argv0)
    if path.name == ENTRY_POINT:
        return ENTRY_POINT
    if path.name == "__main__.py" and path.parent.name == "convai_stack":
        return "python -m convai_stack"
    return "python -m convai_provider"


def build_parser() -> argparse.ArgumentParser:
    parser = CommandLine(
        prog=program_name(sys.argv[0]),
        description="Convai private LLM models: local emulator and operator tools.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_emulator(commands)
    add_preflight(commands)
    add_operator_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    with safe_output():
        args = build_parser().parse_args(argv)
        try:
            code: int = args.run(args)
        except OperatorError as exc:
            print(f"error: {' '.join(str(exc).splitlines())}", file=sys.stderr)
            return EXIT_ERROR
        return code


if __name__ == "__main__":
    sys.exit(main())
