"""No process a test starts outlives it, however the test ends.

Three layers, because a test can end three ways:

- Its own teardown (the test passed, failed, or a timeout raised in it): each server is ended
  with its whole process group, each Pulumi CLI run with its whole session (`stop_session`):
  SIGINT to the CLI's group, so it cancels and ends its plugins as on Ctrl-C, then SIGKILL to
  every process left in the session. The CLI starts each plugin in a process group of its own,
  but in its session, so the session is what holds all of them.
- The test process killed (SIGKILL, SIGTERM, which pytest does not catch, pytest-timeout's
  thread method, a crash): no teardown runs. The servers it started directly are told by the
  kernel (`die_with_parent`: PR_SET_PDEATHSIG, SIGKILL). The CLI's language host, program and
  plugins are not its children, so the kernel tells them nothing: the run's watchdog
  (`watch_this_run`) ends them.
- The watchdog: a process of its own session (a kill of the test's group misses it) that holds the
  read end of a pipe only the test process writes to. When the test process ends, for whatever
  reason, the pipe closes, and the watchdog ends every process whose environment carries this
  run's id in $TESTKIT_RUN, which every process the run starts inherits: SIGINT first, SIGKILL
  after GRACE seconds. It names on stderr whatever it had to end.

The module uses the standard library only: the watchdog runs it as a script (`python -I`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

RUN_VARIABLE = "TESTKIT_RUN"
"""The run's id, in the environment of every process the run starts (not PULUMI_ or CONVAI_:
the CLI helper passes those only on purpose)."""
GRACE = 10.0
"""Seconds a process gets to end after SIGINT before SIGKILL."""
END_TIMEOUT = 30.0
"""Seconds SIGKILLed processes get to be gone (the kernel's work: a bound, not a measurement)."""
_PR_SET_PDEATHSIG = 1
_prctl = ctypes.CDLL(None, use_errno=True).prctl


# the kernel tells a child when its parent dies -------------------------------------------------


def let_ctrl_c_reach_children() -> None:
    """A run started in the background of a non-interactive shell (`.ci/run &`) inherits SIGINT
    ignored, and so does every process it starts: a shell cannot even trap it then, and the
    tests' Ctrl-C (SIGINT) would reach nothing. A Python handler, unlike SIG_IGN, is not
    inherited: children start with SIGINT's default, as a terminal's foreground job does."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def die_with_parent() -> Callable[[], None]:
    """A `preexec_fn` for `subprocess.Popen`: the child gets SIGKILL when the process starting it
    ends (strictly: the thread that started it; pytest starts fixtures on its main thread).
    Only the child itself: what it starts is its own business, or the watchdog's.

    Safe beside threads (ruff's PLW1509 warns of locks held at fork): between fork and exec the
    child makes two system calls through a function looked up before, and takes no lock."""
    parent = os.getpid()

    def in_the_child() -> None:
        if _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG)")
        if os.getppid() != parent:  # the parent ended before the signal was armed
            os.kill(os.getpid(), signal.SIGKILL)

    return in_the_child


# sessions and groups --------------------------------------------------------------------------


def _stat(pid: str) -> tuple[str, int, int] | None:
    """(state, process group, session) of process `pid`, None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, _ppid, group, session = stat.rsplit(")", 1)[1].split()[:4]
    return state, int(group), int(session)


def _live(match: Callable[[int, int], bool]) -> list[int]:
    """Live processes (zombies have ended) whose (group, session) satisfy `match`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(entry.name)) is not None:
            state, group, session = stat
            if state != "Z" and match(group, session):
                found.append(int(entry.name))
    return found


def session_members(leader: int) -> list[int]:
    """The live processes of the session `leader` started (`start_new_session`)."""
    return _live(lambda _group, session: session == leader)


def group_members(leader: int) -> list[int]:
    """The live processes of process group `leader`."""
    return _live(lambda group, _session: group == leader)


def _kill_all(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def end_session(leader: int, timeout: float = END_TIMEOUT) -> None:
    """SIGKILL every process of the session and wait until none is left."""
    deadline = time.monotonic() + timeout
    while members := session_members(leader):
        if time.monotonic() > deadline:
            raise AssertionError(f"processes of session {leader} outlived SIGKILL: {members}")
        _kill_all(members, signal.SIGKILL)
        time.sleep(0.05)


def stop_session(process: subprocess.Popen[str], grace: float = GRACE) -> tuple[str, str]:
    """Ends a command started in a session of its own, and everything it started: SIGINT to its
    group (the Pulumi CLI cancels, as on Ctrl-C, and ends its plugins), SIGKILL to every process
    left in its session after `grace` seconds. Returns what it wrote meanwhile."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    try:
        out, err = process.communicate(timeout=grace)
    except subprocess.TimeoutExpired:
        end_session(process.pid)
        out, err = process.communicate()
    end_session(process.pid)  # plugins the CLI left, in groups of their own
    return out or "", err or ""


def end_group(process: subprocess.Popen[Any], sig: signal.Signals, timeout: float) -> None:
    """`sig` to the process group `process` leads (started with `start_new_session`), SIGKILL
    to the group if the leader has not ended within `timeout`, then waits until none is left."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout)
    deadline = time.monotonic() + END_TIMEOUT
    while members := group_members(process.pid):
        if time.monotonic() > deadline:
            raise AssertionError(f"processes of group {process.pid} outlived SIGKILL: {members}")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        time.sleep(0.05)
    process.wait()


# the watchdog ---------------------------------------------------------------------------------


def watch_this_run() -> subprocess.Popen[bytes]:
    """Starts the watchdog of this process's run and marks the run's environment (do it before
    starting anything). Close the returned process's stdin (or end this process) to let it act."""
    run = f"{os.getpid()}-{secrets.token_hex(8)}"
    os.environ[RUN_VARIABLE] = run
    return subprocess.Popen(
        [sys.executable, "-I", __file__, run],
        stdin=subprocess.PIPE,
        start_new_session=True,
    )


def processes_of_run(run: str) -> list[int]:
    """Live processes whose environment (as each started) has $RUN_VARIABLE set to `run`."""
    entry = f"{RUN_VARIABLE}={run}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            environment = (proc / "environ").read_bytes().split(b"\0")
        except OSError:  # gone meanwhile
            continue
        stat = _stat(proc.name)
        if entry in environment and stat is not None and stat[0] != "Z":
            found.append(int(proc.name))
    return found


def command_line(pid: int) -> bytes:
    """Process `pid`'s arguments, each ended by a NUL byte; none once it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _command_line(pid: int) -> str:
    return command_line(pid).replace(b"\0", b" ").decode(errors="replace")[:160] or "(gone)"


def end_run(run: str, grace: float = GRACE) -> list[str]:
    """Ends every process of the run: SIGINT, then SIGKILL after `grace` seconds. Returns the
    command lines of those it found."""
    left = processes_of_run(run)
    named = [f"{pid}: {_command_line(pid)}" for pid in left]
    _kill_all(left, signal.SIGINT)
    deadline = time.monotonic() + grace
    while (left := processes_of_run(run)) and time.monotonic() < deadline:
        time.sleep(0.1)
    deadline = time.monotonic() + END_TIMEOUT
    while (left := processes_of_run(run)) and time.monotonic() < deadline:
        _kill_all(left, signal.SIGKILL)
        time.sleep(0.05)
    return named


def _watch(run: str) -> None:
    # SIGINT and SIGTERM aimed at the test's terminal or group are not for the watchdog: it
    # acts when the test process has ended, whatever ended it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.stdin.buffer.read()  # until the test process closes the pipe or ends
    ended = end_run(run)
    if ended:
        sys.stderr.write(
            f"testkit watchdog: the test run {run} left {len(ended)} processes; ended them:\n"
            + "".join(f"  {line}\n" for line in ended)
        )


if __name__ == "__main__":
    _watch(sys.argv[1])
