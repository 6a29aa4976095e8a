"""scripts/install-pulumi picks the CLI in its documented order (the Go build itself is exercised
by scripts/test on a machine without a cached CLI; it takes minutes, so no test runs it)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PIN = (ROOT / "scripts" / "pulumi-version").read_text().strip()
PARTS = ("pulumi", "pulumi-language-python", "pulumi-language-python-exec")
SCRIPTS = ("pulumi-resource-pulumi-python",)


def fake_cli(directory: Path, version: str) -> Path:
    """A bin directory whose `pulumi version` prints `version`, with the files beside it."""
    directory.mkdir(parents=True)
    for name in (*PARTS, *SCRIPTS):
        tool = directory / name
        tool.write_text(f"#!/bin/sh\necho v{version}\n")
        tool.chmod(0o755)
    return directory


def install(tmp_path: Path, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": path,
        "HOME": str(tmp_path / "home"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "install-pulumi"), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_a_cli_on_path_at_or_above_the_pin_is_used(tmp_path: Path) -> None:
    newer = fake_cli(tmp_path / "newer", "9.0.0")
    done = install(tmp_path, f"{newer}:/usr/bin:/bin", "--no-build")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == str(newer)


def test_an_older_cli_on_path_gives_way_to_the_cached_build(tmp_path: Path) -> None:
    older = fake_cli(tmp_path / "older", "3.100.0")
    cached = fake_cli(tmp_path / "cache" / "convai-models" / f"pulumi-{PIN}" / "bin", PIN)
    done = install(tmp_path, f"{older}:/usr/bin:/bin", "--no-build")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == str(cached)


def test_an_incomplete_cache_is_not_used(tmp_path: Path) -> None:
    cached = fake_cli(tmp_path / "cache" / "convai-models" / f"pulumi-{PIN}" / "bin", PIN)
    (cached / "pulumi-language-python").unlink()
    done = install(tmp_path, "/usr/bin:/bin", "--no-build")
    assert done.returncode == 3
    assert "run scripts/install-pulumi" in done.stderr


def test_without_cli_or_go_it_says_how_to_install(tmp_path: Path) -> None:
    done = install(tmp_path, "/usr/bin:/bin")
    assert done.returncode == 1
    assert f"The Pulumi CLI v{PIN} or newer is needed" in done.stderr
    assert "get.pulumi.com" in done.stderr and done.stdout == ""


def test_unknown_options_are_refused(tmp_path: Path) -> None:
    done = install(tmp_path, "/usr/bin:/bin", "--bogus")
    assert done.returncode == 2 and "unknown option '--bogus'" in done.stderr
