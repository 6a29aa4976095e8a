"""Provider figures through the real provider server against the emulator with 50 ms latency.

    python -m benchmarks.provider [--models 100] [--refresh-models 200] [--latency-ms 50]

Each step runs in a provider process of its own, as each CLI command does, warmed up by one
Check first: the cold start (import and unpickling) is a figure of its own. Printed: create of
N models (wall time against the bound set by 4 provider workers and the two round trips a
create needs, ceil(N/4) x 2 x latency), destroy of N models, refresh of M models (list calls in
total), and provider cold start (process start to the first answered Check). Targets: refresh
<= 2 list calls, create <= 1.2 x bound, cold start <= 1 s.
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from convai_provider import ConvaiPrivateModel
from convai_provider.emulator.process import EmulatorProcess
from tests.engine import Declared, Engine, ProviderProcess, run_program
from tests.test_private_model_engine import stack_config

WORKERS = 4


def declared(count: int) -> list[Declared]:
    def program() -> None:
        for i in range(count):
            ConvaiPrivateModel(
                f"m{i}",
                model_group_name=f"bench-{i}",
                model_name="llama-3.1-8b",
                api_key=f"sk-{i}",
                base_url="https://llm.example.com/v1",
                verify_endpoint=False,
            )

    return [Declared.from_registration(r) for r in run_program(program)]


def timed(action: Any) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def warm_up(engine: Engine, sample: Declared) -> None:
    """One Check: the provider imports our package and unpickles the provider (the cold start,
    measured on its own), so the figures that follow are the operations themselves."""
    engine.check(sample, {})


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--refresh-models", type=int, default=200)
    parser.add_argument("--latency-ms", type=int, default=50)
    args = parser.parse_args()
    latency = args.latency_ms / 1000
    print(
        f"machine: {platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.system()} {platform.release()}"
    )

    with (
        tempfile.TemporaryDirectory() as tmp,
        EmulatorProcess(Path(tmp) / "bench.sqlite3", access_log=False) as emu,
    ):
        emu.inject(latency_ms=args.latency_ms)
        engine = Engine(stack_config(emu))
        small, large = declared(args.models), declared(args.refresh_models)

        with engine.command():
            warm_up(engine, small[0])
            emu.clear_counts()
            create_s = timed(lambda: engine.up(small))
            counts = emu.request_counts()
        bound = math.ceil(args.models / WORKERS) * 2 * latency
        print(
            f"create {args.models}: {create_s:.2f} s; bound ceil(N/4) x 2 x {args.latency_ms} ms "
            f"= {bound:.2f} s; ratio {create_s / bound:.2f} (target <= 1.20); "
            f"list calls {counts.get('/llm-models/list', 0)}, "
            f"register calls {counts.get('/llm-models/register', 0)}"
        )

        with engine.command():
            warm_up(engine, small[0])
            destroy_s = timed(engine.destroy)
        destroy_bound = math.ceil(args.models / WORKERS) * latency
        print(
            f"destroy {args.models}: {destroy_s:.2f} s; bound ceil(N/4) x {args.latency_ms} ms "
            f"= {destroy_bound:.2f} s; ratio {destroy_s / destroy_bound:.2f}"
        )

        engine.up(large)
        with engine.command():
            warm_up(engine, large[0])
            emu.clear_counts()
            refresh_s = timed(engine.refresh)
            lists = emu.request_counts().get("/llm-models/list", 0)
        print(f"refresh {args.refresh_models}: {refresh_s:.2f} s; list calls {lists} (target <= 2)")
        engine.destroy()

        starts = cold_start(emu, small[0])
        print(
            f"cold start: median {statistics.median(starts):.2f} s, max {max(starts):.2f} s "
            f"over {len(starts)} runs (target <= 1.00 s)"
        )


if __name__ == "__main__":
    main()
