"""scripts/install-pulumi picks the CLI in its documented order (the Go build of the CLI itself is
exercised by scripts/test on a machine without a cached CLI; it takes minutes, so no test runs
it), and what it installs runs the program the way docs/development.md says: plain `pulumi`."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from convai_stack.plugins import VLLM_PACKAGES, plugin_of
from convai_stack.stack_config import read_stack_file, stack_file
from testkit.pulumi_cli import PulumiProject

ROOT = Path(__file__).resolve().parent.parent
PIN = (ROOT / "scripts" / "pulumi-version").read_text().strip()
PARTS = ("pulumi", "pulumi-language-python", "pulumi-language-python-exec")
SCRIPTS = ("pulumi-resource-pulumi-python",)
LAYOUT = re.search(r"^layout=(\S+)$", (ROOT / "scripts" / "install-pulumi").read_text(), re.M)
CACHE = Path("cache") / "convai-models" / f"pulumi-{PIN}"


def fake_cli(directory: Path, version: str) -> Path:
    """A bin directory whose `pulumi version` prints `version`, with the files beside it."""
    directory.mkdir(parents=True)
    for name in (*PARTS, *SCRIPTS):
        tool = directory / name
        tool.write_text(f"#!/bin/sh\necho v{version}\n")
        tool.chmod(0o755)
    return directory


def fake_cache(tmp_path: Path, *, stamped: bool = True) -> Path:
    """A cache as install-pulumi leaves it; unstamped, as an older install-pulumi left it."""
    bin_dir = fake_cli(tmp_path / CACHE / "bin", PIN)
    if stamped:
        assert LAYOUT is not None
        (bin_dir.parent / "LAYOUT").write_text(f"{LAYOUT[1]}\n")
    return bin_dir


def install(
    tmp_path: Path, path: str, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
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
        timeout=timeout,
    )


def test_a_cli_on_path_at_or_above_the_pin_is_used(tmp_path: Path) -> None:
    newer = fake_cli(tmp_path / "newer", "9.0.0")
    done = install(tmp_path, f"{newer}:/usr/bin:/bin", "--no-build")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == str(newer)


def test_an_older_cli_on_path_gives_way_to_the_cached_build(tmp_path: Path) -> None:
    older = fake_cli(tmp_path / "older", "3.100.0")
    cached = fake_cache(tmp_path)
    done = install(tmp_path, f"{older}:/usr/bin:/bin", "--no-build")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == str(cached)


def test_an_incomplete_cache_is_not_used(tmp_path: Path) -> None:
    cached = fake_cache(tmp_path)
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


def test_a_cache_an_older_script_made_is_upgraded_keeping_its_cli(tmp_path: Path) -> None:
    go = shutil.which("go")
    if go is None:
        pytest.skip("no Go: the upgrade builds the language host")
    cached = fake_cache(tmp_path, stamped=False)
    cli = (cached / "pulumi").read_bytes()
    stale = install(tmp_path, "/usr/bin:/bin", "--no-build")
    assert stale.returncode == 3
    assert "predates this checkout's language host: run scripts/install-pulumi" in stale.stderr
    # The Go caches stay the machine's (they follow XDG_CACHE_HOME): a warm build takes seconds.
    warm = subprocess.run(
        [go, "env", "GOCACHE", "GOMODCACHE", "GOPATH"], capture_output=True, text=True, check=True
    ).stdout.split()
    go_env = dict(zip(("GOCACHE", "GOMODCACHE", "GOPATH"), warm, strict=True))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in go_env.items():
            patch.setenv(name, value)
        upgraded = install(tmp_path, f"{Path(go).parent}:/usr/bin:/bin", timeout=900)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.splitlines()[-1] == str(cached)
    assert (cached / "pulumi").read_bytes() == cli  # the CLI is kept, not rebuilt
    assert os.access(cached.parent / "libexec" / "pulumi-language-python", os.X_OK)
    assert install(tmp_path, "/usr/bin:/bin", "--no-build").returncode == 0


def test_plain_pulumi_runs_the_program_in_the_project_virtualenv(
    tmp_path: Path, cli_bin: Path
) -> None:
    """No PULUMI_PYTHON_CMD and no virtualenv on PATH: only Pulumi.yaml says where `pulumi` is."""
    environ = {"PATH": f"{cli_bin}:/usr/bin:/bin", "CONVAI_API_KEY": "k"}
    project = PulumiProject(tmp_path, cli_bin, environ)
    del project.env["PULUMI_PYTHON_CMD"]
    venv = yaml.safe_load((tmp_path / "Pulumi.yaml").read_text())["runtime"]["options"]
    assert Path(venv["virtualenv"]) == ROOT / ".venv"
    project.configure({"convai-models:models": []})
    done = project.preview(check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No module named" not in done.stdout + done.stderr


def test_a_staging_preview_without_its_plugins_names_the_commands_that_install_them(
    tmp_path: Path, cli_bin: Path
) -> None:
    project = PulumiProject(tmp_path, cli_bin, {})
    project.configure(read_stack_file(stack_file("staging", ROOT)))
    project.set_secret("convai:apiKey", "convai-key-0c1d")
    project.set_secret("hfToken", "hf-token-9a8b")
    done = project.preview(check=False)
    said = done.stdout + done.stderr
    assert done.returncode != 0
    for package in VLLM_PACKAGES:
        plugin = plugin_of(package)
        assert f"`pulumi plugin install resource {plugin.name} {plugin.version}`" in said
    assert "Traceback" not in said
