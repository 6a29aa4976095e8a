"""scripts/dev-up: the laptop command, run for real with the Pulumi CLI against the emulator."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

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
    env = dev_env(tmp_path, path, cache) | (extra_env or {})
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
    # The guardrails pack ran at the dev stack's settings: the keyless dev endpoint, advisory.
    assert "convai-guardrails" in preview.stdout, preview.stdout
    assert "[advisory]  convai-endpoint-key" in preview.stdout, preview.stdout
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


def dev_env(tmp_path: Path, path: str, cache: Path | None = None) -> dict[str, str]:
    """A laptop's environment for dev-up and what it serves: everything under `tmp_path`, no
    PULUMI_ or CONVAI_ setting of the test run."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "CONVAI_"))},
        "PATH": path,
        "CONVAI_EMULATOR_PORT": "0",  # any free port: other runs may share the machine
        "CONVAI_DEV_DIR": str(tmp_path / "dev"),
        "HOME": str(tmp_path / "home"),
        "XDG_CACHE_HOME": str(cache or tmp_path / "cache"),
        **DEV_UP_MAY_ASK_THE_PACKAGE_INDEX,
    }


def pulumi_by_hand(
    state: Path, env: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    """`pulumi <args>` on the dev stack in dev-up's project, as a user types it."""
    return subprocess.run(
        ["pulumi", *args, "--stack", "dev", "--non-interactive"],
        cwd=state / "dev-project",
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def documented_by_hand_settings() -> dict[str, str]:
    """The PULUMI_* values docs/dev-loop.md exports for `pulumi` by hand (the literal ones: the
    paths depend on the checkout), so that the test runs what the page tells users to."""
    page = (ROOT / "docs" / "dev-loop.md").read_text()
    section = page.split("## `pulumi` by hand on the dev stack", 1)[1]
    block = section.split("```bash", 1)[1].split("```", 1)[0]
    settings = dict(re.findall(r"\b(PULUMI_[A-Z_]+)=([\w-]+)(?=\s|$)", block))
    assert settings.get("PULUMI_CONFIG_PASSPHRASE") == "convai-models-dev", block
    return settings


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
            **documented_by_hand_settings(),
            "PULUMI_BACKEND_URL": f"file://{state}",
            "PULUMI_HOME": str(state / "home"),
        }
        httpx.delete(f"{url}/_emulator/stats", timeout=5)
        refresh = pulumi_by_hand(state, by_hand, "refresh", "--yes")
        assert refresh.returncode == 0, refresh.stdout + refresh.stderr
        stats = httpx.get(f"{url}/_emulator/stats", timeout=5).json()
        assert stats["requests"].get("/llm-models/list", 0) >= 1
        # a run of the program: the CLI asks it which plugins its packages need and, unless told
        # not to, tries to download the missing ones (github.com, get.pulumi.com); -v=1 logs it
        preview = pulumi_by_hand(state, by_hand, "preview", "--logtostderr", "-v=1")
        assert preview.returncode == 0, preview.stdout + preview.stderr
        assert "download" not in preview.stderr, preview.stderr

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

        # a second one names the first, rather than "stop what listens there"
        second = run_dev_up(tmp_path, path, "emulator")
        assert second.returncode == 1
        assert f"(pid {served.pid}) already serves this checkout on {url}" in second.stderr

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


def free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        return int(probe.getsockname()[1])


def test_refresh_and_destroy_serve_the_emulator_where_the_last_update_put_it(
    tmp_path: Path, cli_bin: Path
) -> None:
    """#21's trial: a port moved by a run that is not an `up` became the kept port, and the next
    refresh looked for the emulator where state says (the last update's URL) and found nothing."""
    path = f"{cli_bin}:{os.environ['PATH']}"
    assert run_dev_up(tmp_path, path).returncode == 0
    state = tmp_path / "dev" / ".pulumi-state"
    updated_on = (state / "emulator-port").read_text().strip()
    moved = str(free_port())
    preview = run_dev_up(tmp_path, path, "preview", extra_env={"CONVAI_EMULATOR_PORT": moved})
    assert preview.returncode == 0, preview.stdout + preview.stderr
    assert (state / "emulator-port").read_text().strip() == moved  # the kept port moved
    refresh = run_dev_up(tmp_path, path, "refresh", "--yes")
    assert refresh.returncode == 0, refresh.stdout + refresh.stderr
    assert f"Convai emulator on http://127.0.0.1:{updated_on} " in refresh.stderr
    destroy = run_dev_up(tmp_path, path, "destroy", "--yes")
    assert destroy.returncode == 0, destroy.stdout + destroy.stderr
    assert dev_models(tmp_path) == []


@pytest.mark.parametrize(
    ("command", "said"),
    [
        (["config", "set", "convai:requestTimeout", "60"], "set convai:requestTimeout there"),
        (["config", "set", "fallbackModel", "gpt-4o"], "set convai-models:fallbackModel there"),
        (["config", "set", "--path", "models[0].display_name", "x"], "convai-models:models"),
        (["config", "set-all", "--plaintext", "convai:maxRetries=1"], "set plain values there"),
        (["config", "rm", "convai-models:models"], "remove it from that file instead"),
    ],
)
def test_a_config_change_the_next_run_would_undo_is_refused(
    tmp_path: Path, cli_bin: Path, command: list[str], said: str
) -> None:
    """dev-up writes its project's stack file again at every run from the committed one, keeping
    only secrets: a plain `config set` there exited 0 and was gone at the next run (#21's trial)."""
    path = f"{cli_bin}:{os.environ['PATH']}"
    refused = run_dev_up(tmp_path, path, *command)
    assert refused.returncode == 2
    assert str(ROOT / "stacks" / "Pulumi.dev.yaml") in refused.stderr
    assert said in refused.stderr


def test_a_secret_set_through_dev_up_is_kept_from_run_to_run(tmp_path: Path, cli_bin: Path) -> None:
    path = f"{cli_bin}:{os.environ['PATH']}"
    secret = run_dev_up(tmp_path, path, "config", "set", "--secret", "otherVllmKey", "sk-dev-42")
    assert secret.returncode == 0, secret.stderr
    kept = run_dev_up(tmp_path, path, "config", "get", "otherVllmKey")
    assert kept.stdout.strip() == "sk-dev-42"
    # no endpoint names it (as after removing an adopted model's endpoint): the stack is refused,
    # and the command named is the one that removes it (the secret is dev-up's, not the file's)
    refused = run_dev_up(tmp_path, path, "preview")
    assert refused.returncode != 0
    removal = "scripts/dev-up config rm convai-models:otherVllmKey"
    assert f"remove it with `{removal}`" in refused.stdout
    removed = run_dev_up(tmp_path, path, *removal.split()[1:])
    assert removed.returncode == 0, removed.stderr
    assert run_dev_up(tmp_path, path, "preview").returncode == 0
    copy = tmp_path / "dev" / ".pulumi-state" / "dev-project" / "Pulumi.dev.yaml"
    assert copy.read_text().startswith("# Written by scripts/dev-up at every run")


def dev_project_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "dev_project", ROOT / "scripts" / "dev_project.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_secret_set_by_path_is_kept_beside_the_committed_part_of_its_key(tmp_path: Path) -> None:
    """`scripts/dev-up config set --secret --path convai:accounts.partner.apiKey ...` (how
    docs/accounts.md adds an account) nests the ciphertext inside convai:accounts: the next run
    dropped it, and the partner account had no key (#25's trial)."""
    (tmp_path / "stacks").mkdir()
    committed = {
        "config": {
            "convai:apiKey": "dev-account",
            "convai:accounts": {"partner": {"baseUrl": "http://127.0.0.1:9"}, "team_b": {}},
        }
    }
    (tmp_path / "stacks" / "Pulumi.dev.yaml").write_text(json.dumps(committed))
    previous = {
        "encryptionsalt": "v1:salt",
        "config": {
            "convai:apiKey": "dev-account",
            "convai:accounts": {
                "partner": {"baseUrl": "http://127.0.0.1:1", "apiKey": {"secure": "v1:partner"}},
                "gone": {"apiKey": {"secure": "v1:gone"}},
            },
            "convai-models:localVllmApiKey": {"secure": "v1:local"},
        },
    }
    written = dev_project_module().stack_file(tmp_path, previous, "http://127.0.0.1:8787")
    assert written["encryptionsalt"] == "v1:salt"
    assert written["config"]["convai:accounts"] == {
        "partner": {"baseUrl": "http://127.0.0.1:9", "apiKey": {"secure": "v1:partner"}},
        "team_b": {},
        "gone": {"apiKey": {"secure": "v1:gone"}},  # dev-up's secret: `config rm` removes it
    }
    assert written["config"]["convai-models:localVllmApiKey"] == {"secure": "v1:local"}


def test_a_refresh_on_another_port_than_the_last_updates_says_to_up_there_first(
    tmp_path: Path, cli_bin: Path
) -> None:
    path = f"{cli_bin}:{os.environ['PATH']}"
    assert run_dev_up(tmp_path, path).returncode == 0
    updated_on = (tmp_path / "dev" / ".pulumi-state" / "emulator-port").read_text().strip()
    moved = str(free_port())
    refused = run_dev_up(
        tmp_path, path, "refresh", "--yes", extra_env={"CONVAI_EMULATOR_PORT": moved}
    )
    assert refused.returncode == 2
    assert f"last update used the emulator on port {updated_on}" in refused.stderr
    assert f"`CONVAI_EMULATOR_PORT={moved} scripts/dev-up` (an up) first" in refused.stderr
    assert run_dev_up(tmp_path, path, "destroy", "--yes").returncode == 0
