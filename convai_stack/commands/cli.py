"""Kept for `from convai_stack.commands.cli import main`, the path the commands' entry point had:
they live in `main` now (and the parser they share in `parser`)."""

from convai_stack.commands.main import main

__all__ = ["main"]
