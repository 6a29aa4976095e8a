"""How the operator commands print: JSON for machines, aligned tables and lines for people, and
what Convai sent made fit for one cell or line."""

from __future__ import annotations

import json
from typing import Any

from convai_provider.guards.text import server_text


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def shown(value: object) -> str:
    """A field Convai sent (a name, a URL), fit for one cell or line of output: a newline in it
    would fake a row, an ESC start an escape sequence."""
    return server_text(value, limit=None)


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    )
