"""The emulator's state: Convai's private models per account, in SQLite, apart from any HTTP."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from convai_provider.api.builtin_models import BUILTIN_MODELS, DEFAULT_FALLBACK_MODEL
from convai_provider.api.wire import (
    OPENAI_BASE_URL,
    PRIVATE_CATEGORY,
    Character,
    PrivateModel,
    RegisterRequest,
    UpdateRequest,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    account TEXT NOT NULL,
    model_group_name TEXT NOT NULL,
    model_name TEXT NOT NULL,
    display_name TEXT,
    base_url TEXT NOT NULL,
    api_key TEXT NOT NULL,
    is_uncensored INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (account, model_group_name)
);
CREATE UNIQUE INDEX IF NOT EXISTS models_display_name
    ON models (account, display_name) WHERE display_name IS NOT NULL;
CREATE TABLE IF NOT EXISTS characters (
    account TEXT NOT NULL,
    char_id TEXT NOT NULL,
    character_name TEXT NOT NULL,
    voice_type TEXT NOT NULL,
    backstory TEXT NOT NULL,
    model_group_name TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    PRIMARY KEY (account, char_id)
);
CREATE TABLE IF NOT EXISTS account_keys (
    key_digest TEXT PRIMARY KEY,
    account TEXT
);
"""
# account_keys: a key rotated in (its account) or out (NULL); a key without a row is the account of
# its own digest, as every key was before rotation existed.


NEW_KEY_HEADER = "X-Emulator-New-Api-Key"
"""The header of the admin call that rotates a key: the new key (CONVAI-API-KEY names the old)."""


class StoreError(Exception):
    """A refusal the real service answers with an error status and message."""

    status_code = 400

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class InvalidInputError(StoreError):
    status_code = 400


class UnknownModelError(StoreError):
    status_code = 404


class TakenNameError(StoreError):
    status_code = 409


OWNER_ONLY = 0o600
"""The database holds endpoint keys in clear: only its owner may read it."""

COMPANION_SUFFIXES = ("-wal", "-shm", "-journal")
"""Files SQLite keeps beside a database, with the database's permissions."""


def open_owner_only(path: Path) -> None:
    """Create the database file readable and writable by its owner alone before SQLite first
    writes to it; tighten one that exists, and the files beside it. SQLite creates its -wal and
    -shm files with the permissions of the database, so they follow."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, OWNER_ONLY))
    for file in (path, *(path.with_name(path.name + s) for s in COMPANION_SUFFIXES)):
        try:
            os.chmod(file, OWNER_ONLY)
        except FileNotFoundError:
            continue


def account_for_key(api_key: str) -> str:
    """Accounts are keyed by a digest, so the emulator never stores a Convai key in clear."""
    return hashlib.sha256(api_key.encode()).hexdigest()[:24]


def iso_now() -> str:
    """ISO-8601 UTC with milliseconds and `Z`, as Convai's `created_at`."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


class ConvaiStore:
    """Thread-safe: one connection, one lock, one transaction per operation."""

    def __init__(self, path: str | Path) -> None:
        self._lock = threading.Lock()
        open_owner_only(Path(path))
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def register(self, account: str, request: RegisterRequest) -> PrivateModel:
        with self._transaction() as db:
            self._refuse_taken_group(db, account, request.model_group_name)
            self._refuse_taken_display_name(db, account, request.display_name, None)
            db.execute(
                "INSERT INTO models VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    account,
                    request.model_group_name,
                    request.model_name,
                    request.display_name,
                    request.base_url or OPENAI_BASE_URL,
                    request.api_key,
                    int(request.is_uncensored),
                    iso_now(),
                ),
            )
            return self._get(db, account, request.model_group_name)

    def update(self, account: str, request: UpdateRequest) -> list[str]:
        fields = request.fields_to_update()
        if not fields:
            raise InvalidInputError("No valid fields to update")
        with self._transaction() as db:
            self._get(db, account, request.model_group_name)
            self._refuse_taken_display_name(
                db, account, request.display_name, request.model_group_name
            )
            for field in fields:
                value = getattr(request, field)
                db.execute(
                    f"UPDATE models SET {field} = ? WHERE account = ? AND model_group_name = ?",
                    (
                        int(value) if isinstance(value, bool) else value,
                        account,
                        request.model_group_name,
                    ),
                )
        return fields

    def deregister(self, account: str, model_group_name: str) -> None:
        with self._transaction() as db:
            self._get(db, account, model_group_name)
            db.execute(
                "DELETE FROM models WHERE account = ? AND model_group_name = ?",
                (account, model_group_name),
            )

    def models(self, account: str) -> list[PrivateModel]:
        with self._lock:
            rows = self._db.execute(
                "SELECT * FROM models WHERE account = ? ORDER BY created_at, model_group_name",
                (account,),
            ).fetchall()
        return [_row_to_model(row) for row in rows]

    def reset(self) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM models")
            db.execute("DELETE FROM characters")
            db.execute("DELETE FROM account_keys")

    # keys -------------------------------------------------------------------------------------

    def account_of(self, api_key: str) -> str | None:
        """The account `api_key` opens; None once it was rotated out."""
        digest = account_for_key(api_key)
        with self._lock:
            row = self._db.execute(
                "SELECT account FROM account_keys WHERE key_digest = ?", (digest,)
            ).fetchone()
        if row is None:
            return digest
        return None if row[0] is None else str(row[0])

    def rotate_key(self, old_key: str, new_key: str) -> None:
        """Convai's key regeneration: `new_key` opens `old_key`'s account, `old_key` nothing."""
        account = self.account_of(old_key)
        if account is None:
            raise StoreError("the key to rotate was already rotated out")
        if account_for_key(new_key) == account_for_key(old_key):
            raise StoreError("the new key is the key to rotate")
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO account_keys VALUES (?, ?)",
                (account_for_key(new_key), account),
            )
            db.execute(
                "INSERT OR REPLACE INTO account_keys VALUES (?, NULL)",
                (account_for_key(old_key),),
            )

    # characters -------------------------------------------------------------------------------

    def create_character(self, account: str, name: str, voice_type: str, backstory: str) -> str:
        char_id = uuid.uuid4().hex
        with self._transaction() as db:
            db.execute(
                "INSERT INTO characters VALUES (?, ?, ?, ?, ?, ?, ?)",
                (account, char_id, name, voice_type, backstory, DEFAULT_FALLBACK_MODEL, iso_now()),
            )
        return char_id

    def get_character(self, account: str, char_id: str) -> Character:
        with self._lock:
            return self._character(self._db, account, char_id)

    def set_character_model(self, account: str, char_id: str, model_group_name: str) -> None:
        with self._transaction() as db:
            self._character(db, account, char_id)
            if not self._model_exists(db, account, model_group_name):
                raise InvalidInputError(
                    f"Invalid model_group_name '{model_group_name}': not a built-in model or a "
                    "private model of this account"
                )
            db.execute(
                "UPDATE characters SET model_group_name = ? WHERE account = ? AND char_id = ?",
                (model_group_name, account, char_id),
            )

    def orphaned_characters(self, account: str) -> list[dict[str, str]]:
        """The account's characters whose model no longer exists: the outage to prevent."""
        with self._lock:
            rows = self._db.execute(
                "SELECT c.char_id, c.model_group_name FROM characters c "
                "LEFT JOIN models m ON m.account = c.account "
                "AND m.model_group_name = c.model_group_name "
                "WHERE c.account = ? AND m.model_group_name IS NULL ORDER BY c.char_id",
                (account,),
            ).fetchall()
        return [
            {"charID": str(c), "model_group_name": str(g)}
            for c, g in rows
            if g not in BUILTIN_MODELS
        ]

    @staticmethod
    def _model_exists(db: sqlite3.Connection, account: str, model_group_name: str) -> bool:
        if model_group_name in BUILTIN_MODELS:
            return True
        row = db.execute(
            "SELECT 1 FROM models WHERE account = ? AND model_group_name = ?",
            (account, model_group_name),
        ).fetchone()
        return row is not None

    @staticmethod
    def _character(db: sqlite3.Connection, account: str, char_id: str) -> Character:
        row = db.execute(
            "SELECT char_id, character_name, voice_type, backstory, model_group_name, timestamp "
            "FROM characters WHERE account = ? AND char_id = ?",
            (account, char_id),
        ).fetchone()
        if row is None:
            raise InvalidInputError(f"Character '{char_id}' not found")
        char, name, voice, backstory, model, timestamp = row
        return Character(
            character_id=str(char),
            character_name=str(name),
            user_id=account,
            voice_type=str(voice),
            backstory=str(backstory),
            model_group_name=str(model),
            timestamp=str(timestamp),
        )

    def _get(self, db: sqlite3.Connection, account: str, model_group_name: str) -> PrivateModel:
        row = db.execute(
            "SELECT * FROM models WHERE account = ? AND model_group_name = ?",
            (account, model_group_name),
        ).fetchone()
        if row is None:
            raise UnknownModelError(f"Model '{model_group_name}' not found")
        return _row_to_model(row)

    @staticmethod
    def _refuse_taken_group(db: sqlite3.Connection, account: str, group: str) -> None:
        taken = db.execute(
            "SELECT 1 FROM models WHERE account = ? AND model_group_name = ?", (account, group)
        ).fetchone()
        if taken:
            raise TakenNameError(f"Model group '{group}' already exists")

    @staticmethod
    def _refuse_taken_display_name(
        db: sqlite3.Connection, account: str, display_name: str | None, own_group: str | None
    ) -> None:
        if display_name is None:
            return
        holder = db.execute(
            "SELECT model_group_name FROM models WHERE account = ? AND display_name = ?",
            (account, display_name),
        ).fetchone()
        if holder and holder[0] != own_group:
            raise TakenNameError(f"Display name '{display_name}' already exists")


def _row_to_model(row: tuple[object, ...]) -> PrivateModel:
    _, group, model_name, display_name, base_url, _, is_uncensored, created_at = row
    return PrivateModel(
        model_group_name=str(group),
        model_name=str(model_name),
        display_name=None if display_name is None else str(display_name),
        base_url=str(base_url),
        is_uncensored=bool(is_uncensored),
        category=PRIVATE_CATEGORY,
        created_at=str(created_at),
    )
