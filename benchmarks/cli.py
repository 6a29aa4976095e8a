"""Figures through the real `pulumi` CLI, on one emulator, for three providers side by side.

    python -m benchmarks.cli [--models 100] [--refresh-models 200 1000] [--latency-ms 50]
    python -m benchmarks.cli --curve [--sizes 100 250 500 1000] [--postgres-models 1000]

For each provider: `pulumi up` creating --models models, `pulumi destroy` of them, and `pulumi
refresh` of each --refresh-models count (set up without latency, measured with it): wall time and
the Convai calls the emulator counted. The providers: ours (ConvaiPrivateModel); naive (one list
call per read, nothing shared, an HTTP client per call: benchmarks/naive_provider.py); floor (no
Convai at all: a create or a delete waits the latency, a read returns at once:
benchmarks/floor_provider.py). Targets: refresh of 1,000 costs at most 2 list calls; create of
100 within 1.25 x the floor.

`--curve`: big stacks (docs/big-stacks.md). For each size, ours beside the floor, with the
engine's intermediate checkpoints skipped (PULUMI_SKIP_CHECKPOINTS=true) and then written:
`up` creating N models, `preview` (no changes expected), `refresh` and `destroy`, with no added
latency, each ratio taken within the run. Each `up` also prints the CPU seconds of the provider
processes and of the emulator (which shares the cores) and the provider's peak resident memory.
`--postgres-models N` adds the N-model `up` on a `postgres://` backend (a real server,
testkit/postgres.py), both checkpoint modes.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.floor_provider import LATENCY_ENV
from benchmarks.process_usage import Sampler, cpu_seconds, descendants
from convai_provider.api.wire import DEREGISTER_PATH, LIST_PATH, REGISTER_PATH
from convai_provider.emulator.process import EmulatorProcess
from testkit.postgres import NoPostgresError, PostgresServer, find_postgres_bin
from testkit.processes import die_with_parent
from testkit.pulumi_cli import ROOT, NoPulumiError, PulumiProject, find_pulumi_bin

KINDS = ("ours", "naive", "floor")
PROGRAM = ROOT / "benchmarks" / "cli_program"
BENCH_KEY = "bench-account"
CREATE_TARGET = 1.25
REFRESH_LIST_TARGET = 2
CURVE_KINDS = ("floor", "ours")
CURVE_COMMANDS = ("up", "preview", "refresh", "destroy")
CHECKPOINT_MODES = {"skipped": {"PULUMI_SKIP_CHECKPOINTS": "true"}, "written": {}}
ROLES = {
    "emulator": "convai_provider emulator",
    "provider": "pulumi.dynamic",
    "program": "language-python",
    "engine": "bin/pulumi ",
}
"""Processes by their command line; the program is the language host's child, under "other"."""
BIG_STACK_TARGET = 1.3
PEAK_MIB_BOUND = 200
"""The provider's peak resident memory we hold an `up` of up to 1,000 models to
(docs/big-stacks.md): imports and one scrypt, not the stack."""
COMMAND_TIMEOUT = 3 * 3600.0
"""A 1,000-model `up` with checkpoints took over 10 minutes (the testkit's default) on two
loaded cores."""


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
    def __init__(
        self,
        emu: EmulatorProcess,
        bin_dir: Path,
        work: Path,
        latency_ms: int,
        *,
        kinds: tuple[str, ...] = KINDS,
        backend_urls: dict[str, str] | None = None,
    ) -> None:
        self.emu = emu
        self.latency_ms = latency_ms
        self.projects: dict[str, PulumiProject] = {}
        env = {
            "CONVAI_API_KEY": BENCH_KEY,
            "CONVAI_BASE_URL": emu.url,
            "PYTHONPATH": str(ROOT),
            LATENCY_ENV: str(latency_ms),
        }
        for kind in kinds:
            directory = work / kind
            directory.mkdir()
            backend = {"PULUMI_BACKEND_URL": backend_urls[kind]} if backend_urls else {}
            project = PulumiProject(directory, bin_dir, env | backend, main=PROGRAM)
            # Measured as installed, with bytecode cached: a shell that sets this would make
            # every provider and program process compile our modules from source again.
            project.env.pop("PYTHONDONTWRITEBYTECODE", None)
            self.projects[kind] = project

    def declare(self, kind: str, count: int) -> None:
        self.projects[kind].configure(
            {"bench:kind": kind, "bench:count": str(count), "convai:baseUrl": self.emu.url}
        )

    def measured(self, kind: str, *command: str) -> Figure:
        return self.measured_exactly(kind, *command, "--yes", "--skip-preview")

    def measured_exactly(self, kind: str, *command: str) -> Figure:
        self.emu.clear_faults()
        if self.latency_ms:
            self.emu.inject(latency_ms=self.latency_ms)
        self.emu.clear_counts()
        started = time.perf_counter()
        self.projects[kind].run(*command, timeout=COMMAND_TIMEOUT)
        seconds = time.perf_counter() - started
        figure = Figure(seconds, self.emu.request_counts())
        self.emu.clear_faults()
        return figure

    def unmeasured(self, kind: str, *command: str) -> None:
        self.emu.clear_faults()
        self.projects[kind].run(*command, "--yes", "--skip-preview", timeout=COMMAND_TIMEOUT)


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


# big stacks -----------------------------------------------------------------------------------


@dataclass
class UpUsage:
    cpu: dict[str, float]
    provider_peak_mib: float
    emulator_cpu: float

    def __str__(self) -> str:
        parts = ", ".join(f"{role} {self.cpu.get(role, 0.0):.1f}" for role in (*ROLES, "other"))
        return (
            f"CPU s: {parts} (emulator {self.emulator_cpu:.1f}); "
            f"provider peak {self.provider_peak_mib:.0f} MiB"
        )


def curve_command(command: str) -> tuple[str, ...]:
    if command == "preview":
        return ("preview", "--expect-no-changes")
    return (command, "--yes", "--skip-preview")


def emulator_pid() -> int:
    (pid,) = descendants(os.getpid(), "convai_provider emulator")
    return pid


def measured_up(bench: Bench, kind: str) -> tuple[Figure, UpUsage]:
    emulator = emulator_pid()
    emulator_before = cpu_seconds(emulator)
    with Sampler(ROLES) as usage:
        figure = bench.measured_exactly(kind, *curve_command("up"))
    cpu = {role: usage.cpu_of(role) for role in (*ROLES, "other") if role != "emulator"}
    return figure, UpUsage(
        cpu, usage.peak_mib_of("provider"), cpu_seconds(emulator) - emulator_before
    )


def with_checkpoints(bench: Bench, mode: str) -> None:
    for project in bench.projects.values():
        kept = {k: v for k, v in project.env.items() if k != "PULUMI_SKIP_CHECKPOINTS"}
        project.env = kept | CHECKPOINT_MODES[mode]


def ratio_line(label: str, figures: dict[str, Figure]) -> str:
    ratio = figures["ours"].seconds / figures["floor"].seconds
    return f"{label}: floor {figures['floor']} | ours {figures['ours']} | ours / floor {ratio:.2f}"


def curve_at(bench: Bench, count: int, mode: str) -> None:
    with_checkpoints(bench, mode)
    figures: dict[str, dict[str, Figure]] = {c: {} for c in CURVE_COMMANDS}
    usages: dict[str, UpUsage] = {}
    for kind in CURVE_KINDS:
        bench.declare(kind, count)
        figures["up"][kind], usages[kind] = measured_up(bench, kind)
        for command in CURVE_COMMANDS[1:]:
            figures[command][kind] = bench.measured_exactly(kind, *curve_command(command))
    for command in CURVE_COMMANDS:
        print(ratio_line(f"{count} {command}, checkpoints {mode}", figures[command]))
    for kind in CURVE_KINDS:
        print(f"  {count} up, checkpoints {mode}, {kind}: {usages[kind]}")
    peak = usages["ours"].provider_peak_mib
    print(
        f"  {count} up, checkpoints {mode}, ours: provider peak {peak:.0f} MiB "
        f"(bound {PEAK_MIB_BOUND} MiB: {verdict(peak <= PEAK_MIB_BOUND)})"
    )
    if mode == "skipped":
        ratio = figures["up"]["ours"].seconds / figures["up"]["floor"].seconds
        print(
            f"  {count} up, checkpoints skipped, ours / floor {ratio:.2f} "
            f"(target <= {BIG_STACK_TARGET}: {verdict(ratio <= BIG_STACK_TARGET)})"
        )
    sys.stdout.flush()


def warm_up(bench: Bench) -> None:
    """One unmeasured up and destroy of one model per provider: the bytecode caches are written
    and the disk cache holds the plugins, as on any machine after its first run."""
    for kind in bench.projects:
        bench.declare(kind, 1)
        bench.unmeasured(kind, "up")
        bench.unmeasured(kind, "destroy")


def curve(bin_dir: Path, sizes: list[int], latency_ms: int, modes: tuple[str, ...]) -> None:
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmulatorProcess(
            Path(tmp) / "bench.sqlite3", access_log=False, preexec_fn=die_with_parent()
        ) as emu,
    ):
        bench = Bench(emu, bin_dir, Path(tmp), latency_ms, kinds=CURVE_KINDS)
        warm_up(bench)
        for mode in modes:  # every size without checkpoints first: the long runs come last
            for count in sizes:
                curve_at(bench, count, mode)


def postgres_up(bin_dir: Path, count: int, latency_ms: int) -> None:
    """The `count`-model `up` (and its destroy) on a real PostgreSQL backend."""
    try:
        postgres_bin = find_postgres_bin()
    except NoPostgresError as exc:
        raise SystemExit(f"{exc}") from None
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmulatorProcess(
            Path(tmp) / "bench.sqlite3", access_log=False, preexec_fn=die_with_parent()
        ) as emu,
        PostgresServer.start(postgres_bin) as server,
    ):
        urls = {kind: server.url(server.create_database(f"bench_{kind}")) for kind in CURVE_KINDS}
        bench = Bench(emu, bin_dir, Path(tmp), latency_ms, kinds=CURVE_KINDS, backend_urls=urls)
        warm_up(bench)
        for mode in CHECKPOINT_MODES:
            with_checkpoints(bench, mode)
            ups: dict[str, Figure] = {}
            usages: dict[str, UpUsage] = {}
            for kind in CURVE_KINDS:
                bench.declare(kind, count)
                ups[kind], usages[kind] = measured_up(bench, kind)
                with_checkpoints(bench, "skipped")  # the cleanup is not measured
                bench.unmeasured(kind, "destroy")
                with_checkpoints(bench, mode)
            print(ratio_line(f"{count} up on postgres://, checkpoints {mode}", ups))
            for kind in CURVE_KINDS:
                print(f"  {count} up on postgres://, checkpoints {mode}, {kind}: {usages[kind]}")
            sys.stdout.flush()


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
        "--latency-ms",
        type=int,
        default=None,
        help="latency the emulator adds to every call (default 50; 0 with --curve)",
    )
    parser.add_argument("--curve", action="store_true", help="the big-stack curve instead")
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[100, 250, 500, 1000],
        help="stack sizes of the curve (add 2000 to measure it)",
    )
    parser.add_argument(
        "--checkpoints",
        choices=("both", *CHECKPOINT_MODES),
        default="both",
        help="the curve's checkpoint modes: skipped first, then written",
    )
    parser.add_argument(
        "--postgres-models",
        type=int,
        default=0,
        help="with --curve: also this many models' up on a postgres:// backend (0: none)",
    )
    args = parser.parse_args()
    try:
        bin_dir = find_pulumi_bin()
    except NoPulumiError as exc:
        raise SystemExit(f"{exc}") from None
    latency_ms = args.latency_ms if args.latency_ms is not None else (0 if args.curve else 50)
    print(
        f"machine: {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.system()} {platform.release()}, "
        f"{os.cpu_count()} CPUs; pulumi from {bin_dir}; latency {latency_ms} ms per Convai call",
        flush=True,
    )
    if args.curve:
        modes = tuple(CHECKPOINT_MODES) if args.checkpoints == "both" else (args.checkpoints,)
        curve(bin_dir, args.sizes, latency_ms, modes)
        if args.postgres_models:
            postgres_up(bin_dir, args.postgres_models, latency_ms)
        return
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmulatorProcess(
            Path(tmp) / "bench.sqlite3", access_log=False, preexec_fn=die_with_parent()
        ) as emu,
    ):
        bench = Bench(emu, bin_dir, Path(tmp), latency_ms)
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
