from __future__ import annotations

import importlib.util
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir

from convai_provider.api.client import ConvaiClient
from convai_provider.emulator.process import EmulatorProcess
from testkit.convai import CONVAI_KEY, FAST_BACKOFF
from testkit.kube import find_kube_bin
from testkit.postgres import PostgresServer, find_postgres_bin
from testkit.processes import die_with_parent, let_ctrl_c_reach_children, watch_this_run
from testkit.published_endpoints import RESOLVER_OVERRIDE
from testkit.pulumi_cli import find_pulumi_bin
from testkit.tools import required

# Hypothesis keeps nothing in the checkout (examples, caches): the run leaves the tree as it was.
settings.register_profile("convai-models", database=None)
settings.load_profile("convai-models")
set_hypothesis_home_dir(tempfile.mkdtemp(prefix="convai-hypothesis-"))

WATCHDOG: list[subprocess.Popen[bytes]] = []
NETWORK_LOG = Path(tempfile.mkdtemp(prefix="convai-network-")) / "refused.log"


def pytest_configure(config: pytest.Config) -> None:
    """Before anything starts: the run's watchdog, which ends whatever the run leaves running
    once this process ends, killed or not (testkit/processes.py); and the network guard, in
    this process and every Python process the run starts (testkit/resolver_override)."""
    let_ctrl_c_reach_children()
    WATCHDOG.append(watch_this_run())
    os.environ["TESTKIT_NETWORK_LOG"] = str(NETWORK_LOG)
    os.environ["PYTHONPATH"] = os.pathsep.join(
        filter(None, (str(RESOLVER_OVERRIDE), os.environ.get("PYTHONPATH")))
    )
    guard = importlib.util.spec_from_file_location(
        "testkit_network_guard", RESOLVER_OVERRIDE / "sitecustomize.py"
    )
    assert guard is not None and guard.loader is not None
    guard.loader.exec_module(importlib.util.module_from_spec(guard))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Every lookup and connect the guard refused, swallowed by its caller or not."""
    if NETWORK_LOG.exists() and (refused := NETWORK_LOG.read_text().splitlines()):
        terminalreporter.section("refused: off this machine (testkit/resolver_override)")
        for line in sorted(set(refused)):
            terminalreporter.write_line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    for watchdog in WATCHDOG:
        assert watchdog.stdin is not None
        watchdog.stdin.close()
        watchdog.wait()


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    db = tmp_path_factory.mktemp("emulator") / "convai.sqlite3"
    with EmulatorProcess(db, preexec_fn=die_with_parent()) as emu:
        yield emu


@pytest.fixture
def convai(emulator: EmulatorProcess) -> EmulatorProcess:
    """The shared emulator, emptied of models, faults and request counts."""
    emulator.reset()
    return emulator


@pytest.fixture(scope="session")
def cli_bin() -> Path:
    """The real Pulumi CLI's bin directory; without one, the test is skipped (fails under CI)."""
    return required(find_pulumi_bin, "the real-engine tests")


@pytest.fixture(scope="session")
def kube_bin() -> Path:
    """The Kubernetes control plane's bin directory (scripts/install-kube); without one, the test
    is skipped (fails under CI)."""
    return required(find_kube_bin, "the Kubernetes stack tests")


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer]:
    """A real PostgreSQL server on 127.0.0.1 for the run, stopped after it with nothing left
    running; without one, the test is skipped (fails under CI)."""
    started = required(
        lambda: PostgresServer.start(find_postgres_bin()), "the PostgreSQL backend tests"
    )
    with started as server:
        yield server


@pytest.fixture
def client(convai: EmulatorProcess) -> Iterator[ConvaiClient]:
    with ConvaiClient(CONVAI_KEY, convai.url, timeout=5, backoff=FAST_BACKOFF) as c:
        yield c


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow", action="store_true", help="also run the large fault and load runs"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="large run: pass --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
