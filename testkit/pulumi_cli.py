"""The real `pulumi` CLI, run on a program of this checkout in a project of its own.

Each project lives in a temporary directory: a Pulumi.yaml whose `main` is a program in this
checkout (the product's own by default) and whose virtualenv is the checkout's, a stack file the
caller writes, a file backend and a PULUMI_HOME of its own. Nothing is downloaded: the CLI comes
from `scripts/install-pulumi`, plugins from beside it. Shared by the tests and the benchmarks.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .processes import end_session, session_members, stop_session
from .tools import MissingToolError, cached_bin

ROOT = Path(__file__).resolve().parent.parent
STACK = "e2e"
PASSPHRASE = "convai-models-e2e"
COMMAND_TIMEOUT = 600.0
"""Seconds one CLI command may take before the test fails (a 100-model `up` takes about 20)."""


class NoPulumiError(MissingToolError):
    """No Pulumi CLI on PATH or in the cache; the message says how to get one."""


def find_pulumi_bin() -> Path:
    """The CLI's bin directory: $CONVAI_PULUMI_BIN, else what install-pulumi finds (no build)."""
    return cached_bin("CONVAI_PULUMI_BIN", "install-pulumi", NoPulumiError, "Pulumi CLI")


def cli_environment(bin_dir: Path, home: Path, backend: Path) -> dict[str, str]:
    venv_bin = Path(sys.executable).parent
    inherited = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PULUMI_", "CONVAI_")) and k != "VIRTUAL_ENV"
    }
    return {
        **inherited,
        "PATH": f"{bin_dir}:{venv_bin}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "PULUMI_HOME": str(home),
        "PULUMI_BACKEND_URL": f"file://{backend}",
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_PYTHON_CMD": sys.executable,
        # Unlocks `--event-log`, the engine's own record of each step in order.
        "PULUMI_DEBUG_COMMANDS": "true",
    }


@dataclass
class Event:
    """One engine event of `--event-log`: its kind, the step's operation and resource name."""

    kind: str
    op: str
    name: str


def read_events(path: Path) -> list[Event]:
    events = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        for kind in ("resourcePreEvent", "resOutputsEvent", "resOpFailedEvent"):
            if kind in record:
                meta = record[kind]["metadata"]
                events.append(Event(kind, meta["op"], meta["urn"].rsplit("::", 1)[-1]))
    return events


class CommandFailedError(AssertionError):
    pass


class PulumiProject:
    """A project running a program of this checkout on stack `e2e` with the real CLI."""

    def __init__(
        self,
        directory: Path,
        bin_dir: Path,
        env: Mapping[str, str],
        main: Path = ROOT,
        new_stack: bool = True,
    ) -> None:
        """`new_stack=False` joins a stack that exists on the backend `env` names: another
        operator's, whose stack file (its secrets salt) the caller copies to `stack_file`."""
        self.dir = directory
        self.main = main
        self.bin = bin_dir
        self.env = cli_environment(bin_dir, directory / "home", directory / "state") | dict(env)
        (directory / "state").mkdir(parents=True, exist_ok=True)
        self.stack_file = directory / f"Pulumi.{STACK}.yaml"
        self.transcript: list[str] = []
        self.after_each_command: Callable[[str], None] = lambda _command: None
        """Called with the command line after every command that ran to its end."""
        self.started: list[subprocess.Popen[str]] = []
        self._write_project_file()
        if new_stack:
            self.run("stack", "init", STACK, stack_flag=False)

    def _write_project_file(self) -> None:
        project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
        project["main"] = str(self.main)
        project.pop("stackConfigDir", None)
        project["runtime"]["options"]["virtualenv"] = str(Path(sys.executable).parent.parent)
        (self.dir / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))

    # configuration ----------------------------------------------------------------------------

    def configure(self, values: Mapping[str, Any]) -> None:
        """Sets the stack's plain config to `values`, keeping the secrets set before (and the
        values holding one, such as convai:accounts)."""
        document = self._stack_document()
        secrets = {k: v for k, v in document.get("config", {}).items() if _holds_secret(v)}
        document["config"] = {**dict(values), **secrets}
        self.stack_file.write_text(yaml.safe_dump(document, sort_keys=False))

    def set_secret(self, key: str, value: str, *, path: bool = False) -> None:
        """On standard input, so the value is in no command line (nor this transcript). `path`:
        `key` is a path into an object (`convai:accounts.partner.apiKey`)."""
        self.run("config", "set", "--secret", *(["--path"] if path else []), key, stdin=value)

    def _stack_document(self) -> dict[str, Any]:
        if not self.stack_file.exists():
            return {}
        return dict(yaml.safe_load(self.stack_file.read_text()) or {})

    # commands ---------------------------------------------------------------------------------

    def run(
        self,
        *args: str,
        stack_flag: bool = True,
        check: bool = True,
        timeout: float | None = None,
        stdin: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / "pulumi"), *args, "--non-interactive"]
        if stack_flag:
            command += ["--stack", STACK]
        # A session of its own: whatever ends this command (its timeout, Ctrl-C, an error here)
        # ends it with its plugins, which the CLI starts in process groups of their own.
        process = subprocess.Popen(
            command,
            cwd=self.dir,
            env=self.env,
            stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        limit = timeout or COMMAND_TIMEOUT
        try:
            stdout, stderr = process.communicate(stdin, timeout=limit)
        except subprocess.TimeoutExpired:
            stdout, stderr = stop_session(process)
            self.transcript.append(f"$ pulumi {' '.join(args)}\n{stdout}\n{stderr}")
            raise CommandFailedError(
                f"pulumi {' '.join(args)} did not end within {limit:.0f} s; interrupted, then "
                f"killed with its plugins\n{stdout}\n{stderr}"
            ) from None
        except BaseException:
            stop_session(process)
            raise
        done = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
        self.transcript.append(f"$ pulumi {' '.join(args)}\n{done.stdout}\n{done.stderr}")
        self.after_each_command(" ".join(args))
        if check and done.returncode != 0:
            raise CommandFailedError(
                f"pulumi {' '.join(args)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
            )
        return done

    def start(self, *args: str) -> subprocess.Popen[str]:
        """A command left running, for a test that interrupts it; `end_started` ends it."""
        process = subprocess.Popen(
            [str(self.bin / "pulumi"), *args, "--non-interactive", "--stack", STACK],
            cwd=self.dir,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its plugins stay in its session: end_session finds them
        )
        self.started.append(process)
        return process

    def end_started(self) -> None:
        """End every command `start` began, with every process it started (plugins included),
        and fail if any is left."""
        for process in self.started:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            process.communicate(timeout=COMMAND_TIMEOUT)
            end_session(process.pid)
            assert session_members(process.pid) == []

    def up(self, *flags: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("up", "--yes", "--skip-preview", *flags, check=check)

    def up_with_events(self, *flags: str) -> list[Event]:
        log = self.dir / "events.jsonl"
        log.unlink(missing_ok=True)
        self.up("--event-log", str(log), *flags)
        return read_events(log)

    def preview(self, *flags: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("preview", "--diff", *flags, check=check)

    def refresh(self, *flags: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("refresh", "--yes", "--skip-preview", *flags, check=check)

    def destroy(self, *flags: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("destroy", "--yes", "--skip-preview", *flags, check=check)

    def destroy_with_events(self) -> list[Event]:
        log = self.dir / "events.jsonl"
        log.unlink(missing_ok=True)
        self.destroy("--event-log", str(log))
        return read_events(log)

    def export(self) -> dict[str, Any]:
        state: dict[str, Any] = json.loads(self.run("stack", "export").stdout)
        return state

    def resources(self) -> dict[str, dict[str, Any]]:
        """Resources in state by name (their URN's last part)."""
        deployment = self.export()["deployment"]
        return {r["urn"].rsplit("::", 1)[-1]: r for r in deployment.get("resources") or []}

    def pending_operations(self) -> list[dict[str, Any]]:
        operations: list[dict[str, Any]] = (
            self.export()["deployment"].get("pending_operations") or []
        )
        return operations

    def outputs(self) -> dict[str, Any]:
        done = self.run("stack", "output", "--json", "--show-secrets")
        values: dict[str, Any] = json.loads(done.stdout)
        return values

    def logs(self) -> Iterator[str]:
        """Every file the CLI wrote under PULUMI_HOME (logs, plugins' output), as text."""
        for path in (self.dir / "home").rglob("*"):
            if path.is_file() and path.stat().st_size < 50_000_000:
                yield path.read_text(errors="replace")


def _holds_secret(value: Any) -> bool:
    if isinstance(value, dict):
        return "secure" in value or any(_holds_secret(v) for v in value.values())
    return isinstance(value, list) and any(_holds_secret(v) for v in value)
