"""The package layout is the architecture: each product imports only what lies beneath it.

In the README's order: guards, api, preflight, resources, emulator, commands; each imports only
products listed before it (the commands also read the program's stack schema). A product importing
one it should not is a design change, to be made here on purpose rather than by accident.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "convai_provider"

MAY_IMPORT = {
    "guards": set(),
    "api": {"guards"},
    "preflight": {"guards"},
    "resources": {"guards", "api", "preflight"},
    "commands": {"guards", "api", "preflight", "resources", "emulator", "convai_stack"},
    "emulator": {"guards", "api"},
}
"""Which products each product may import."""

THIRD_PARTY_BANNED = {
    "guards": {"pulumi", "starlette", "uvicorn"},
    "api": {"pulumi", "starlette", "uvicorn"},
    "preflight": {"pulumi", "starlette", "uvicorn"},
    "resources": {"starlette", "uvicorn"},
    "commands": {"starlette", "uvicorn"},
    "emulator": {"pulumi"},
}


def imported_modules(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def product_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] == "convai_stack":
        return "convai_stack"
    if parts[0] == "convai_provider" and len(parts) > 1:
        return parts[1]
    return None


@pytest.mark.parametrize("product", sorted(MAY_IMPORT))
def test_a_product_imports_only_what_lies_beneath_it(product: str) -> None:
    wrong = []
    for path in sorted((PACKAGE / product).glob("*.py")):
        for module in imported_modules(path):
            other = product_of(module)
            if other not in (None, product) and other not in MAY_IMPORT[product]:
                wrong.append(f"{path.name} imports {module}")
            if module.split(".")[0] in THIRD_PARTY_BANNED[product]:
                wrong.append(f"{path.name} imports {module}")
    assert wrong == []


def test_every_module_belongs_to_a_product_or_is_a_kept_path() -> None:
    loose = {p.name for p in PACKAGE.glob("*.py")}
    assert loose == {
        "__init__.py",
        "__main__.py",
        "wire.py",  # the README once showed `from convai_provider.wire import ...`
        "provider.py",  # state pickles PrivateModelProvider by this path
        "character_provider.py",  # and CharacterModelProvider by this one
    }
