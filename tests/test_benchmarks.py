"""The benchmark scripts still run and print every figure the README records (small sizes; the
figures themselves are not asserted: they are measurements, see benchmarks/README.md)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
RATIO = r"median \d+\.\d\d \(runs: \d+\.\d\d\)"


def run_benchmark(module: str, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", module, *args],
        check=False,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_provider_benchmark_prints_each_figure() -> None:
    out = run_benchmark(
        "benchmarks.provider",
        *("--models", "8", "--refresh-models", "12", "--latency-ms", "5", "--repeat", "1"),
    )
    assert re.search(rf"^create 8: .* {RATIO} \(target <= 1.20\); list calls", out, re.M), out
    assert re.search(rf"^destroy 8: .* {RATIO}$", out, re.M), out
    assert re.search(r"^refresh 12: \d+\.\d\d s; list calls 1 \(target <= 2\)$", out, re.M), out
    assert re.search(r"^cold start: median \d+\.\d\d s", out, re.M), out
    assert re.search(rf"^harness floor .*: {RATIO}$", out, re.M), out


def test_the_emulator_benchmark_prints_throughput_and_latencies() -> None:
    out = run_benchmark("benchmarks.emulator", "--clients", "2", "--requests", "40")
    assert re.search(r"^40 requests, 2 clients, .* requests/s$", out, re.M), out
    for kind in ("list", "register", "update", "deregister"):
        assert re.search(rf"^  {kind}\s+n=\d+", out, re.M), out
