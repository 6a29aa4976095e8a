import sys

from convai_provider.commands.cli import main

if __name__ == "__main__":
    sys.exit(main())
