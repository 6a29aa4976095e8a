"""The benchmark scripts still run and print every figure benchmarks/README.md records (small
sizes; the figures themselves are not asserted: they are measurements)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RATIO = r"median \d+\.\d\d x bound \(runs: \d+\.\d\d\)"


def run_benchmark(
    module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> str:
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        check=False,
        cwd=PROJECT_ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_provider_benchmark_prints_each_figure() -> None:
    out = run_benchmark(
        "benchmarks.provider",
        *("--models", "8", "--refresh-models", "12", "--latency-ms", "5", "--repeat", "1"),
    )
    assert re.search(rf"^create 8: .* {RATIO}; list calls", out, re.M), out
    assert re.search(rf"^destroy 8: .* {RATIO}$", out, re.M), out
    assert re.search(r"^refresh 12: \d+\.\d\d s; list calls 1$", out, re.M), out
    assert re.search(r"^cold start: median \d+\.\d\d s", out, re.M), out
    assert re.search(rf"^harness floor .*: {RATIO}$", out, re.M), out


def test_the_emulator_benchmark_prints_throughput_and_latencies() -> None:
    out = run_benchmark("benchmarks.emulator", "--clients", "2", "--requests", "40")
    assert re.search(r"^40 requests, 2 clients, .* requests/s$", out, re.M), out
    for kind in ("list", "register", "update", "deregister"):
        assert re.search(rf"^  {kind}\s+n=\d+", out, re.M), out


def test_the_cli_benchmark_prints_each_figure_for_each_provider(cli_bin: Path) -> None:
    out = run_benchmark(
        "benchmarks.cli",
        *("--models", "6", "--refresh-models", "9", "--latency-ms", "5"),
        env={"CONVAI_PULUMI_BIN": str(cli_bin)},
    )
    figure = r"\d+\.\d\d s \([^)]*\)"
    sides = rf"ours {figure} \| naive {figure} \| floor {figure}$"
    for line in ("pulumi up, create 6", "pulumi destroy 6", "pulumi refresh 9"):
        assert re.search(rf"^{line}: {sides}", out, re.M), out
    assert re.search(
        r"^  create, ours / floor: \d+\.\d\d x \(target <= 1.25 x: (met|NOT met)\)$", out, re.M
    ), out
    assert re.search(r"^  refresh 9, ours: 1 list calls \(target <= 2: met\)$", out, re.M), out
    assert "naive" in out and "(list 9)" in out  # the naive provider lists once per read


@pytest.mark.timeout(1500)
def test_the_cli_curve_prints_each_command_and_ratio_at_each_size(cli_bin: Path) -> None:
    out = run_benchmark(
        "benchmarks.cli",
        *("--curve", "--sizes", "3", "--checkpoints", "skipped"),
        env={"CONVAI_PULUMI_BIN": str(cli_bin)},
        timeout=1200,  # twelve CLI commands, on two cores shared with other suites
    )
    figure = r"\d+\.\d\d s \([^)]*\)"
    for size in ("3",):
        for command in ("up", "preview", "refresh", "destroy"):
            line = rf"^{size} {command}, checkpoints skipped: floor {figure} \| ours {figure}"
            assert re.search(rf"{line} \| ours / floor \d+\.\d\d$", out, re.M), out
        usage = rf"^  {size} up, checkpoints skipped, ours: CPU s: .*provider \d+\.\d.*"
        assert re.search(rf"{usage}\(emulator \d+\.\d\); provider peak \d+ MiB$", out, re.M), out
    peak = r"^  3 up, checkpoints skipped, ours: provider peak \d+ MiB "
    bound = rf"{peak}\(bound 200 MiB: (met|NOT met)\)$"
    assert re.search(bound, out, re.M), out
    only_registers = r"^3 up, checkpoints skipped: .* \| ours \d+\.\d\d s \(register 3\) \|"
    assert re.search(only_registers, out, re.M), out  # a create lists nothing


def emulators_started_by(pid: int) -> list[int]:
    """The emulator processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            command = (entry / "cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if ppid == pid and b"convai_provider\0emulator" in command:
            found.append(int(entry.name))
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("module", ["benchmarks.emulator", "benchmarks.provider", "benchmarks.cli"])
def test_a_killed_benchmark_leaves_no_emulator_running(
    module: str, request: pytest.FixtureRequest
) -> None:
    """A benchmark killed (a test's timeout, Ctrl-C twice, an OOM kill) takes its emulator along:
    the kernel ends it (testkit/processes.py, die_with_parent)."""
    env = dict(os.environ)
    if module == "benchmarks.cli":
        env["CONVAI_PULUMI_BIN"] = str(request.getfixturevalue("cli_bin"))
    bench = subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    emulators: list[int] = []
    try:
        deadline = time.monotonic() + 120
        while not (emulators := emulators_started_by(bench.pid)):
            assert bench.poll() is None and time.monotonic() < deadline, "no emulator started"
            time.sleep(0.05)
        bench.kill()
        bench.wait()
        deadline = time.monotonic() + 60  # the test's own deadline: the kernel acts at once
        while any(map(running, emulators)):
            assert time.monotonic() < deadline, f"the emulator outlived {module}: {emulators}"
            time.sleep(0.05)
    finally:
        for pid in [bench.pid, *filter(running, emulators)]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        bench.wait()
