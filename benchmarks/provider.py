"""Provider figures through the real provider server against the emulator with 50 ms latency.

    python -m benchmarks.provider [--models 100] [--refresh-models 200] [--latency-ms 50]
                                  [--repeat 3]

Each step runs in a provider process of its own, as each CLI command does, warmed up by one
Check first: the cold start (import, unpickling, Configure) is a figure of its own. Printed:
create of N models (wall time against the bound set by 4 provider workers and the one round
trip a create needs, ceil(N/4) x latency), destroy of N models, each repeated and reported
with its median; the same create through the same harness with a provider that only waits
1 x latency (what the harness costs by itself); refresh of M models (list calls in total); and
provider cold start (process start to the first answered Check). These are diagnostics of the
provider process alone, through the engine stand-in (testkit/engine.py); the targets are judged
through the real CLI, by benchmarks.cli. Cold start target: <= 1 s.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.floor_provider import LATENCY_ENV, FloorModel
from convai_provider import ConvaiPrivateModel
from convai_provider.api.wire import LIST_PATH
from convai_provider.emulator.process import EmulatorProcess
from testkit.convai import stack_config
from testkit.engine import Declared, Engine, ProviderProcess, run_program
from testkit.processes import die_with_parent

WORKERS = 4


def declared(count: int, resource: Callable[..., Any] = ConvaiPrivateModel) -> list[Declared]:
    def program() -> None:
        for i in range(count):
            resource(
                f"m{i}",
                model_group_name=f"bench-{i}",
                model_name="llama-3.1-8b",
                api_key=f"sk-{i}",
                base_url="https://llm.example.com/v1",
                verify_endpoint=False,
            )

    return [Declared.from_registration(r) for r in run_program(program)]


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def warm_up(engine: Engine, sample: Declared) -> None:
    """One Check: the provider imports our package, unpickles the provider and configures it
    (the cold start, measured on its own), so the figures that follow are the operations."""
    engine.check(sample, {})


def timed_up(engine: Engine, models: list[Declared]) -> float:
    """`pulumi up` creating `models`, in a provider process of its own."""
    with engine.command():
        warm_up(engine, models[0])
        return timed(lambda: engine.up(models))


def timed_destroy(engine: Engine, sample: Declared) -> float:
    with engine.command():
        warm_up(engine, sample)
        return timed(engine.destroy)


def cold_start(emu: EmulatorProcess, sample: Declared, runs: int = 5) -> list[float]:
    """Process start to the first answered Check: imports, Configure and unpickling."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        process = ProviderProcess()
        try:
            engine = Engine(stack_config(emu))
            engine._provider = process
            process.configure(engine.config)
            engine.check(sample, {})
            times.append(time.perf_counter() - started)
        finally:
            process.close()
    return times


def ratios(seconds: list[float], bound: float) -> str:
    each = " ".join(f"{s / bound:.2f}" for s in seconds)
    return f"median {statistics.median(seconds) / bound:.2f} x bound (runs: {each})"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--models", type=int, default=100, help="models created and destroyed")
    parser.add_argument(
        "--refresh-models", type=int, default=200, help="models in the refreshed stack"
    )
    parser.add_argument(
        "--latency-ms", type=int, default=50, help="latency the emulator adds to every call"
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="create/destroy runs (the median is reported)"
    )
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    print(
        f"machine: {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.system()} {platform.release()}"
    )
    create_bound = math.ceil(args.models / WORKERS) * latency
    destroy_bound = math.ceil(args.models / WORKERS) * latency

    with (
        tempfile.TemporaryDirectory() as tmp,
        EmulatorProcess(
            Path(tmp) / "bench.sqlite3", access_log=False, preexec_fn=die_with_parent()
        ) as emu,
    ):
        emu.inject(latency_ms=args.latency_ms)
        engine = Engine(stack_config(emu))
        small, large = declared(args.models), declared(args.refresh_models)

        creates, destroys, lists = [], [], []
        for _ in range(args.repeat):
            emu.clear_counts()
            creates.append(timed_up(engine, small))
            lists.append(emu.request_counts().get(LIST_PATH, 0))
            destroys.append(timed_destroy(engine, small[0]))
        print(
            f"create {args.models}: bound ceil(N/4) x {args.latency_ms} ms = "
            f"{create_bound:.2f} s; {ratios(creates, create_bound)}; "
            f"list calls per create run {lists}"
        )
        print(
            f"destroy {args.models}: bound ceil(N/4) x {args.latency_ms} ms = "
            f"{destroy_bound:.2f} s; {ratios(destroys, destroy_bound)}"
        )

        engine.up(large)
        with engine.command():
            warm_up(engine, large[0])
            emu.clear_counts()
            refresh_s = timed(engine.refresh)
            refresh_lists = emu.request_counts().get(LIST_PATH, 0)
        print(f"refresh {args.refresh_models}: {refresh_s:.2f} s; list calls {refresh_lists}")
        engine.destroy()

        starts = cold_start(emu, small[0])
        median = statistics.median(starts)
        print(
            f"cold start: median {median:.2f} s, max {max(starts):.2f} s over {len(starts)} runs "
            f"(target <= 1.00 s: {'met' if median <= 1.0 else 'NOT met'})"
        )

    floor = Engine({}, env={LATENCY_ENV: str(args.latency_ms)})
    floor_models = declared(args.models, FloorModel)
    floors = []
    for _ in range(args.repeat):
        floors.append(timed_up(floor, floor_models))
        timed_destroy(floor, floor_models[0])
    print(
        f"harness floor (same create through the same engine and server, the provider only "
        f"waiting {args.latency_ms} ms): {ratios(floors, create_bound)}"
    )


if __name__ == "__main__":
    main()
