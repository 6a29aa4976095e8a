"""scripts/dev-up: the laptop command, run for real with the Pulumi CLI against the emulator."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from convai_provider.emulator.store import ConvaiStore, account_for_key
from testkit.processes import end_session, session_members

ROOT = Path(__file__).resolve().parent.parent
DEV_UP_MAY_ASK_THE_PACKAGE_INDEX = {"TESTKIT_NETWORK_GUARD": "record"}
"""dev-up installs the project into a fresh virtualenv with pip, which asks the package index:
the suite's one contact off the machine, let through and listed in the run's summary
(testkit/resolver_override)."""


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
        **DEV_UP_MAY_ASK_THE_PACKAGE_INDEX,
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


def dev_env(tmp_path: Path, path: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "CONVAI_"))},
        "PATH": path,
        "CONVAI_EMULATOR_PORT": "0",
        "CONVAI_DEV_DIR": str(tmp_path / "dev"),
        "HOME": str(tmp_path / "home"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
        **DEV_UP_MAY_ASK_THE_PACKAGE_INDEX,
    }


def test_the_emulator_outlives_dev_up_and_plain_pulumi_and_the_commands_reach_it(
    tmp_path: Path, cli_bin: Path
) -> None:
    path = f"{cli_bin}:{os.environ['PATH']}"
    up = run_dev_up(tmp_path, path)
    assert up.returncode == 0, up.stdout + up.stderr
    port = (tmp_path / "dev" / ".pulumi-state" / "emulator-port").read_text().strip()
    served = subprocess.Popen(
        ["bash", str(ROOT / "scripts" / "dev-up"), "emulator"],
        env=dev_env(tmp_path, path),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert served.stderr is not None
        banner = served.stderr.readline()
        assert f"Convai emulator on http://127.0.0.1:{port} " in banner, banner
        url = f"http://127.0.0.1:{port}"

        # dev-up uses the emulator that serves, rather than fail on its busy port
        preview = run_dev_up(tmp_path, path, "preview", "--expect-no-changes")
        assert preview.returncode == 0, preview.stdout + preview.stderr
        assert "of scripts/dev-up emulator" in preview.stderr

        # plain pulumi in dev-up's project, none of dev-up's Convai variables: the dev emulator
        state = tmp_path / "dev" / ".pulumi-state"
        by_hand = {
            **dev_env(tmp_path, path),
            "PULUMI_BACKEND_URL": f"file://{state}",
            "PULUMI_HOME": str(state / "home"),
            "PULUMI_CONFIG_PASSPHRASE": "convai-models-dev",
            "PULUMI_SKIP_UPDATE_CHECK": "true",
        }
        httpx.delete(f"{url}/_emulator/stats", timeout=5)
        refresh = subprocess.run(
            ["pulumi", "refresh", "--yes", "--stack", "dev", "--non-interactive"],
            cwd=state / "dev-project",
            env=by_hand,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert refresh.returncode == 0, refresh.stdout + refresh.stderr
        stats = httpx.get(f"{url}/_emulator/stats", timeout=5).json()
        assert stats["requests"].get("/llm-models/list", 0) >= 1

        # the operator commands: the dev stack's key in plain text, no CONVAI_API_KEY (the port
        # is not the stack file's 8787 here, so it is given)
        listed = subprocess.run(
            [sys.executable, "-m", "convai_provider", "list", "--stack", "dev", "--base-url", url],
            cwd=ROOT,
            env=dev_env(tmp_path, path),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert listed.returncode == 0, listed.stderr
        assert "dev-llama" in listed.stdout

        served.send_signal(signal.SIGINT)  # Ctrl-C
        assert served.wait(timeout=30) == 130
        assert session_members(served.pid) == []  # the emulator went with it
        assert not (state / "emulator-served").exists()
    finally:
        end_session(served.pid)
        served.communicate(timeout=30)
    assert run_dev_up(tmp_path, path, "destroy", "--yes").returncode == 0
    assert dev_models(tmp_path) == []


def test_commands_that_need_no_convai_run_while_the_port_is_taken(
    tmp_path: Path, cli_bin: Path
) -> None:
    path = f"{cli_bin}:{os.environ['PATH']}"
    assert run_dev_up(tmp_path, path).returncode == 0
    port = int((tmp_path / "dev" / ".pulumi-state" / "emulator-port").read_text())
    with socket.create_server(("127.0.0.1", port)):
        outputs = run_dev_up(tmp_path, path, "stack", "output", "--json")
        assert outputs.returncode == 0, outputs.stderr
        assert "dev-llama" in json.loads(outputs.stdout)["models"]
        config = run_dev_up(tmp_path, path, "config", "get", "convai:baseUrl")
        assert config.stdout.strip() == f"http://127.0.0.1:{port}"
        busy = run_dev_up(tmp_path, path, "refresh", "--yes")
        assert busy.returncode != 0
        assert f"port {port} on 127.0.0.1 is in use" in busy.stderr
        assert "set CONVAI_EMULATOR_PORT to another port" in busy.stderr
    assert run_dev_up(tmp_path, path, "destroy", "--yes").returncode == 0
