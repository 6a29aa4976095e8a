"""The emulator's web server is the [emulator] extra: a deployment neither installs nor imports it,
and the emulator command without it says how to install it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from convai_stack.commands.emulator_command import EMULATOR_EXTRA_MODULES

ROOT = Path(__file__).resolve().parent.parent
WEB_SERVER = {"starlette", "uvicorn", "httptools", "uvloop"}

# Imports every module of the product outside the emulator, runs `python -m convai_provider
# --help`, then prints the help, which modules it imported and which web-server modules came along.
IMPORT_EVERYTHING = """
import contextlib, importlib, io, json, pkgutil, runpy, sys
import convai_provider, convai_stack
for package in (convai_provider, convai_stack):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        if not module.name.startswith("convai_provider.emulator"):
            importlib.import_module(module.name)
sys.argv = ["python -m convai_provider", "--help"]
shown = io.StringIO()
with contextlib.redirect_stdout(shown), contextlib.suppress(SystemExit):
    runpy.run_module("convai_provider", run_name="__main__", alter_sys=True)
print(json.dumps({
    "help": shown.getvalue(),
    "imported": sorted(sys.modules),
    "web_server": sorted(m for m in sys.modules if m.partition(".")[0] in WEB_SERVER),
}))
"""

# `python -m convai_provider ARGS` where the modules named in REFUSED cannot be imported, as in a
# virtualenv installed without the extra.
WITHOUT_MODULES = """
import runpy, sys

class Refuse:
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in REFUSED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, Refuse())
sys.argv = ["python -m convai_provider", *sys.argv[1:]]
runpy.run_module("convai_provider", run_name="__main__", alter_sys=True)
"""


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_closure(specs: list[str]) -> set[str]:
    """Every distribution installing SPECS pulls in, read from the installed packages' metadata."""
    todo = [Requirement(spec) for spec in specs]
    seen: set[str] = set()
    while todo:
        requirement = todo.pop()
        name = normalized(requirement.name)
        if name in seen:
            continue
        seen.add(name)
        extras = requirement.extras or {""}
        for spec in metadata.requires(requirement.name) or []:
            wanted = Requirement(spec)
            marker = wanted.marker
            if marker is None or any(marker.evaluate({"extra": e}) for e in extras):
                todo.append(wanted)
    return seen


def test_a_deployment_installs_no_web_server() -> None:
    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    closure = installed_closure(core)
    assert "pulumi" in closure and "grpcio" in closure  # the walk followed the dependencies
    assert not closure & WEB_SERVER
    # The Pulumi CLI's virtualenv, what a deployment runs: the project with no extra.
    requirements = (ROOT / "requirements.txt").read_text().splitlines()
    assert [line for line in requirements if line and not line.startswith("#")] == [
        "-c constraints.txt",
        "-e .",
    ]


def test_the_package_and_the_other_commands_import_no_web_server() -> None:
    done = subprocess.run(
        [sys.executable, "-c", f"WEB_SERVER = {sorted(WEB_SERVER)!r}\n{IMPORT_EVERYTHING}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    report = json.loads(done.stdout)
    assert "emulator" in report["help"] and "preflight" in report["help"]
    for module in ("convai_provider.provider", "convai_provider.character_provider"):
        assert module in report["imported"]
    assert "convai_stack.program" in report["imported"]
    assert report["web_server"] == []


def run_without(tmp_path: Path, missing: str) -> subprocess.CompletedProcess[str]:
    """`python -m convai_provider emulator` where MISSING and its submodules cannot be imported."""
    return subprocess.run(
        [
            sys.executable,
            "-c",
            f"REFUSED = {{{missing!r}}}\n{WITHOUT_MODULES}",
            "emulator",
            "--port",
            "0",
            "--db",
            str(tmp_path / "emulator.sqlite3"),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


@pytest.mark.parametrize("missing", ["uvicorn", "starlette"])
def test_the_emulator_without_its_extra_says_how_to_install_it(
    tmp_path: Path, missing: str
) -> None:
    done = run_without(tmp_path, missing)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        f"error: the emulator needs its extra ({missing} is not installed): "
        "pip install 'convai-models[emulator]'\n"
    )
    assert not (tmp_path / "emulator.sqlite3").exists()


def test_a_missing_module_outside_the_extra_is_not_blamed_on_it(tmp_path: Path) -> None:
    done = run_without(tmp_path, "sqlite3")
    assert done.returncode == 1
    assert "ModuleNotFoundError: No module named 'sqlite3'" in done.stderr
    assert "[emulator]" not in done.stderr


def test_the_modules_the_command_blames_on_the_extra_are_what_the_extra_installs() -> None:
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    installs = {normalized(Requirement(spec).name) for spec in extra["emulator"]}
    provided = {
        module
        for module, distributions in metadata.packages_distributions().items()
        if any(normalized(name) in installs for name in distributions)
    }
    assert set(EMULATOR_EXTRA_MODULES) <= provided
    imported = {
        line.split()[1].split(".")[0]
        for path in (ROOT / "convai_provider" / "emulator").glob("*.py")
        for line in path.read_text().splitlines()
        if line.startswith(("import ", "from "))
    }
    assert imported & provided <= set(EMULATOR_EXTRA_MODULES)
