"""What the emulator exposes beyond its API: a database only its owner can read, and no answer
to a web page that reaches it by name (DNS rebinding) or from another origin."""

from __future__ import annotations

import os
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from convai_provider.api.client import ConvaiClient
from convai_provider.emulator.process import EmulatorProcess
from convai_provider.emulator.store import ConvaiStore
from testkit.convai import CONVAI_KEY, TURBO

# The database: endpoint keys in clear, readable by its owner only ---------------------------


@pytest.fixture
def permissive_umask() -> Iterator[None]:
    """The usual umask, which lets everyone read a new file: the database must not rely on a
    stricter one."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def modes(db: Path) -> dict[str, int]:
    """The permission bits of the database and the files SQLite keeps beside it."""
    files = [db, db.with_name(f"{db.name}-wal"), db.with_name(f"{db.name}-shm")]
    return {f.name: stat.S_IMODE(f.stat().st_mode) for f in files if f.exists()}


@pytest.mark.usefixtures("permissive_umask")
def test_a_new_database_and_its_wal_and_shm_are_readable_by_their_owner_only(
    tmp_path: Path,
) -> None:
    db = tmp_path / "convai.sqlite3"
    with EmulatorProcess(db) as emulator, ConvaiClient(CONVAI_KEY, emulator.url) as client:
        client.register(TURBO)  # an endpoint key in clear, in the -wal first
        found = modes(db)
    assert sorted(found) == [db.name, f"{db.name}-shm", f"{db.name}-wal"]
    assert found == dict.fromkeys(found, 0o600), {k: oct(v) for k, v in found.items()}


@pytest.mark.usefixtures("permissive_umask")
def test_an_existing_database_readable_by_others_is_tightened(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite3"
    old = sqlite3.connect(db)
    old.execute("PRAGMA journal_mode=WAL")
    old.execute("CREATE TABLE t (x)")
    companions = modes(db)
    assert len(companions) == 3 and set(companions.values()) == {
        0o644
    }  # as an older emulator left it
    store = ConvaiStore(db)
    try:
        assert modes(db) == dict.fromkeys(companions, 0o600)
    finally:
        store.close()
        old.close()
