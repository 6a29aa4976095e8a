"""A team's stack on a shared backend: the real Pulumi CLI on a real PostgreSQL server.

The dev program's stack lives in a `postgres://` backend (docs/team.md); two operators, each with
a checkout and a PULUMI_HOME of their own, share it through Pulumi's lock; `pulumi cancel` only
removes that lock; the database holds no key in clear; `scripts/dev-up` can keep its state there.
The server is testkit/postgres.py's, one for the run (the `postgres` fixture, tests/conftest.py).
"""

from __future__ import annotations

import base64
import binascii
import gzip
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from convai_provider.api.wire import REGISTER_PATH
from convai_provider.emulator.process import EmulatorProcess
from testkit.convai import CONVAI_KEY, live
from testkit.postgres import (
    SERVER_ACCOUNT,
    NoPostgresError,
    PostgresServer,
    find_postgres_bin,
)
from testkit.postgres import main as postgres_main
from testkit.processes import group_members
from testkit.pulumi_cli import COMMAND_TIMEOUT, PulumiProject
from testkit.waiting import wait_for
from tests.test_dev_up import dev_models, run_dev_up

ROOT = Path(__file__).resolve().parent.parent
ENDPOINT_KEY = "sk-team-endpoint-4e7a19"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
"""What marks a secret value in Pulumi state."""
SLOW_REGISTER_MS = 8_000
"""How long the first operator's register is held, and so its `up` with the lock: the second
operator's command, refused at the lock before any program runs, takes about a second here."""
STATE_TABLE = "pulumi_state"
"""The table Pulumi's postgres backend creates (`?table=` in the URL names another)."""


@pytest.fixture
def team_db(postgres: PostgresServer) -> str:
    """A database of its own on the run's server."""
    return postgres.create_database(f"team_{secrets.token_hex(4)}")


def dev_stack(convai: EmulatorProcess) -> dict[str, Any]:
    """The committed dev stack's configuration, its Convai this run's emulator."""
    document = yaml.safe_load((ROOT / "stacks" / "Pulumi.dev.yaml").read_text())
    return dict(document["config"]) | {"convai:baseUrl": convai.url}


@pytest.fixture
def alice(
    tmp_path: Path,
    cli_bin: Path,
    convai: EmulatorProcess,
    postgres: PostgresServer,
    team_db: str,
) -> PulumiProject:
    """The operator who creates the stack, with both keys as config secrets."""
    (tmp_path / "alice").mkdir()
    project = PulumiProject(
        tmp_path / "alice", cli_bin, {"PULUMI_BACKEND_URL": postgres.url(team_db)}
    )
    project.configure(dev_stack(convai))
    project.set_secret("convai:apiKey", CONVAI_KEY)
    project.set_secret("localVllmApiKey", ENDPOINT_KEY)
    return project


@pytest.fixture
def bob(
    tmp_path: Path, cli_bin: Path, postgres: PostgresServer, team_db: str, alice: PulumiProject
) -> PulumiProject:
    """A second operator on the same stack: his own checkout (the committed stack file, so the
    same secrets salt) and his own PULUMI_HOME."""
    (tmp_path / "bob").mkdir()
    shutil.copy(alice.stack_file, tmp_path / "bob" / alice.stack_file.name)
    return PulumiProject(
        tmp_path / "bob", cli_bin, {"PULUMI_BACKEND_URL": postgres.url(team_db)}, new_stack=False
    )


@dataclass
class HeldUp:
    process: subprocess.Popen[str]
    output: str = ""
    """What it wrote, once it has ended."""


@contextmanager
def up_held_in_its_register(project: PulumiProject, convai: EmulatorProcess) -> Iterator[HeldUp]:
    """`project`'s `up`, inside its register (held for SLOW_REGISTER_MS, so holding the stack's
    lock) while the block runs; finished after the block, however it ends."""
    convai.inject(path=REGISTER_PATH, latency_ms=SLOW_REGISTER_MS, count=1)
    held = HeldUp(project.start("up", "--yes", "--skip-preview"))
    try:
        wait_for(lambda: convai.request_counts().get(REGISTER_PATH, 0) >= 1, "the register")
        yield held
    finally:
        held.output, _ = held.process.communicate(timeout=COMMAND_TIMEOUT)


def stored_keys(postgres: PostgresServer, database: str) -> list[str]:
    return postgres.psql(database, f"SELECT key FROM {STATE_TABLE} ORDER BY key").splitlines()


def locks(postgres: PostgresServer, database: str) -> list[str]:
    return [k for k in stored_keys(postgres, database) if "/.pulumi/locks/" in k]


BASE64_RUN = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")


def decoded_runs(text: str) -> Iterator[str]:
    """What each long base64 run in `text` encodes, as text (gunzipped where gzip)."""
    for run in BASE64_RUN.findall(text):
        body = run.rstrip("=")
        body = body[: len(body) - 1] if len(body) % 4 == 1 else body
        try:
            raw = base64.b64decode(body + "=" * (-len(body) % 4))
            if raw.startswith(b"\x1f\x8b"):
                raw = gzip.decompress(raw)
        except (binascii.Error, OSError, EOFError):
            continue
        yield raw.decode("latin-1")


def stored_text(postgres: PostgresServer, database: str) -> str:
    """Every table's contents as text, and what they encode: the backend stores each file as
    base64 in JSON; a second pass decodes any base64 value inside those files."""
    layers = ["\n".join(postgres.contents(database).values())]
    for _ in range(2):
        layers.append("\n".join(decoded_runs(layers[-1])))
    return "\n".join(layers)


def assert_no_key_in_clear(postgres: PostgresServer, database: str) -> None:
    stored = stored_text(postgres, database)
    # The scan read the state itself: the model, its secrets, the provider (pickled, a secret).
    assert "dev-llama" in stored and SECRET_SIG in stored and '"__provider"' in stored
    for key in (CONVAI_KEY, ENDPOINT_KEY):
        assert key not in stored, f"{key} is in the database in clear"


# One operator -----------------------------------------------------------------------------------


def test_the_dev_program_runs_on_postgres_and_the_database_holds_no_key_in_clear(
    alice: PulumiProject, convai: EmulatorProcess, postgres: PostgresServer, team_db: str
) -> None:
    alice.up()
    assert set(live(convai)) == {"dev-llama"}
    alice.run("preview", "--expect-no-changes")
    assert f"{team_db}/.pulumi/stacks/convai-models/e2e.json" in stored_keys(postgres, team_db)
    assert list((alice.dir / "state").iterdir()) == []  # the file backend was not used
    assert_no_key_in_clear(postgres, team_db)

    alice.destroy()
    assert live(convai) == {}
    assert alice.resources() == {}
    assert locks(postgres, team_db) == []
    assert_no_key_in_clear(postgres, team_db)  # the history keeps every checkpoint


# Two operators ----------------------------------------------------------------------------------


def test_a_second_up_during_the_first_is_refused_by_the_lock_and_succeeds_after(
    alice: PulumiProject,
    bob: PulumiProject,
    convai: EmulatorProcess,
    postgres: PostgresServer,
    team_db: str,
) -> None:
    with up_held_in_its_register(alice, convai) as first:
        refused = bob.up(check=False)
    assert first.process.returncode == 0, first.output

    told = refused.stdout + refused.stderr
    assert refused.returncode != 0
    assert "the stack is currently locked by 1 lock(s)" in told, told
    assert "`pulumi cancel`" in told
    assert f"(pid {first.process.pid})" in told  # the lock names alice's running CLI
    assert postgres.password not in told  # the URL in the message has its credentials masked
    assert convai.request_counts()[REGISTER_PATH] == 1  # bob's refused up called nothing
    assert locks(postgres, team_db) == []

    bob.up()
    bob.run("preview", "--expect-no-changes")
    assert set(live(convai)) == {"dev-llama"}
    assert convai.request_counts()[REGISTER_PATH] == 1


def test_pulumi_cancel_removes_the_lock_but_the_running_up_goes_on(
    alice: PulumiProject,
    bob: PulumiProject,
    convai: EmulatorProcess,
    postgres: PostgresServer,
    team_db: str,
) -> None:
    with up_held_in_its_register(alice, convai) as first:
        assert len(locks(postgres, team_db)) == 1
        cancel = bob.run("cancel", "--yes")
        assert "The currently running update for 'e2e' has been canceled!" in cancel.stdout
        assert locks(postgres, team_db) == []
    # Nothing stopped alice's up: it finished its register and recorded it, unguarded by a lock.
    assert first.process.returncode == 0, first.output
    assert "there was a problem deleting the lock" in first.output
    assert set(live(convai)) == {"dev-llama"}
    assert "dev-llama" in alice.resources()


# scripts/dev-up ---------------------------------------------------------------------------------


def test_dev_up_keeps_the_dev_stack_on_the_backend_its_environment_names(
    tmp_path: Path, cli_bin: Path, postgres: PostgresServer, team_db: str
) -> None:
    path = f"{cli_bin}:{os.environ['PATH']}"
    backend = {"CONVAI_DEV_BACKEND_URL": postgres.url(team_db)}

    up = run_dev_up(tmp_path, path, extra_env=backend)
    assert up.returncode == 0, up.stdout + up.stderr
    assert dev_models(tmp_path) == ["dev-llama"]
    assert f"{team_db}/.pulumi/stacks/convai-models/dev.json" in stored_keys(postgres, team_db)
    assert not (tmp_path / "dev" / ".pulumi-state" / ".pulumi").exists()  # no file backend

    again = run_dev_up(tmp_path, path, "preview", "--expect-no-changes", extra_env=backend)
    assert again.returncode == 0, again.stdout + again.stderr


# The server itself ------------------------------------------------------------------------------


def test_the_server_runs_unprivileged_on_loopback_only_and_stops_with_nothing_left(
    postgres: PostgresServer,
) -> None:
    with PostgresServer.start(postgres.bin) as server:  # a second one, to watch it stop
        assert server.psql("postgres", "SHOW listen_addresses").strip() == "127.0.0.1"
        assert server.psql("postgres", "SHOW unix_socket_directories").strip() == ""
        assert server._proc is not None
        pid = server._proc.pid
        uid = int(Path(f"/proc/{pid}/status").read_text().split("Uid:")[1].split()[0])
        root = os.geteuid() == 0
        assert uid == (pwd.getpwnam(SERVER_ACCOUNT).pw_uid if root else os.geteuid())
        assert uid != 0
        port, home = server.port, server.home
    assert group_members(pid) == []
    assert not home.exists()
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), 2):
        pass


def test_binaries_are_found_through_debians_layout_newest_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for version in ("13", "15", "9"):
        bin_dir = tmp_path / version / "bin"
        bin_dir.mkdir(parents=True)
        for tool in ("initdb", "postgres", "psql"):
            (bin_dir / tool).write_text("")
    (tmp_path / "15" / "bin" / "initdb").unlink()  # an incomplete install is passed over
    monkeypatch.setattr("testkit.postgres.DEBIAN_LAYOUT", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))  # no pg_config
    assert find_postgres_bin() == tmp_path / "13" / "bin"


def test_without_binaries_the_error_says_how_to_install_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("testkit.postgres.DEBIAN_LAYOUT", tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(NoPostgresError, match=r"apt-get install postgresql"):
        find_postgres_bin()
    with pytest.raises(SystemExit, match=r"no PostgreSQL server binaries"):
        postgres_main()  # what scripts/test asks before it installs or skips
