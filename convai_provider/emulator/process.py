"""Start the emulator as a child process on a free loopback port (tests, benchmarks, dev runs)."""

from __future__ import annotations

import abc
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import httpx

from convai_provider.api.wire import API_KEY_HEADER
from convai_provider.emulator.store import NEW_KEY_HEADER

READY_PREFIX = "Convai emulator listening on "
"""What the emulator prints, then its URL, once it accepts connections."""
STOP_TIMEOUT = 10.0
"""Seconds the emulator gets to end after SIGTERM, before SIGKILL."""


def end_child(
    process: subprocess.Popen[bytes],
    sig: signal.Signals,
    timeout: float,
    *,
    with_group: bool = False,
) -> None:
    """`sig` to `process`, then SIGKILL if it has not ended within `timeout` seconds: to it alone,
    or `with_group` to the process group it leads (started with `start_new_session`). Returns
    once it has ended."""
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        if with_group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
        process.wait()


class StoppedOnExit(abc.ABC):
    """A server a `with` block uses: stopped when the block ends, however it ends."""

    @abc.abstractmethod
    def stop(self) -> None: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class EmulatorProcess(StoppedOnExit):
    """`with EmulatorProcess(db) as emu:` gives `emu.url`; `restart()` keeps the same database."""

    def __init__(
        self,
        db: Path,
        host: str = "127.0.0.1",
        log_path: Path | None = None,
        access_log: bool = True,
        preexec_fn: Callable[[], None] | None = None,
    ) -> None:
        """`preexec_fn` runs in the child before the emulator starts (the tests make it die with
        them: testkit/processes.py)."""
        self.db = db
        self.preexec_fn = preexec_fn
        self.access_log = access_log
        self.host = host
        self.log_path = log_path or db.with_suffix(".log")
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, port: int = 0) -> None:
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("a") as log:
            self._proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "convai_provider",
                    "emulator",
                    "--host",
                    self.host,
                    "--port",
                    str(port),
                    "--db",
                    str(self.db),
                    *([] if self.access_log else ["--no-access-log"]),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
                preexec_fn=self.preexec_fn,  # noqa: PLW1509 - the caller's to make thread-safe
            )
        self.url = self._wait_for_address(offset)

    def _wait_for_address(self, offset: int, timeout: float = 30.0) -> str:
        """The server logs its address once it listens; everything it logs goes to log_path."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.log_path.open() as log:
                log.seek(offset)
                for line in log:
                    if line.startswith(READY_PREFIX):
                        return line[len(READY_PREFIX) :].split()[0]
            if self._proc is None or self._proc.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the emulator did not start; see {self.log_path}")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            end_child(proc, signal.SIGTERM, STOP_TIMEOUT)

    def restart(self) -> None:
        """Stop and start again on the same port with the same database."""
        port = int(self.url.rsplit(":", 1)[1])
        self.stop()
        self.start(port)

    def admin(
        self,
        method: str,
        path: str,
        json: object = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        url = f"{self.url}/_emulator{path}"
        response = httpx.request(method, url, json=json, headers=headers, timeout=10)
        response.raise_for_status()
        return response

    def reset(self) -> None:
        self.admin("POST", "/reset")

    def inject(self, **rule: object) -> None:
        self.admin("POST", "/faults", rule)

    def clear_faults(self) -> None:
        self.admin("DELETE", "/faults")

    def request_counts(self) -> dict[str, int]:
        counts: dict[str, int] = self.admin("GET", "/stats").json()["requests"]
        return counts

    def orphaned_characters(self, api_key: str) -> list[dict[str, str]]:
        """The characters of `api_key`'s account whose model no longer exists."""
        response = self.admin("GET", "/characters/orphaned", headers={API_KEY_HEADER: api_key})
        orphans: list[dict[str, str]] = response.json()["characters"]
        return orphans

    def rotate_key(self, old_key: str, new_key: str) -> None:
        """Regenerate the key of `old_key`'s account, as Convai's dashboard does."""
        self.admin(
            "POST", "/keys/rotate", headers={API_KEY_HEADER: old_key, NEW_KEY_HEADER: new_key}
        )

    def clear_counts(self) -> None:
        self.admin("DELETE", "/stats")

    def __enter__(self) -> EmulatorProcess:
        self.start()
        return self
