"""`adopt`: the stack file entries that bring Convai's unmanaged models under a stack."""

from __future__ import annotations

import argparse

from convai_stack.commands.adoption import adoption_entries, adoption_yaml
from convai_stack.commands.convai import command_client, live_models
from convai_stack.commands.operator_stack import load_stack
from convai_stack.commands.output import print_json
from convai_stack.commands.parser import EXIT_CLEAN


def run_adopt(args: argparse.Namespace) -> int:
    stack, raw = load_stack(args)
    entries = adoption_entries(stack, live_models(command_client(args, raw)), args.account)
    if args.json:
        print_json(entries)
    elif not entries["models"]:
        print(f"Every model in Convai is already declared in stack '{args.stack}'.")
    else:
        print(f"# Add to stacks/Pulumi.{args.stack}.yaml under config:")
        print(adoption_yaml(entries, args.stack))
    return EXIT_CLEAN
