"""CPU time and peak memory of the processes a benchmark starts, read from Linux's /proc.

A `Sampler` polls, while a command runs, every descendant of this process: its CPU seconds so far
and its peak resident memory (VmHWM), filed under the first role whose marker its command line
holds (the dynamic provider runs as `python -m pulumi.dynamic`). A process is only counted while
it is this benchmark's own descendant, so other programs on a shared machine never enter the
figures. The last sample before a process exits misses at most one polling interval of its CPU.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK")
POLL_SECONDS = 0.1


def cpu_seconds(pid: int) -> float:
    """User plus system CPU of `pid` so far; 0 when it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return (int(fields[11]) + int(fields[12])) / TICKS


def peak_rss_mib(pid: int) -> float:
    try:
        status = (PROC / str(pid) / "status").read_text()
    except OSError:
        return 0.0
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _parent(pid: int) -> int | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _command_line(pid: int) -> str:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def descendants(ancestor: int, marker: str = "") -> list[int]:
    """Processes below `ancestor` whose command line holds `marker`."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or marker not in _command_line(int(entry.name)):
            continue
        pid: int | None = int(entry.name)
        while pid is not None and pid > 1:
            pid = _parent(pid)
            if pid == ancestor:
                found.append(int(entry.name))
                break
    return found


@dataclass
class Usage:
    """Per process seen: its role, CPU seconds and peak MiB at its last sample."""

    role: dict[int, str] = field(default_factory=dict)
    cpu: dict[int, float] = field(default_factory=dict)
    peak_mib: dict[int, float] = field(default_factory=dict)

    def cpu_of(self, role: str) -> float:
        return sum(c for pid, c in self.cpu.items() if self.role[pid] == role)

    def peak_mib_of(self, role: str) -> float:
        return max((m for pid, m in self.peak_mib.items() if self.role[pid] == role), default=0.0)


class Sampler:
    """`with Sampler({"provider": "pulumi.dynamic"}) as usage:` samples every descendant until
    the block ends; those of no role's marker are filed under "other"."""

    def __init__(self, roles: dict[str, str], ancestor: int | None = None) -> None:
        self.roles = roles
        self.ancestor = ancestor or os.getpid()
        self.usage = Usage()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self.sample()

    def _role(self, pid: int) -> str:
        command = _command_line(pid)
        return next((role for role, marker in self.roles.items() if marker in command), "other")

    def sample(self) -> None:
        for pid in descendants(self.ancestor):
            if pid not in self.usage.role:
                self.usage.role[pid] = self._role(pid)
            cpu, peak = cpu_seconds(pid), peak_rss_mib(pid)
            if cpu:
                self.usage.cpu[pid] = max(cpu, self.usage.cpu.get(pid, 0.0))
            if peak:
                self.usage.peak_mib[pid] = max(peak, self.usage.peak_mib.get(pid, 0.0))

    def __enter__(self) -> Usage:
        self._thread.start()
        return self.usage

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
