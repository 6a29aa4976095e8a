"""Figures through the real `pulumi` CLI, on one emulator, for three providers side by side.

    python -m benchmarks.cli [--models 100] [--refresh-models 200 1000] [--latency-ms 50]

For each provider: `pulumi up` creating --models models, `pulumi destroy` of them, and `pulumi
refresh` of each --refresh-models count (set up without latency, measured with it): wall time and
the Convai calls the emulator counted. The providers: ours (ConvaiPrivateModel); naive (one list
call per read, nothing shared, an HTTP client per call: benchmarks/naive_provider.py); floor (no
Convai at all: a create waits 2 x latency, a delete 1 x, a read returns at once:
benchmarks/floor_provider.py). Targets: refresh of 1,000 costs at most 2 list calls; create of
100 within 1.25 x the floor.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.floor_provider import LATENCY_ENV
from convai_provider.api.wire import DEREGISTER_PATH, LIST_PATH, REGISTER_PATH
from convai_provider.emulator.process import EmulatorProcess
from testkit.pulumi_cli import ROOT, NoPulumiError, PulumiProject, find_pulumi_bin

KINDS = ("ours", "naive", "floor")
PROGRAM = ROOT / "benchmarks" / "cli_program"
BENCH_KEY = "bench-account"
CREATE_TARGET = 1.25
REFRESH_LIST_TARGET = 2


@dataclass
class Figure:
    seconds: float
    calls: dict[str, int] = field(default_factory=dict)

    def __str__(self) -> str:
        counted = {
            name: self.calls.get(path, 0)
            for name, path in (
                ("register", REGISTER_PATH),
                ("list", LIST_PATH),
                ("deregister", DEREGISTER_PATH),
            )
            if self.calls.get(path)
        }
        calls = ", ".join(f"{n} {c}" for n, c in counted.items()) or "no Convai calls"
        return f"{self.seconds:.2f} s ({calls})"


class Bench:
    def __init__(self, emu: EmulatorProcess, bin_dir: Path, work: Path, latency_ms: int) -> None:
        self.emu = emu
        self.latency_ms = latency_ms
        self.projects: dict[str, PulumiProject] = {}
        env = {
            "CONVAI_API_KEY": BENCH_KEY,
            "CONVAI_BASE_URL": emu.url,
            "PYTHONPATH": str(ROOT),
            LATENCY_ENV: str(latency_ms),
        }
        for kind in KINDS:
            directory = work / kind
            directory.mkdir()
            self.projects[kind] = PulumiProject(directory, bin_dir, env, main=PROGRAM)

    def declare(self, kind: str, count: int) -> None:
        self.projects[kind].configure(
            {"bench:kind": kind, "bench:count": str(count), "convai:baseUrl": self.emu.url}
        )

    def measured(self, kind: str, *command: str) -> Figure:
        self.emu.clear_faults()
        self.emu.inject(latency_ms=self.latency_ms)
        self.emu.clear_counts()
        started = time.perf_counter()
        self.projects[kind].run(*command, "--yes", "--skip-preview")
        seconds = time.perf_counter() - started
        figure = Figure(seconds, self.emu.request_counts())
        self.emu.clear_faults()
        return figure

    def unmeasured(self, kind: str, *command: str) -> None:
        self.emu.clear_faults()
        self.projects[kind].run(*command, "--yes", "--skip-preview")


def create_and_destroy(bench: Bench, count: int) -> tuple[dict[str, Figure], dict[str, Figure]]:
    creates, destroys = {}, {}
    for kind in KINDS:
        bench.declare(kind, count)
        creates[kind] = bench.measured(kind, "up")
        destroys[kind] = bench.measured(kind, "destroy")
    return creates, destroys


def refreshes(bench: Bench, count: int) -> dict[str, Figure]:
    figures = {}
    for kind in KINDS:
        bench.declare(kind, count)
        bench.unmeasured(kind, "up")
        figures[kind] = bench.measured(kind, "refresh")
    return figures


def side_by_side(what: str, figures: dict[str, Figure]) -> str:
    return f"{what}: " + " | ".join(f"{kind} {figures[kind]}" for kind in KINDS)


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--models", type=int, default=100, help="models created and destroyed")
    parser.add_argument(
        "--refresh-models",
        type=int,
        nargs="+",
        default=[200, 1000],
        help="stack sizes whose refresh is measured",
    )
    parser.add_argument(
        "--latency-ms", type=int, default=50, help="latency the emulator adds to every call"
    )
    args = parser.parse_args()
    try:
        bin_dir = find_pulumi_bin()
    except NoPulumiError as exc:
        raise SystemExit(f"{exc}") from None
    print(
        f"machine: {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.system()} {platform.release()}; "
        f"pulumi from {bin_dir}; latency {args.latency_ms} ms per Convai call"
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmulatorProcess(Path(tmp) / "bench.sqlite3", access_log=False) as emu,
    ):
        bench = Bench(emu, bin_dir, Path(tmp), args.latency_ms)
        creates, destroys = create_and_destroy(bench, args.models)
        ratio = creates["ours"].seconds / creates["floor"].seconds
        print(side_by_side(f"pulumi up, create {args.models}", creates))
        print(
            f"  create, ours / floor: {ratio:.2f} x "
            f"(target <= {CREATE_TARGET:.2f} x: {verdict(ratio <= CREATE_TARGET)})"
        )
        print(side_by_side(f"pulumi destroy {args.models}", destroys))
        for count in args.refresh_models:
            figures = refreshes(bench, count)
            lists = figures["ours"].calls.get(LIST_PATH, 0)
            print(side_by_side(f"pulumi refresh {count}", figures))
            print(
                f"  refresh {count}, ours: {lists} list calls (target <= "
                f"{REFRESH_LIST_TARGET}: {verdict(lists <= REFRESH_LIST_TARGET)})"
            )
        for kind in KINDS:
            bench.unmeasured(kind, "destroy")


if __name__ == "__main__":
    main()
