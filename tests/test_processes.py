"""No process outlives a test run that is killed (testkit/processes.py): a pytest of its own starts
each kind of process the suite starts, and is killed with SIGTERM (which pytest does not catch:
no teardown runs) or SIGKILL while they all run."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from convai_provider.emulator.process import end_child
from testkit.kube import processes_mentioning
from testkit.postgres import PostgresServer
from testkit.processes import end_group, group_members, session_members, stop_session
from testkit.waiting import wait_for

ROOT = Path(__file__).resolve().parent.parent
HOLD = ROOT / "tests" / "fixtures" / "hold-everything" / "hold_everything.py"
READY_WITHIN = 300.0
"""Seconds the child gets to start everything (about 30 on a loaded 2-core machine): a bound."""
GONE_WITHIN = 60.0
"""Seconds what the child started gets to be gone after it is killed (the watchdog's SIGINT,
its grace of 10 s, then SIGKILL): a bound, not a measurement."""
HELD = {
    "etcd": "etcd ",
    "kube-apiserver": "kube-apiserver ",
    "kube-controller-manager": "kube-controller-manager ",
    "kube-scheduler": "kube-scheduler ",
    "kwok": "kwok ",
    "the emulator": "-m convai_provider emulator",
    "PostgreSQL": "postgres -D",
    "the Pulumi CLI": "pulumi up",
    "its language host": "pulumi-language-python",
    "its plugin": "-m testkit.random_plugin",
    "the program": "hold-everything",
}
"""What the child holds, by a part of its command line."""


def held(marker: str) -> dict[str, list[str]]:
    running = processes_mentioning(marker)
    return {name: [p for p in running if part in p] for name, part in HELD.items()}


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_nothing_outlives_a_killed_test_run(
    sig: signal.Signals,
    tmp_path: Path,
    kube_bin: Path,
    cli_bin: Path,
    postgres: PostgresServer,  # skipped without PostgreSQL (failed under CI), as the child
) -> None:
    ready = tmp_path / "ready"  # also the mark of each process the child starts (environment)
    log = tmp_path / "child.log"
    with log.open("wb") as out:
        child = subprocess.Popen(
            [
                *(sys.executable, "-m", "pytest", str(HOLD), "-p", "no:cacheprovider", "-q", "-s"),
                *(f"--basetemp={tmp_path / 'child'}", f"--rootdir={ROOT}"),
            ],
            cwd=ROOT,
            env={
                **os.environ,
                "HOLD_READY_FILE": str(ready),
                "CONVAI_PULUMI_BIN": str(cli_bin),
                "CONVAI_KUBE_BIN": str(kube_bin),
            },
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: ready.exists() or child.poll() is not None, "the child's hold", READY_WITHIN
        )
        assert ready.exists(), f"the child ended {child.returncode}: {log.read_text()[-3000:]}"
        running = held(str(ready))
        assert all(running.values()), f"not all started: {running}"

        os.kill(child.pid, sig)
        child.wait()

        wait_for(lambda: not processes_mentioning(str(ready)), "all gone", GONE_WITHIN)
        assert processes_mentioning(str(ready)) == []
        # The kernel ended the servers; the watchdog what the CLI ran, and says so.
        assert "testkit watchdog: the test run" in log.read_text()
    finally:
        for line in processes_mentioning(str(ready)):  # this test leaves nothing either
            os.kill(int(line.split(":", 1)[0]), signal.SIGKILL)
        child.kill()
        child.wait()


def test_a_command_is_interrupted_then_killed_with_its_group_and_session(tmp_path: Path) -> None:
    """What a CLI run's timeout does: SIGINT to the command's group; one that ignores it, and a
    process it started in a group of its own (as the CLI starts plugins), are SIGKILLed."""
    script = (
        "import os, signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'],"
        " process_group=0)\n"
        "print('started', flush=True)\n"
        "time.sleep(600)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline() == "started\n"
    stop_session(process, grace=1.0)
    assert process.returncode == -signal.SIGKILL
    assert session_members(process.pid) == []


def test_a_server_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """die_with_parent: a server's starter killed with SIGKILL, the kernel ends the server."""
    pid_file = tmp_path / "server.pid"
    starter = (
        "import subprocess, sys, time\n"
        "from testkit.processes import die_with_parent\n"
        "server = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'],"
        " preexec_fn=die_with_parent())\n"
        f"open({str(pid_file)!r}, 'w').write(str(server.pid))\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", starter], cwd=ROOT, start_new_session=True)
    try:
        wait_for(lambda: pid_file.exists() and pid_file.read_text(), "the server's start")
        assert session_members(parent.pid) == [parent.pid, int(pid_file.read_text())]
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        wait_for(lambda: session_members(parent.pid) == [], "the server's end", 30)
    finally:
        end_group(parent, signal.SIGKILL, 5)


CTRL_C_A_SHELL = """
import signal, subprocess
from testkit.processes import let_ctrl_c_reach_children
let_ctrl_c_reach_children()
shell = subprocess.Popen(
    ["bash", "-c", "trap 'exit 130' INT; echo trapped; while :; do sleep 0.05; done"],
    stdout=subprocess.PIPE,
    stderr=subprocess.DEVNULL,
    text=True,
)
shell.stdout.readline()
shell.send_signal(signal.SIGINT)
try:
    print(shell.wait(timeout=20))
except subprocess.TimeoutExpired:
    shell.kill()
    print("SIGINT ignored")
"""


def test_a_run_started_with_ctrl_c_ignored_still_ctrl_cs_its_children() -> None:
    # .ci/run started with `&` from a script inherits SIGINT ignored; a shell child could then not
    # even trap it, and the tests that press Ctrl-C on dev-up waited out their timeouts.
    ran = subprocess.run(
        [sys.executable, "-c", CTRL_C_A_SHELL],
        cwd=ROOT,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ran.stdout.strip() == "130", ran.stdout + ran.stderr


# end_child: what the emulator and PostgreSQL are stopped with -----------------------------------

ECHO = "import sys\nfor line in sys.stdin:\n    print(line, end='', flush=True)\n"
IGNORES_SIGTERM = (
    "import signal, subprocess, sys, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    f"helper = subprocess.Popen([sys.executable, '-c', {ECHO!r}])\n"
    "print(helper.pid, flush=True)\n"
    "time.sleep(600)\n"
)
"""A server that ignores SIGTERM, with a helper in its group that echoes the server's stdin to its
stdout; the server prints the helper's pid first."""


def started_in_own_group(source: str) -> tuple[subprocess.Popen[bytes], int]:
    """The server started in a session (and group) of its own, and its helper's pid, once the
    server has set its signal handling."""
    server = subprocess.Popen(
        [sys.executable, "-c", source],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert server.stdout is not None
    return server, int(server.stdout.readline())


def echoed(server: subprocess.Popen[bytes], line: bytes) -> bytes:
    """What the server's helper echoes of `line`: nothing once it has ended."""
    assert server.stdin is not None and server.stdout is not None
    with contextlib.suppress(BrokenPipeError):
        server.stdin.write(line)
        server.stdin.flush()
    return server.stdout.readline()


def close_pipes(server: subprocess.Popen[bytes]) -> None:
    for pipe in (server.stdin, server.stdout):
        if pipe is not None:
            with contextlib.suppress(BrokenPipeError):
                pipe.close()


def test_a_child_that_ends_on_the_signal_is_not_killed() -> None:
    server = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; print(flush=True); time.sleep(600)"],
        stdout=subprocess.PIPE,
    )
    assert server.stdout is not None
    server.stdout.readline()
    end_child(server, signal.SIGTERM, 30)
    assert server.returncode == -signal.SIGTERM
    server.stdout.close()


def test_a_child_that_ignores_the_signal_is_killed_and_its_group_with_it() -> None:
    server, helper = started_in_own_group(IGNORES_SIGTERM)
    try:
        assert echoed(server, b"ready\n") == b"ready\n"
        assert set(group_members(server.pid)) == {server.pid, helper}
        end_child(server, signal.SIGTERM, 0.5, with_group=True)
        assert server.returncode == -signal.SIGKILL
        assert echoed(server, b"still here?\n") == b""
        wait_for(lambda: group_members(server.pid) == [], "the helper's end", 30)
    finally:
        end_group(server, signal.SIGKILL, 5)
        close_pipes(server)


def test_without_its_group_only_the_child_is_killed() -> None:
    server, helper = started_in_own_group(IGNORES_SIGTERM)
    try:
        end_child(server, signal.SIGTERM, 0.5)
        assert server.returncode == -signal.SIGKILL
        assert echoed(server, b"still here\n") == b"still here\n"
        assert group_members(server.pid) == [helper]
    finally:
        end_group(server, signal.SIGKILL, 5)
        close_pipes(server)
