"""The throwaway control plane (testkit/kube.py) starts even when a port it picked free is taken
before it binds it (another test, another helper's run on the same machine)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit import kube
from testkit.kube import ControlPlane


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A loopback port something else listens on."""
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


def test_a_port_taken_before_etcd_binds_it_is_replaced_by_another(
    kube_bin: Path, tmp_path: Path, taken_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    picks, free_port = iter([taken_port]), kube.free_port
    monkeypatch.setattr(kube, "free_port", lambda: next(picks, None) or free_port())
    with ControlPlane(kube_bin, tmp_path / "cluster") as plane:
        nodes = plane.kubectl("get", "nodes", "-o", "name").split()
        assert nodes == [f"node/{node}" for node in kube.NODES]
        assert f":{taken_port}" not in plane.server
    (etcd_log,) = (tmp_path / "cluster" / "logs-attempt-1").glob("etcd.log")
    assert "address already in use" in etcd_log.read_text()
