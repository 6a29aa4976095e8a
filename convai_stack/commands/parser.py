"""What every command shares: exit codes, the parser, and the error a user can fix."""

from __future__ import annotations

import argparse
from typing import NoReturn, TypeAlias

EXIT_CLEAN, EXIT_DIFFERS, EXIT_ERROR = 0, 1, 2


class CommandLine(argparse.ArgumentParser):
    """Usage mistakes are one `error:` line too, like every other error of these commands."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_ERROR, f"error: {message} (see {self.prog} --help)\n")


Commands: TypeAlias = "argparse._SubParsersAction[CommandLine]"


class OperatorError(Exception):
    """A failure the user can fix, printed as one sentence (exit status 2)."""
