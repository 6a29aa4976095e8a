"""`list`: the account's private models, as a table or JSON."""

from __future__ import annotations

import argparse

from convai_stack.commands.convai import command_client, live_models
from convai_stack.commands.operator_stack import stack_settings
from convai_stack.commands.output import print_json, shown, table
from convai_stack.commands.parser import EXIT_CLEAN

HEADER = ["GROUP", "MODEL", "DISPLAY NAME", "BASE URL", "UNCENSORED", "CREATED"]


def run_list(args: argparse.Namespace) -> int:
    models = live_models(command_client(args, stack_settings(args)))
    if args.json:
        print_json({"models": [m.documented() for m in models], "count": len(models)})
        return EXIT_CLEAN
    if not models:
        print("No private models in this Convai account.")
        return EXIT_CLEAN
    rows = [
        [
            shown(m.model_group_name),
            shown(m.model_name),
            shown(m.display_name or "-"),
            shown(m.base_url),
            "yes" if m.is_uncensored else "no",
            shown(m.created_at),
        ]
        for m in models
    ]
    print(table([HEADER, *rows]))
    return EXIT_CLEAN
