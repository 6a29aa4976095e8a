"""The programs the tests run for real (the Pulumi CLI, the Kubernetes control plane, PostgreSQL),
found on this machine or named as missing, with how to get them."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


Found = TypeVar("Found")


class MissingToolError(Exception):
    """A program the tests need is not on this machine; the message says how to get it."""


def cached_bin(variable: str, installer: str, missing: type[MissingToolError], what: str) -> Path:
    """The bin directory $`variable` names, else the one `scripts/<installer> --no-build` prints:
    it finds what an earlier run built, and never builds (a build takes minutes to half an
    hour). Without either, `missing`, saying `what` is missing and the installer's words."""
    given = os.environ.get(variable)
    if given:
        return Path(given)
    found = subprocess.run(
        ["bash", str(SCRIPTS / installer), "--no-build"],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode != 0:
        raise missing(f"no {what}: {found.stderr.strip()}")
    return Path(found.stdout.strip().splitlines()[-1])


def required(find: Callable[[], Found], tests: str) -> Found:
    """What `find` finds, for a test fixture. When it says a program is missing, the test is
    skipped; under CI (CI=true), which must run `tests`, it fails."""
    import pytest  # here, so the benchmarks, which find the CLI through this module, need no pytest

    try:
        return find()
    except MissingToolError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{exc} (CI must run {tests})", pytrace=False)
        pytest.skip(str(exc))
