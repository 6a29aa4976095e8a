"""constraints.txt pins every dependency pyproject.toml names, within pyproject's ranges."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pairs = (line.split("==") for line in lines if line and not line.startswith("#"))
    return {normalized(name): pinned for name, pinned in pairs}


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"].values()
    specs = [*project["dependencies"], *(spec for extra in extras for spec in extra)]
    return [Requirement(spec) for spec in specs]


def test_every_dependency_is_pinned_within_its_range() -> None:
    pinned = pins()
    for requirement in declared():
        if requirement.marker and not requirement.marker.evaluate():
            continue
        version = pinned.get(normalized(requirement.name))
        assert version, f"{requirement.name} is not in constraints.txt: run scripts/lock"
        assert requirement.specifier.contains(version), (
            f"constraints.txt pins {requirement.name}=={version}, outside {requirement.specifier}"
        )


def test_every_dependency_has_an_upper_bound() -> None:
    for requirement in declared():
        assert any(s.operator in ("<", "<=", "==", "~=") for s in requirement.specifier), (
            f"{requirement} has no upper bound"
        )
