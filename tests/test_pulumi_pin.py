"""The pinned CLI and the Python SDK we install stay a pair Pulumi supports: CLI >= SDK."""

from __future__ import annotations

import re
import tomllib
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def as_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def sdk_lower_bound() -> str:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    spec = next(d for d in project["dependencies"] if re.match(r"pulumi\s*[><=]", d))
    found = re.search(r">=\s*([\d.]+)", spec)
    assert found, f"pyproject.toml gives the pulumi SDK no lower bound: {spec}"
    return found.group(1)


def test_the_pinned_cli_is_at_or_above_the_sdk_we_install() -> None:
    pin = (ROOT / "scripts" / "pulumi-version").read_text().strip()
    assert re.fullmatch(r"\d+\.\d+\.\d+", pin), pin
    assert as_tuple(pin) >= as_tuple(version("pulumi"))
    assert as_tuple(pin) >= as_tuple(sdk_lower_bound())
