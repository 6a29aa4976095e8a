"""Emulator throughput and latency under concurrent load on loopback.

    python -m benchmarks.emulator [--clients 16] [--requests 4000]

Each client thread has its own keep-alive connection and sends a fixed mix (per 10 requests:
6 list, 2 register, 1 update, 1 deregister) until the total is reached; the run is bounded in
count and in time (60 s). Prints requests per second and latency percentiles per endpoint.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from convai_provider.emulator.process import EmulatorProcess
from testkit.processes import die_with_parent

MIX = ["list"] * 6 + ["register", "update", "register", "deregister"]
TIME_LIMIT = 60.0


@dataclass
class Load:
    url: str
    per_client: int
    stop_at: float
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, kind: str, seconds: float) -> None:
        with self.lock:
            self.latencies[kind].append(seconds)


def request_body(kind: str, client_id: int, i: int) -> dict[str, Any] | None:
    wave = i // len(MIX)
    if kind == "register":
        return {
            "model_group_name": f"c{client_id}-m{wave}-{i % 3}",
            "model_name": "m",
            "api_key": "k",
            "is_uncensored": False,
        }
    if kind == "update":
        return {"model_group_name": f"c{client_id}-m{wave}-{(i - 1) % 3}", "display_name": f"D{i}"}
    if kind == "deregister":
        return {"model_group_name": f"c{client_id}-m{wave}-{(i - 1) % 3}"}
    return None


def client_run(load: Load, client_id: int) -> int:
    headers = {"CONVAI-API-KEY": f"bench-{client_id % 4}"}
    done = 0
    with httpx.Client(base_url=load.url, headers=headers, timeout=30) as http:
        for i in range(load.per_client):
            if time.monotonic() > load.stop_at:
                break
            kind = MIX[i % len(MIX)]
            started = time.perf_counter()
            http.post(f"/llm-models/{kind}", json=request_body(kind, client_id, i))
            load.record(kind, time.perf_counter() - started)
            done += 1
    return done


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--clients", type=int, default=16, help="concurrent client threads")
    parser.add_argument("--requests", type=int, default=4000, help="requests in all")
    args = parser.parse_args()
    print(
        f"machine: {platform.machine()}, CPython {platform.python_version()}, {platform.system()}"
    )
    with (
        tempfile.TemporaryDirectory() as tmp,
        EmulatorProcess(
            Path(tmp) / "load.sqlite3", access_log=False, preexec_fn=die_with_parent()
        ) as emu,
    ):
        load = Load(emu.url, args.requests // args.clients, time.monotonic() + TIME_LIMIT)
        started = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            done = sum(pool.map(lambda c: client_run(load, c), range(args.clients)))
        wall = time.perf_counter() - started
    print(f"{done} requests, {args.clients} clients, {wall:.2f} s: {done / wall:.0f} requests/s")
    everything = [v for values in load.latencies.values() for v in values]
    for kind, values in [*sorted(load.latencies.items()), ("all", everything)]:
        figures = "  ".join(
            f"p{int(share * 100)} {percentile(values, share) * 1000:5.1f} ms"
            for share in (0.5, 0.95, 0.99)
        )
        mean = statistics.mean(values) * 1000
        print(f"  {kind:<10} n={len(values):<5} {figures}  mean {mean:5.1f} ms")


if __name__ == "__main__":
    main()
