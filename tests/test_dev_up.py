"""scripts/dev-up: the laptop command. The Pulumi CLI is replaced by a recording shim here."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent

SHIM = """#!/usr/bin/env bash
echo "$*" >> "$SHIM_LOG"
if [ "$1" = "up" ]; then
  env | grep -E '^(PULUMI_BACKEND_URL|CONVAI_API_KEY)=' >> "$SHIM_LOG"
  url=$(grep -o 'baseUrl http://[0-9.:]*' "$SHIM_LOG" | tail -1 | cut -d' ' -f2)
  curl -s -X POST -H "CONVAI-API-KEY: $CONVAI_API_KEY" "$url/llm-models/list" >> "$SHIM_LOG"
  echo >> "$SHIM_LOG"
fi
if [ "$1" = "config" ] && [ "$2" = "get" ]; then exit 1; fi
exit 0
"""


def run_dev_up(tmp_path: Path, path: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PATH": path,
        "SHIM_LOG": str(tmp_path / "pulumi.log"),
        "CONVAI_EMULATOR_PORT": "18787",
        "HOME": str(tmp_path),
    }
    env.pop("CONVAI_API_KEY", None)
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "dev-up"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_without_the_cli_it_says_how_to_install_and_fails(tmp_path: Path) -> None:
    done = run_dev_up(tmp_path, "/usr/bin:/bin")
    assert done.returncode != 0
    assert "The Pulumi CLI is not installed" in done.stderr
    assert "get.pulumi.com" in done.stderr


@pytest.mark.skipif(
    not Path("/usr/bin/curl").exists(), reason="the shim reads the emulator with curl"
)
def test_it_starts_the_emulator_and_runs_up_on_a_project_local_backend(tmp_path: Path) -> None:
    shim_dir = tmp_path / "bin"
    shim_dir.mkdir()
    shim = shim_dir / "pulumi"
    shim.write_text(SHIM)
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC)
    done = run_dev_up(tmp_path, f"{shim_dir}:{os.environ['PATH']}")
    assert done.returncode == 0, done.stderr
    log = (tmp_path / "pulumi.log").read_text()
    assert "stack select --create dev --non-interactive" in log
    assert "config set --secret localVllmApiKey EMPTY --stack dev" in log
    assert "up --yes --stack dev" in log
    assert f"PULUMI_BACKEND_URL=file://{ROOT}/.pulumi-state" in log
    assert '"status":"success"' in log  # the emulator answered while pulumi ran
    assert not (tmp_path / ".pulumi").exists()  # the user's own Pulumi login was not touched
    with pytest.raises(httpx.ConnectError):
        httpx.post("http://127.0.0.1:18787/llm-models/list", timeout=2)  # stopped afterwards
