"""A real PostgreSQL server of this machine, started for a test run and stopped after it.

    with PostgresServer.start(find_postgres_bin(), workdir) as server:
        url = server.url(server.create_database("team"))  # a postgres:// backend URL

The binaries come from `pg_config --bindir`, else Debian's layout /usr/lib/postgresql/<ver>/bin
(the newest). The server listens on a free port of 127.0.0.1 only (no Unix socket), with a
password, its data in a fresh directory. It refuses to run as root, so as root it runs as a
dedicated system account, created once; otherwise as whoever runs the tests. Queries go through
the same installation's `psql`: no client library to install. Shared by the tests and benchmarks.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from convai_provider.emulator.process import StoppedOnExit, end_child

from .processes import die_with_parent, group_members
from .tools import MissingToolError

SERVER_ACCOUNT = "convai-postgres"
"""The system account the server runs as when the tests run as root."""
SUPERUSER = "convai"
DEBIAN_LAYOUT = Path("/usr/lib/postgresql")
INSTALL_HINT = (
    "install Debian's package (apt-get install postgresql) or put its pg_config on PATH; "
    "scripts/test installs it by itself under CI=true as root"
)
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
READY = "database system is ready to accept connections"


class NoPostgresError(MissingToolError):
    """No PostgreSQL server on this machine, or it could not start; the message says why."""


def find_postgres_bin() -> Path:
    """The bin directory holding `initdb`, `postgres` and `psql`."""
    for candidate in _candidate_bin_dirs():
        if all((candidate / tool).is_file() for tool in ("initdb", "postgres", "psql")):
            return candidate
    raise NoPostgresError(f"no PostgreSQL server binaries (initdb, postgres): {INSTALL_HINT}")


def _candidate_bin_dirs() -> list[Path]:
    found = []
    if pg_config := shutil.which("pg_config"):
        bindir = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if bindir:
            found.append(Path(bindir))
    versions = [p for p in DEBIAN_LAYOUT.glob("*/bin") if p.parent.name.isdigit()]
    found += sorted(versions, key=lambda p: int(p.parent.name), reverse=True)
    return found


def server_account() -> str | None:
    """The account to run the server as: None for ourselves, unless we are root."""
    if os.geteuid() != 0:
        return None
    with contextlib.suppress(KeyError):
        return pwd.getpwnam(SERVER_ACCOUNT).pw_name
    created = subprocess.run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--home-dir",
            "/nonexistent",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            "convai-models test PostgreSQL",
            SERVER_ACCOUNT,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    try:  # another test run may have created it meanwhile
        return pwd.getpwnam(SERVER_ACCOUNT).pw_name
    except KeyError:
        raise NoPostgresError(
            f"the server refuses root, and `useradd {SERVER_ACCOUNT}` failed: "
            f"{created.stderr.strip()}"
        ) from None


def free_loopback_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresServer(StoppedOnExit):
    """A running server; `stop()` (or leaving the `with`) ends it and everything it started."""

    def __init__(self, bin_dir: Path, home: Path, account: str | None) -> None:
        self.bin = bin_dir
        self.home = home
        self.data = home / "data"
        self.log = home / "server.log"
        self.account = account
        entry = pwd.getpwnam(account) if account else None
        self._uid = entry.pw_uid if entry else None
        self._gid = entry.pw_gid if entry else None
        self.password = secrets.token_hex(16)
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, bin_dir: Path) -> PostgresServer:
        """initdb a new cluster in a fresh directory and start the server on it."""
        # In the system's temporary directory, which the server's account can reach (a pytest
        # tmp_path cannot: its parents are root's alone); mkdtemp makes it 0700.
        server = cls(bin_dir, Path(tempfile.mkdtemp(prefix="convai-postgres-")), server_account())
        try:
            server._initdb()
            server._run()
        except BaseException:
            server.stop()
            raise
        return server

    def _owned_by_server(self, path: Path) -> None:
        if self._uid is not None:
            os.chown(path, self._uid, -1 if self._gid is None else self._gid)

    def _initdb(self) -> None:
        self._owned_by_server(self.home)
        password_file = self.home / "password"
        password_file.write_text(self.password)
        self._owned_by_server(password_file)
        done = subprocess.run(
            [
                str(self.bin / "initdb"),
                "--pgdata",
                str(self.data),
                "--username",
                SUPERUSER,
                "--pwfile",
                str(password_file),
                "--auth",
                "scram-sha-256",
                "--encoding",
                "UTF8",
                "--locale",
                "C",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.home,
            user=self._uid,
            group=self._gid,
            extra_groups=None if self._uid is None else [],
        )
        password_file.unlink()
        if done.returncode != 0:
            raise NoPostgresError(f"initdb failed: {done.stderr.strip()}")

    def _run(self) -> None:
        for _attempt in range(3):  # another process may take the free port before the server
            self.port = free_loopback_port()
            offset = self.log.stat().st_size if self.log.exists() else 0
            with self.log.open("ab") as log:
                self._proc = subprocess.Popen(
                    [
                        str(self.bin / "postgres"),
                        "-D",
                        str(self.data),
                        "-c",
                        "listen_addresses=127.0.0.1",
                        "-c",
                        f"port={self.port}",
                        "-c",
                        "unix_socket_directories=",
                        "-c",
                        "fsync=off",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=self.home,
                    start_new_session=True,  # its own group: stop() can prove none is left
                    # SIGKILL from the kernel if the test process dies without stopping it; its
                    # backends notice their postmaster's death and exit.
                    preexec_fn=die_with_parent(),  # noqa: PLW1509 - see die_with_parent
                    user=self._uid,
                    group=self._gid,
                    extra_groups=None if self._uid is None else [],
                )
            if self._wait_until_ready(offset):
                return
            if "could not bind" not in self._log_since(offset):
                break
        raise NoPostgresError(f"the server did not start: {self._log_since(0)[-2000:]}")

    def _log_since(self, offset: int) -> str:
        with self.log.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def _wait_until_ready(self, offset: int) -> bool:
        assert self._proc is not None
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if READY in self._log_since(offset):
                return True
            if self._proc.poll() is not None:
                self._proc = None
                return False
            time.sleep(0.05)
        self._end_process()
        return False

    # using it ---------------------------------------------------------------------------------

    def url(self, database: str) -> str:
        """A Pulumi backend URL for `database`. The test server has no TLS: sslmode=disable
        (lib/pq, Pulumi's driver, requires TLS by default)."""
        return (
            f"postgres://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"
            "?sslmode=disable"
        )

    def psql(self, database: str, sql: str) -> str:
        """Rows of `sql`, one a line, columns joined by `|` (psql's unaligned output)."""
        done = subprocess.run(
            [
                str(self.bin / "psql"),
                "--no-psqlrc",
                "--tuples-only",
                "--no-align",
                "--set",
                "ON_ERROR_STOP=1",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--username",
                SUPERUSER,
                "--dbname",
                database,
                "--command",
                sql,
            ],
            env={**os.environ, "PGPASSWORD": self.password, "PGCONNECT_TIMEOUT": "10"},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"psql on {database}: {done.stderr.strip()}")
        return done.stdout

    def create_database(self, name: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise ValueError(f"database name {name!r}: use lower-case letters, digits and _")
        self.psql("postgres", f"CREATE DATABASE {name}")
        return name

    def tables(self, database: str) -> list[str]:
        """Every table of `database` outside PostgreSQL's own catalogs, schema-qualified."""
        rows = self.psql(
            database,
            "SELECT format('%I.%I', table_schema, table_name) FROM information_schema.tables "
            "WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1",
        )
        return rows.splitlines()

    def contents(self, database: str) -> dict[str, str]:
        """Each table's rows as text (every column of each row), by table name."""
        return {
            table: self.psql(database, f"SELECT t::text FROM {table} t")
            for table in self.tables(database)
        }

    # stopping ---------------------------------------------------------------------------------

    def stop(self) -> None:
        """A fast shutdown (SIGINT), then checks that no process of the server is left."""
        try:
            self._end_process()
        finally:
            shutil.rmtree(self.home, ignore_errors=True)

    def _end_process(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        end_child(proc, signal.SIGINT, STOP_TIMEOUT, with_group=True)
        if leftovers := group_members(proc.pid):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError(f"PostgreSQL left processes running: {leftovers}")

    def __enter__(self) -> PostgresServer:
        return self


def main() -> None:
    """`python -m testkit.postgres`: the bin directory found, or why none (exit 1)."""
    try:
        print(find_postgres_bin())
    except NoPostgresError as exc:
        raise SystemExit(str(exc)) from None


if __name__ == "__main__":
    main()
