"""The package layout is the architecture: each product imports only what lies beneath it.

The library, `convai_provider` (guards, api, preflight, resources, emulator, in that order), never
imports the application, `convai_stack` (the program and its stack schema, then the operator
commands built on both). Within each, a product imports only products listed before it. A product
importing one it should not is a design change, to be made here on purpose rather than by accident
(docs/development.md, 'Where things live', draws the same layout).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LIBRARY = ROOT / "convai_provider"
APPLICATION = ROOT / "convai_stack"

LIBRARY_PRODUCTS = ("guards", "api", "preflight", "resources", "emulator")
MAY_IMPORT = {
    "guards": set(),
    "api": {"guards"},
    "preflight": {"guards", "api"},  # api.retry: one retry policy for the whole product
    "resources": {"guards", "api", "preflight"},
    "emulator": {"guards", "api"},
    "the public surface": {"guards", "api", "preflight", "resources"},
    "program": {"guards", "api", "resources", "the public surface"},
    "commands": {"guards", "api", "preflight", "resources", "emulator", "program"},
}
"""Which products each product may import. The library's products never name the application's."""

THIRD_PARTY_BANNED = {
    "guards": {"pulumi", "starlette", "uvicorn"},
    "api": {"pulumi", "starlette", "uvicorn"},
    "preflight": {"pulumi", "starlette", "uvicorn"},
    "resources": {"starlette", "uvicorn"},
    "emulator": {"pulumi"},
    "the public surface": {"starlette", "uvicorn"},
    "program": {"starlette", "uvicorn"},
    "commands": {"starlette", "uvicorn"},
}

KEPT_ENTRY_POINT = LIBRARY / "__main__.py"
"""`python -m convai_provider`, kept from when the commands lived in the library: it imports them
when run, never when the library is imported."""


def imported_modules(path: Path, *, top_level_only: bool = False) -> set[str]:
    """Every module `path` imports, relative imports resolved (only the module's own top level:
    what importing it runs)."""
    package = ".".join(path.relative_to(ROOT).parts[:-1])
    return imports_in(path.read_text(), package, top_level_only=top_level_only)


def imports_in(source: str, package: str, *, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(source)
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
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
    """`convai_provider` alone, and its loose modules, are the public surface, which loads the
    resources; `convai_stack` is the program but for its commands (and `python -m convai_stack`)."""
    parts = module.split(".")
    if parts[0] == "convai_stack":
        return "commands" if parts[1:2] in (["commands"], ["__main__"]) else "program"
    if parts[0] == "convai_provider":
        return parts[1] if parts[1:2] and parts[1] in LIBRARY_PRODUCTS else "the public surface"
    return None


def files_of(product: str) -> list[Path]:
    if product == "the public surface":
        return sorted(LIBRARY.glob("*.py"))
    if product in ("program", "commands"):
        return sorted(p for p in APPLICATION.rglob("*.py") if product_of(module_of(p)) == product)
    return sorted((LIBRARY / product).rglob("*.py"))


def module_of(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


@pytest.mark.parametrize("product", sorted(MAY_IMPORT))
def test_a_product_imports_only_what_lies_beneath_it(product: str) -> None:
    wrong = []
    for path in files_of(product):
        imports = imported_modules(path, top_level_only=path == KEPT_ENTRY_POINT)
        for module in imports:
            other = product_of(module)
            if other not in (None, product) and other not in MAY_IMPORT[product]:
                wrong.append(f"{path.relative_to(ROOT)} imports {module}")
            if module.split(".")[0] in THIRD_PARTY_BANNED[product]:
                wrong.append(f"{path.relative_to(ROOT)} imports {module}")
    assert files_of(product), f"{product} has no modules: update MAY_IMPORT"
    assert wrong == [], (
        f"{product} may import only {sorted(MAY_IMPORT[product])} of this project: move the "
        "code, or change the layout on purpose (MAY_IMPORT here and docs/development.md, 'Where "
        "things live')"
    )


def test_importing_the_whole_library_loads_no_application_module() -> None:
    """The static rule above, checked by running it: every library module imported, then
    `sys.modules` holds nothing of `convai_stack`."""
    modules = [module_of(p) for p in sorted(LIBRARY.rglob("*.py"))]
    assert modules_of_package_loaded_by(modules, "convai_stack") == []


def test_the_kept_entry_point_runs_the_applications_commands() -> None:
    assert imported_modules(KEPT_ENTRY_POINT) - imported_modules(
        KEPT_ENTRY_POINT, top_level_only=True
    ) == {"convai_stack.commands.main"}


def test_every_module_belongs_to_a_product_or_is_a_kept_path() -> None:
    loose = {p.name for p in LIBRARY.glob("*.py")}
    assert loose == {
        "__init__.py",
        "__main__.py",  # `python -m convai_provider`: the commands, as before they moved
        "wire.py",  # the README once showed `from convai_provider.wire import ...`
        "provider.py",  # state pickles PrivateModelProvider by this path
        "character_provider.py",  # and CharacterModelProvider by this one
    }
    packages = {p.parent.name for p in LIBRARY.glob("*/__init__.py")}
    assert packages == set(LIBRARY_PRODUCTS)
    assert {p.parent.name for p in APPLICATION.glob("*/__init__.py")} == {"commands"}


def test_relative_imports_are_resolved_to_their_product() -> None:
    source = "from . import faults\nfrom .store import x\nfrom ..resources import base\n"
    assert imports_in(source, "convai_provider.emulator") == {
        "convai_provider.emulator",
        "convai_provider.emulator.store",
        "convai_provider.resources",
    }
    assert product_of("convai_provider.resources") == "resources"
    assert product_of("convai_provider.wire") == "the public surface"
    assert product_of("convai_stack.commands.main") == "commands"
    assert product_of("convai_stack.stack_config") == "program"


PULUMI_FREE = ("guards", "api", "preflight", "commands")


def test_the_client_the_preflight_and_the_commands_load_no_pulumi() -> None:
    """They run where Pulumi may be absent, and `import pulumi` costs about 0.2 s per command."""
    modules = [module_of(path) for product in PULUMI_FREE for path in files_of(product)] + [
        "convai_stack.stack_config"
    ]
    assert modules_of_package_loaded_by(modules, "pulumi") == []


def modules_of_package_loaded_by(modules: list[str], package: str) -> list[str]:
    """The modules of `package` a fresh interpreter holds after importing `modules`."""
    program = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == {package!r})))"
    )
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, check=True, timeout=120
    )
    loaded: list[str] = json.loads(done.stdout)
    return loaded
