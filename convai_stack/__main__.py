import sys

from convai_stack.commands.cli import main

if __name__ == "__main__":
    sys.exit(main())
