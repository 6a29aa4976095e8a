"""`python -m convai_provider`, kept from when the operator commands lived in the library: they are
the application's now (`convai-models`, `python -m convai_stack`). The import waits for `main` so
importing the library never loads the application."""

import sys


def main() -> int:
    from convai_stack.commands.main import main as commands

    return commands()


if __name__ == "__main__":
    sys.exit(main())
