"""The benchmark scripts still run and print every figure the README records (small sizes; the
figures themselves are not asserted: they are measurements, see benchmarks/README.md)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
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
