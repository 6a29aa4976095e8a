import sys

from convai_stack.commands.main import main

if __name__ == "__main__":
    sys.exit(main())
