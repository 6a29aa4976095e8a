"""scripts/dev-up: the laptop command, run for real with the Pulumi CLI against the emulator."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import httpx
import pytest

from convai_provider.emulator.store import ConvaiStore, account_for_key

ROOT = Path(__file__).resolve().parent.parent


def run_dev_up(
    tmp_path: Path,
    path: str,
    *args: str,
    cache: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "CONVAI_"))},
        "PATH": path,
        "CONVAI_EMULATOR_PORT": "0",  # any free port: other runs may share the machine
        "CONVAI_DEV_DIR": str(tmp_path / "dev"),
        "HOME": str(tmp_path / "home"),
        "XDG_CACHE_HOME": str(cache or tmp_path / "cache"),
        **(extra_env or {}),
    }
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / "dev-up"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def tracked_changes() -> str:
    return subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def dev_models(tmp_path: Path) -> list[str]:
    store = ConvaiStore(tmp_path / "dev" / ".convai-emulator.sqlite3")
    try:
        return [m.model_group_name for m in store.models(account_for_key("dev-account"))]
    finally:
        store.close()


def test_without_the_cli_or_go_it_says_how_to_install_and_fails(tmp_path: Path) -> None:
    done = run_dev_up(tmp_path, "/usr/bin:/bin")
    assert done.returncode != 0
    assert "The Pulumi CLI v" in done.stderr and "nor Go" in done.stderr
    assert "get.pulumi.com" in done.stderr


def test_up_preview_and_destroy_on_the_dev_stack_leave_tracked_files_alone(
    tmp_path: Path, cli_bin: Path
) -> None:
    path = f"{cli_bin}:{os.environ['PATH']}"
    before = tracked_changes()

    up = run_dev_up(tmp_path, path)
    assert up.returncode == 0, up.stdout + up.stderr
    assert dev_models(tmp_path) == ["dev-llama"]
    assert (tmp_path / "dev" / ".pulumi-state" / ".pulumi" / "stacks").is_dir()  # file backend
    preview = run_dev_up(tmp_path, path, "preview", "--expect-no-changes")
    assert preview.returncode == 0, preview.stdout + preview.stderr
    outputs = run_dev_up(tmp_path, path, "stack", "output", "--json")
    assert json.loads(outputs.stdout)["models"]["dev-llama"]["model_name"] == "llama-3.1-8b"
    recover = run_dev_up(tmp_path, path, "recover")
    assert recover.returncode == 0, recover.stdout + recover.stderr
    assert "nothing to settle" in recover.stderr
    destroy = run_dev_up(tmp_path, path, "destroy", "--yes")
    assert destroy.returncode == 0, destroy.stdout + destroy.stderr
    assert dev_models(tmp_path) == []
    url = re.search(r"Convai emulator on (http://\S+)", destroy.stderr)
    assert url, destroy.stderr

    assert tracked_changes() == before
    assert not (tmp_path / "home" / ".pulumi").exists()  # your own Pulumi login is not touched
    with pytest.raises(httpx.ConnectError):
        httpx.post(f"{url.group(1)}/llm-models/list", timeout=2)  # stopped afterwards
