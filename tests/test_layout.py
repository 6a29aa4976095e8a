"""The package layout is the architecture: each product imports only what lies beneath it.

In the order of docs/development.md, 'Where things live': guards, api, preflight, resources,
emulator, commands; each imports only products listed before it (the commands also read the
program's stack schema). A product importing
one it should not is a design change, to be made here on purpose rather than by accident.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "convai_provider"

MAY_IMPORT = {
    "guards": set(),
    "api": {"guards"},
    "preflight": {"guards", "api"},  # api.retry: one retry policy for the whole product
    "resources": {"guards", "api", "preflight"},
    "commands": {"guards", "api", "preflight", "resources", "emulator", "convai_stack"},
    "emulator": {"guards", "api"},
    "convai_stack": {"guards", "api", "resources", "the public surface"},
}
"""Which products each product may import (the program, convai_stack, is a product too)."""

THIRD_PARTY_BANNED = {
    "guards": {"pulumi", "starlette", "uvicorn"},
    "api": {"pulumi", "starlette", "uvicorn"},
    "preflight": {"pulumi", "starlette", "uvicorn"},
    "resources": {"starlette", "uvicorn"},
    "commands": {"starlette", "uvicorn"},
    "emulator": {"pulumi"},
    "convai_stack": {"starlette", "uvicorn"},
}


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, relative imports resolved."""
    package = ".".join(path.relative_to(ROOT).parts[:-1])
    return imports_in(path.read_text(), package)


def imports_in(source: str, package: str) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            base = parts[: len(parts) - node.level + 1]
            if not node.level:
                found.add(str(node.module))
            else:
                found.add(".".join([*base, node.module] if node.module else base))
    return found


def product_of(module: str) -> str | None:
    """`convai_provider` alone is the public surface, which loads the resources: no product may
    import it, so it counts as a product of its own."""
    parts = module.split(".")
    if parts[0] == "convai_stack":
        return "convai_stack"
    if parts[0] == "convai_provider":
        return parts[1] if len(parts) > 1 else "the public surface"
    return None


@pytest.mark.parametrize("product", sorted(MAY_IMPORT))
def test_a_product_imports_only_what_lies_beneath_it(product: str) -> None:
    wrong = []
    home = ROOT / product if product == "convai_stack" else PACKAGE / product
    for path in sorted(home.glob("*.py")):
        for module in imported_modules(path):
            other = product_of(module)
            if other not in (None, product) and other not in MAY_IMPORT[product]:
                wrong.append(f"{path.name} imports {module}")
            if module.split(".")[0] in THIRD_PARTY_BANNED[product]:
                wrong.append(f"{path.name} imports {module}")
    assert wrong == [], (
        f"{product} may import only {sorted(MAY_IMPORT[product])} of this project: move the "
        "code, or change the layout on purpose (MAY_IMPORT here and docs/development.md, 'Where "
        "things live')"
    )


def test_every_module_belongs_to_a_product_or_is_a_kept_path() -> None:
    loose = {p.name for p in PACKAGE.glob("*.py")}
    assert loose == {
        "__init__.py",
        "__main__.py",
        "wire.py",  # the README once showed `from convai_provider.wire import ...`
        "provider.py",  # state pickles PrivateModelProvider by this path
        "character_provider.py",  # and CharacterModelProvider by this one
    }


def test_relative_imports_are_resolved_to_their_product() -> None:
    source = "from . import faults\nfrom .store import x\nfrom ..resources import base\n"
    assert imports_in(source, "convai_provider.emulator") == {
        "convai_provider.emulator",
        "convai_provider.emulator.store",
        "convai_provider.resources",
    }
    assert product_of("convai_provider.resources") == "resources"


PULUMI_FREE = ("guards", "api", "preflight", "commands")


def test_the_client_the_preflight_and_the_commands_load_no_pulumi() -> None:
    """They run where Pulumi may be absent, and `import pulumi` costs about 0.2 s per command."""
    modules = [
        ".".join(path.relative_to(ROOT).with_suffix("").parts)
        for product in PULUMI_FREE
        for path in sorted((PACKAGE / product).glob("*.py"))
    ] + ["convai_stack.stack_config"]
    program = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'pulumi')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=120
    )
    assert json.loads(done.stdout) == []
